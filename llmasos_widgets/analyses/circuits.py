"""The steps of circuit analysis: the stream as a sum, direct logit attribution, induction, ablation, path patching.

The residual stream as a sum of components, direct logit attribution, induction on repeated random tokens,
zero and mean ablation, and path patching (Wang et al. 2022, as ARENA teaches it).

Names and conventions are TransformerLens's, so that a reader of its tutorials recognises each quantity:
a head's output is its slice of ``blocks.{l}.attn.hook_z`` through its slice of W_O (``hook_result``),
what an MLP adds is ``blocks.{l}.hook_mlp_out``, and direct logit attribution scales every component by
the final norm's scale *of the whole stream* at that position (``apply_ln_to_stack``): the scale is frozen,
so the attributions add up to the logit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core import checks
from ..core.hooks import Hook, block_output, pre, read, replace_output, run
from ..core.models import LanguageModel
from .causal.metrics import Metric


def _ids(model: LanguageModel, text: str | Sequence[int]) -> list[int]:
    """Token ids of ``text`` as ``model.trace`` makes them, or the ids themselves."""
    return _encode(model, text) if isinstance(text, str) else [int(i) for i in text]


def _encode(model: LanguageModel, text: str) -> list[int]:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    return list(model.tokenizer(text, add_special_tokens=True)["input_ids"])


def _head_dim(model: LanguageModel) -> int:
    return int(_w_o(model, 0)[0].shape[0]) // model.n_heads


def _inputs(model: LanguageModel, ids: list[int] | Tensor) -> dict[str, Tensor]:
    t = torch.as_tensor(ids, device=model.device)
    t = t[None] if t.dim() == 1 else t
    return {"input_ids": t, "attention_mask": torch.ones_like(t)}


def _linear_heads(model: LanguageModel) -> None:
    """Raise unless each head's output reaches the stream linearly (no norm after attention or the MLP)."""
    adapter = model.adapter
    if not model.is_causal:
        raise ValueError(f"{model.name} is not a causal language model: circuit analysis reads next-token logits")
    if any(adapter.attn_post_norm(layer) is not None for layer in range(model.n_layers)):
        raise ValueError(
            f"{model.name} ({adapter.family}) normalises attention's output before adding it to the stream, "
            "so a head's contribution is not a term of the sum; use a model without post-norms (Llama, GPT-2)"
        )


def _w_o(model: LanguageModel, layer: int) -> tuple[Tensor, Tensor | None]:
    """W_O [head * head_dim, d_model] and its bias [d_model] (or None) of ``layer``."""
    proj = model.adapter.attn_out_proj(layer)
    weight = proj.weight.detach()
    w = weight if type(proj).__name__ == "Conv1D" else weight.T  # GPT-2's Conv1D stores [in, out]
    bias = getattr(proj, "bias", None)
    return w.float(), None if bias is None else bias.detach().float()


# -- the residual stream as a sum -----------------------------------------------------------------
@dataclass(frozen=True)
class Components:
    """The final residual stream ``blocks.{L-1}.hook_resid_post`` [pos, d_model] split into its terms.

    ``stack[i]`` [pos, d_model] is the term labelled ``labels[i]``: ``"embed"`` (``blocks.0.hook_resid_pre``:
    token and position embeddings), ``"L{l}H{h}"`` (head h of layer l: its slice of ``blocks.{l}.attn.hook_z``
    through its rows of W_O, TransformerLens's ``hook_result``), ``"L{l} b_O"`` (the output projection's bias,
    where it has one) and ``"L{l} MLP"`` (``blocks.{l}.hook_mlp_out``). ``stack.sum(0)`` equals ``final``.
    """

    labels: list[str]
    hooks: list[str]  # the TransformerLens activation each term is read from
    stack: Tensor  # [component, pos, d_model]
    final: Tensor  # [pos, d_model]
    token_ids: list[int]

    def index(self, label: str) -> int:
        """Position of ``label`` in ``labels`` (a KeyError listing a few labels if absent)."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"no component {label!r}; labels look like {self.labels[:3]} and 'L0 MLP'") from None


def decompose(model: LanguageModel, text: str | Sequence[int]) -> Components:
    """The final residual stream of ``text`` as embeddings + every head's output + every MLP's output.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> parts = lw.decompose(lw.load_model("tiny-llama"), "The capital of France is")
    >>> parts.labels[:3], parts.labels[-1], tuple(parts.stack.shape)  # 1 + 2 layers * (4 heads + MLP)
    (['embed', 'L0H0', 'L0H1'], 'L1 MLP', (11, 5, 64))
    >>> bool(torch.allclose(parts.stack.sum(0), parts.final, atol=1e-4))
    True

    """
    _linear_heads(model)
    ids = _ids(model, text)
    n, last = model.n_layers, model.n_layers - 1
    names = ["blocks.0.hook_resid_pre", f"blocks.{last}.hook_resid_post"]
    names += [f"blocks.{layer}.{what}" for layer in range(n) for what in ("attn.hook_z", "hook_mlp_out")]
    with torch.no_grad():
        acts = {k: v[0].float() for k, v in read(model, names, **_inputs(model, ids)).items()}
    head_dim = acts["blocks.0.attn.hook_z"].shape[-1] // model.n_heads
    labels, hooks, parts = ["embed"], ["blocks.0.hook_resid_pre"], [acts["blocks.0.hook_resid_pre"]]
    for layer in range(n):
        z = acts[f"blocks.{layer}.attn.hook_z"]  # [pos, head * head_dim]
        w_o, b_o = _w_o(model, layer)
        w_o = w_o.to(z.device)
        for h in range(model.n_heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            labels.append(f"L{layer}H{h}")
            hooks.append(f"blocks.{layer}.attn.hook_z")
            parts.append(z[:, cols] @ w_o[cols])
        if b_o is not None:
            labels.append(f"L{layer} b_O")
            hooks.append(f"blocks.{layer}.attn.b_O")
            parts.append(b_o.to(z.device).expand_as(parts[-1]))
        labels.append(f"L{layer} MLP")
        hooks.append(f"blocks.{layer}.hook_mlp_out")
        parts.append(acts[f"blocks.{layer}.hook_mlp_out"])
    final = acts[f"blocks.{last}.hook_resid_post"]
    return Components(labels, hooks, torch.stack(parts).cpu(), final.cpu(), ids)


# -- direct logit attribution -----------------------------------------------------------------------
@dataclass(frozen=True)
class LogitAttribution:
    """What each component of the stream adds to a logit (or a logit difference) directly, at one position.

    ``values[i]`` is component ``labels[i]`` centred (LayerNorm only), divided by the final norm's scale of the
    whole stream at that position, multiplied by the norm's weight and projected on the unembedding
    direction ``W_U[target] - W_U[baseline]``. With the scale frozen the map is linear, so
    ``values.sum() + constant == logit`` (``constant``: the final norm's and the unembedding's biases).
    """

    labels: list[str]
    values: Tensor  # [component]
    constant: float
    logit: float  # the model's logit (difference) at the position
    n_layers: int
    n_heads: int

    @property
    def heads(self) -> Tensor:  # [layer, head]
        """The heads' attributions as a [layer, head] grid."""
        idx = [i for i, label in enumerate(self.labels) if label[0] == "L" and "H" in label]
        return self.values[idx].reshape(self.n_layers, self.n_heads)

    @property
    def mlps(self) -> Tensor:  # [layer]
        """Each layer's MLP's attribution."""
        return self.values[[i for i, label in enumerate(self.labels) if label.endswith(" MLP")]]

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` components with the largest attributions by absolute value, largest first."""
        order = self.values.abs().argsort(descending=True)[:n]
        return [(self.labels[i], round(float(self.values[i]), 4)) for i in order]


def _norm_terms(model: LanguageModel, x: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
    """The final norm at stream ``x`` [d_model]: ``scale, weight, bias, centred``.

    norm(v) = weight * c(v) / scale + bias, c centring the vector where ``centred`` (LayerNorm).
    """
    norm = model.adapter.final_norm()
    d = x.shape[-1]
    if norm is None:
        one = torch.ones((), device=x.device)
        return one, torch.ones(d, device=x.device), torch.zeros(d, device=x.device), False
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if eps is None:
        raise ValueError(f"cannot read the epsilon of {model.name}'s final norm ({type(norm).__name__})")
    if isinstance(norm, nn.LayerNorm):
        scale = (x.var(unbiased=False) + eps).sqrt()
        bias = norm.bias.detach().float() if norm.bias is not None else torch.zeros(d, device=x.device)
        return scale, norm.weight.detach().float(), bias, True
    # An RMS norm (Llama's weight * x / rms, Gemma's (1 + weight) * x / rms): its weight is what it does to ones.
    with model.lock, torch.no_grad():
        ones = torch.ones(1, d, device=x.device, dtype=next(norm.parameters()).dtype)
        weight = norm(ones)[0].float() * math.sqrt(1.0 + eps)
    return (x.pow(2).mean() + eps).sqrt(), weight, torch.zeros(d, device=x.device), False


def direct_logit_attribution(
    model: LanguageModel, text: str | Sequence[int], target: str, baseline: str | None = None, pos: int = -1
) -> LogitAttribution:
    """Each head's, each MLP's and the embeddings' direct effect on ``target``'s logit (minus ``baseline``'s).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> dla = lw.direct_logit_attribution(model, "The capital of France is", " Paris", " Rome")
    >>> abs(float(dla.values.sum()) + dla.constant - dla.logit) < 1e-3, tuple(dla.heads.shape)
    (True, (2, 4))

    """
    if getattr(model.adapter.config, "final_logit_softcapping", None):
        raise ValueError(f"{model.name} soft-caps its logits: they are not a linear function of the stream")
    parts = decompose(model, text)
    pos = checks.index(pos, len(parts.token_ids), "position", "the text has tokens")
    t = checks.one_token(model, target, "target")
    b = None if baseline is None else checks.one_token(model, baseline, "baseline")
    head = model.adapter.head()
    w_u = head.weight.detach().float().cpu()  # [vocab, d_model]
    direction = w_u[t] - (w_u[b] if b is not None else 0)
    head_bias = getattr(head, "bias", None)
    bias_u = 0.0
    if head_bias is not None:
        hb = head_bias.detach().float().cpu()
        bias_u = float(hb[t] - (hb[b] if b is not None else 0))
    scale, weight, bias, centred = (
        v.cpu() if isinstance(v, Tensor) else v for v in _norm_terms(model, parts.final[pos])
    )
    stack = parts.stack[:, pos]  # [component, d_model]
    if centred:
        stack = stack - stack.mean(-1, keepdim=True)
    values = (stack / scale * weight) @ direction
    with model.lock, torch.no_grad():
        logits = model.adapter.logits(parts.final[pos : pos + 1].to(model.device).to(next(head.parameters()).dtype))
    logits = logits[0].float().cpu()
    logit = float(logits[t] - (logits[b] if b is not None else 0))
    constant = float(bias @ direction) + bias_u
    return LogitAttribution(parts.labels, values, constant, logit, model.n_layers, model.n_heads)


# -- induction -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Induction:
    """A run on ``[bos] + r + r`` (r: ``seq_len`` random tokens), averaged over ``batch`` draws.

    ``loss[p]`` is the loss of predicting token p + 1 at position p: high on the first copy (random), low
    on the second where the model copies what followed the same token before. ``scores[l, h]`` is head
    (l, h)'s mean attention from each token of the second copy to the token after its earlier occurrence
    (TransformerLens's induction stripe: key = query - seq_len + 1).
    """

    tokens: Tensor  # [batch, 1 + 2 * seq_len]
    loss: Tensor  # [2 * seq_len]
    scores: Tensor  # [layer, head]
    seq_len: int
    first: int  # where r starts (1 after a BOS token, else 0)

    @property
    def loss_first(self) -> float:
        """Mean loss on predicting the first copy (the tokens are random: about ln(vocab) for a trained model)."""
        return float(self.loss[self.first : self.first + self.seq_len - 1].mean())

    @property
    def loss_second(self) -> float:
        """Mean loss on predicting the second copy (low if the model does induction)."""
        return float(self.loss[self.first + self.seq_len :].mean())


def repeated_tokens(model: LanguageModel, seq_len: int = 20, batch: int = 4, seed: int = 0) -> tuple[Tensor, int]:
    """``batch`` sequences ``[bos] + r + r`` of random non-special tokens, and where r starts (1, or 0 without BOS).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> tokens, first = repeated_tokens(lw.load_model("tiny-llama"), seq_len=3, batch=1)
    >>> bool((tokens[0, first : first + 3] == tokens[0, first + 3 :]).all())
    True

    """
    checks.int_in("seq_len", seq_len, 2, 4096)
    checks.int_in("batch", batch, 1, 256)
    vocab = model.adapter.head().weight.shape[0]
    special = torch.tensor(sorted(model.special_ids), dtype=torch.long)
    allowed = torch.ones(vocab, dtype=torch.bool)
    allowed[special[special < vocab]] = False
    pool = allowed.nonzero()[:, 0]
    g = torch.Generator().manual_seed(seed)
    r = pool[torch.randint(len(pool), (batch, seq_len), generator=g)]
    bos = model.tokenizer.bos_token_id
    start = torch.full((batch, 1), int(bos)) if bos is not None else torch.empty(batch, 0, dtype=torch.long)
    return torch.cat([start, r, r], dim=1), start.shape[1]


def induction(model: LanguageModel, seq_len: int = 20, batch: int = 4, seed: int = 0) -> Induction:
    """Loss per position and an induction score per head on repeated random tokens.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> result = lw.induction(lw.load_model("tiny-llama"), seq_len=8, batch=2)
    >>> tuple(result.loss.shape), tuple(result.scores.shape)
    ((16,), (2, 4))

    """
    if not model.is_causal:
        raise ValueError(f"{model.name} is not a causal language model: induction predicts the next token")
    tokens, first = repeated_tokens(model, seq_len, batch, seed)
    n = model.n_layers
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]
    with torch.no_grad():
        acts = read(model, names, **_inputs(model, tokens))
        with model.lock:
            logits = model.adapter.logits(acts[names[-1]]).float().cpu()  # [batch, pos, vocab]
            queries = torch.arange(first + seq_len, first + 2 * seq_len)
            keys = queries - seq_len + 1
            scores = torch.zeros(n, model.n_heads)
            for layer in range(n):
                for row in range(batch):
                    pattern = model.adapter.attention_pattern(layer, acts[names[layer]][row]).float().cpu()
                    scores[layer] += pattern[:, queries, keys].mean(-1) / batch
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return Induction(tokens, loss.mean(0), scores, seq_len, first)


# -- ablation ------------------------------------------------------------------------------------------
ABLATIONS = ("zero", "mean")


def _last_logits(model: LanguageModel, hooks: list[Hook], inputs: dict[str, Tensor]) -> Tensor:  # [batch, vocab]
    with model.lock, torch.no_grad():
        out = run(model, hooks, **inputs)
        return model.adapter.head_logits(out.last_hidden_state[:, -1]).float().cpu()


def _means(model: LanguageModel, reference: Sequence[str]) -> dict[str, Tensor]:
    """Mean of every layer's ``hook_z`` and ``hook_mlp_out`` over every token of the ``reference`` texts."""
    names = [f"blocks.{layer}.{w}" for layer in range(model.n_layers) for w in ("attn.hook_z", "hook_mlp_out")]
    sums: dict[str, Tensor] = {}
    count = 0
    with torch.no_grad():
        for text in reference:
            acts = read(model, names, **_inputs(model, _encode(model, text)))
            count += acts[names[0]].shape[1]
            for k, v in acts.items():
                sums[k] = sums.get(k, 0) + v[0].float().sum(0)
    return {k: v / count for k, v in sums.items()}


@dataclass(frozen=True)
class Ablation:
    """A metric on the intact run (``clean``) and with the components removed (``ablated``)."""

    metric: str
    clean: float
    ablated: float
    how: str


def _ablation_hooks(
    model: LanguageModel,
    heads: dict[int, list[Sequence[int]]],
    mlps: dict[int, list[bool]],
    means: dict[str, Tensor] | None,
) -> list[Hook]:
    """Hooks that ablate, in batch row i, the heads ``heads[layer][i]`` and the MLP where ``mlps[layer][i]``."""
    head_dim = _head_dim(model)
    hooks = []
    for layer, rows in heads.items():

        def on_z(module: nn.Module, args: tuple[Any, ...], layer: int = layer, rows: list[Sequence[int]] = rows) -> Any:
            z = args[0].clone()
            for i, chosen in enumerate(rows):
                for h in chosen:
                    cols = slice(h * head_dim, (h + 1) * head_dim)
                    z[i, :, cols] = 0 if means is None else means[f"blocks.{layer}.attn.hook_z"][cols].to(z.dtype)
            return (z, *args[1:])

        hooks.append(pre(model.adapter.attn_out_proj(layer), on_z))
    for layer, rows in mlps.items():

        def on_mlp(module: nn.Module, args: Any, output: Any, layer: int = layer, rows: list[bool] = rows) -> Any:
            out = block_output(output).clone()
            for i, off in enumerate(rows):
                if off:
                    out[i] = 0 if means is None else means[f"blocks.{layer}.hook_mlp_out"].to(out.dtype)
            return replace_output(output, out)

        hooks.append(Hook(model.adapter.mlp_added(layer), "post", on_mlp))
    return hooks


def _check_how(how: str, reference: Sequence[str] | None) -> None:
    if how not in ABLATIONS:
        raise ValueError(f"how must be one of {ABLATIONS}, got {how!r}")
    if how == "mean" and not reference:
        raise ValueError("mean ablation needs reference texts: the mean is taken over their tokens")


def ablate(
    model: LanguageModel,
    text: str,
    metric: Any,
    *,
    heads: Sequence[tuple[int, int]] = (),
    mlps: Sequence[int] = (),
    how: str = "zero",
    reference: Sequence[str] | None = None,
) -> Ablation:
    """``metric`` of ``text``'s last-position logits with ``heads`` (layer, head) and ``mlps`` removed together.

    ``how="zero"`` sets a head's ``hook_z`` slice (or an MLP's ``hook_mlp_out``) to 0 at every position;
    ``how="mean"`` sets it to its mean over every token of the ``reference`` texts (one vector for all
    positions; TransformerLens's tutorials often average per position over same-template prompts instead).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> result = lw.ablate(model, "The capital of France is", lw.logit_diff(" Paris", " Rome"), heads=[(1, 0)])
    >>> result.how, result.clean != result.ablated
    ('zero', True)

    """
    _linear_heads(model)
    _check_how(how, reference)
    m = Metric.of(metric)
    bound = m.bind(model)
    head_map: dict[int, list[Sequence[int]]] = {}
    for layer, h in heads:
        layer = checks.layer(layer, model.n_layers, model.name)
        head_map.setdefault(layer, [[]])[0].append(checks.head(h, model.n_heads, model.name))  # type: ignore[attr-defined]
    mlp_map = {checks.layer(layer, model.n_layers, model.name): [True] for layer in mlps}
    means = _means(model, reference) if how == "mean" and reference else None
    inputs = _inputs(model, _encode(model, text))
    clean = _last_logits(model, [], inputs)
    ablated = _last_logits(model, _ablation_hooks(model, head_map, mlp_map, means), inputs)
    return Ablation(m.name, float(bound(clean, clean[0])[0]), float(bound(ablated, clean[0])[0]), how)


def ablate_heads(
    model: LanguageModel, text: str, metric: Any, *, how: str = "zero", reference: Sequence[str] | None = None
) -> Tensor:  # [layer, head]
    """``metric`` with each head ablated alone (a [layer, head] grid; one batched forward per layer).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> grid = lw.ablate_heads(model, "The capital of France is", lw.logit_diff(" Paris", " Rome"))
    >>> one = lw.ablate(model, "The capital of France is", lw.logit_diff(" Paris", " Rome"), heads=[(1, 2)])
    >>> tuple(grid.shape), abs(float(grid[1, 2]) - one.ablated) < 1e-4
    ((2, 4), True)

    """
    _linear_heads(model)
    _check_how(how, reference)
    bound = Metric.of(metric).bind(model)
    means = _means(model, reference) if how == "mean" and reference else None
    ids = torch.tensor(_encode(model, text))
    inputs = _inputs(model, ids.expand(model.n_heads, -1))
    clean = _last_logits(model, [], _inputs(model, ids))[0]
    grid = torch.zeros(model.n_layers, model.n_heads)
    for layer in range(model.n_layers):
        rows: list[Sequence[int]] = [[h] for h in range(model.n_heads)]
        grid[layer] = bound(_last_logits(model, _ablation_hooks(model, {layer: rows}, {}, means), inputs), clean)
    return grid


# -- path patching ---------------------------------------------------------------------------------------
PATH_INPUTS = ("q", "k", "v")


def _projection(model: LanguageModel, layer: int, which: str) -> nn.Module:
    attn = getattr(model.adapter.blocks()[layer], "self_attn", None)
    module = getattr(attn, f"{which}_proj", None)
    if module is None or getattr(model.adapter, "qk_norm", "head") == "whole":
        raise ValueError(
            f"path patching needs each head's own q/k/v projection (Llama-style q_proj, k_proj, v_proj); "
            f"{model.name} ({model.adapter.family}) has none"
        )
    return module


@dataclass(frozen=True)
class PathPatch:
    """Path patching of senders to receivers: ``scores[l, h]`` for sender head (l, h) (NaN: not a sender).

    Scores are normalised as in :func:`patch`: 1 is the clean run's metric (no effect), 0 the corrupt run's.
    """

    metric: str
    clean: float
    corrupt: float
    values: Tensor  # [layer, head]: the metric with that sender's path patched
    receivers: list[tuple[int, int]]
    to: str

    @property
    def scores(self) -> Tensor:  # [layer, head]
        return (self.values - self.corrupt) / (self.clean - self.corrupt)


def _receiver_inputs(
    model: LanguageModel,
    inputs: dict[str, Tensor],
    z_clean: dict[str, Tensor],
    z_corrupt: dict[str, Tensor],
    sender: tuple[int, int],
    slots: list[tuple[int, int]],
    to: str,
) -> dict[int, Tensor]:
    """Path patching's first run: the receiver layers' q (k, v) projections it yields.

    The sender's hook_z comes from the corrupt run, every other head's is frozen at its clean value.
    """
    head_dim, (s_layer, s_head) = _head_dim(model), sender

    def freeze(module: nn.Module, args: tuple[Any, ...], layer: int) -> Any:
        z = z_clean[f"blocks.{layer}.attn.hook_z"].clone()
        if layer == s_layer:
            cols = slice(s_head * head_dim, (s_head + 1) * head_dim)
            z[..., cols] = z_corrupt[f"blocks.{layer}.attn.hook_z"][..., cols]
        return (z, *args[1:])

    kept: dict[int, Tensor] = {}
    layers = sorted({layer for layer, _ in slots})
    hooks = [pre(model.adapter.attn_out_proj(i), lambda m, a, i=i: freeze(m, a, i)) for i in range(model.n_layers)]
    hooks += [
        Hook(_projection(model, i, to), "post", lambda m, a, o, i=i: kept.__setitem__(i, o.detach())) for i in layers
    ]
    with torch.no_grad():
        run(model, hooks, stop_after=model.adapter.blocks()[layers[-1]], **inputs)
    return kept


def _patch_slots(model: LanguageModel, slots: list[tuple[int, int]], kept: dict[int, Tensor], to: str) -> list[Hook]:
    """Path patching's second run: hooks that replace only the receivers' q (k, v) slices by ``kept``."""
    head_dim = _head_dim(model)

    def patch_in(module: nn.Module, args: Any, output: Tensor, layer: int) -> Tensor:
        out = output.clone()
        for r_layer, slot in slots:
            if r_layer == layer:
                cols = slice(slot * head_dim, (slot + 1) * head_dim)
                out[..., cols] = kept[layer][..., cols]
        return out

    layers = sorted({layer for layer, _ in slots})
    return [Hook(_projection(model, i, to), "post", lambda m, a, o, i=i: patch_in(m, a, o, i)) for i in layers]


def path_patch(
    model: LanguageModel,
    clean: str,
    corrupt: str,
    metric: Any,
    receivers: Sequence[tuple[int, int]],
    to: str = "q",
    senders: Sequence[tuple[int, int]] | None = None,
) -> PathPatch:
    """Path patching: how much each sender head's corrupt output moves ``metric`` through ``receivers'`` ``to`` alone.

    For each sender (every head below the lowest receiver's layer unless ``senders`` is given), as in
    Wang et al. (2022) and ARENA: (1) run ``clean`` with the sender's ``hook_z`` taken from ``corrupt`` and every
    other head's ``hook_z`` frozen at its clean value (MLPs recompute: paths through MLPs count); keep the
    receivers' queries (or keys, values); (2) run ``clean`` again with only those receivers' q (k, v) replaced
    by the kept ones, and read ``metric``. The prompts must have the same number of tokens. With grouped-query
    attention a receiver's key and value are shared by its group: ``to="k"`` or ``"v"`` patches the group's.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> m = lw.logit_diff(" Paris", " Rome")
    >>> result = lw.path_patch(model, "The capital of France is", "The capital of Italy is", m, receivers=[(1, 0)])
    >>> tuple(result.scores.shape), bool(result.scores[1].isnan().all())
    ((2, 4), True)

    """
    _linear_heads(model)
    if to not in PATH_INPUTS:
        raise ValueError(f"to must be one of {PATH_INPUTS}, got {to!r}")
    if not receivers:
        raise ValueError("give at least one receiver head (layer, head)")
    receivers = [
        (checks.layer(layer, model.n_layers, model.name), checks.head(h, model.n_heads, model.name))
        for layer, h in receivers
    ]
    low = min(layer for layer, _ in receivers)
    if senders is None:
        senders = [(layer, h) for layer in range(low) for h in range(model.n_heads)]
    for layer, _ in senders:
        if layer >= low:
            raise ValueError(f"a sender must sit below every receiver: sender layer {layer} >= receiver layer {low}")
    bound = Metric.of(metric).bind(model)
    ids_clean, ids_corrupt = _encode(model, clean), _encode(model, corrupt)
    if len(ids_clean) != len(ids_corrupt):
        raise ValueError(f"clean and corrupt must have as many tokens: {len(ids_clean)} != {len(ids_corrupt)}")
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.n_layers)]
    with torch.no_grad():
        z_clean = read(model, z_names, stop=False, **_inputs(model, ids_clean))
        z_corrupt = read(model, z_names, stop=False, **_inputs(model, ids_corrupt))
    inputs = _inputs(model, ids_clean)
    clean_logits = _last_logits(model, [], inputs)
    corrupt_logits = _last_logits(model, [], _inputs(model, ids_corrupt))
    group = model.n_heads // model.adapter.n_kv_heads
    slots = sorted({(layer, h if to == "q" else h // group) for layer, h in receivers})
    values = torch.full((model.n_layers, model.n_heads), float("nan"))
    for s_layer, s_head in senders:
        kept = _receiver_inputs(model, inputs, z_clean, z_corrupt, (s_layer, s_head), slots, to)
        values[s_layer, s_head] = bound(
            _last_logits(model, _patch_slots(model, slots, kept, to), inputs), clean_logits[0]
        )[0]
    return PathPatch(
        Metric.of(metric).name,
        float(bound(clean_logits, clean_logits[0])[0]),
        float(bound(corrupt_logits, clean_logits[0])[0]),
        values,
        list(receivers),
        to,
    )


__all__ = [
    "ABLATIONS",
    "PATH_INPUTS",
    "Ablation",
    "Components",
    "Induction",
    "LogitAttribution",
    "PathPatch",
    "ablate",
    "ablate_heads",
    "decompose",
    "direct_logit_attribution",
    "induction",
    "path_patch",
    "repeated_tokens",
]
