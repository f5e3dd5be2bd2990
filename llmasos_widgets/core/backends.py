"""Where a model's forward passes run: here with torch hooks (the default), or through nnsight's intervention graph.

The seam is two calls, the ones the Trace and activation patching make:

- ``read(model, names, input_ids)``: the activations at TransformerLens-named sites of one run;
- ``patch_grid(model, clean_ids, corrupt_ids, ...)``: a patching grid's metric values, every cell's patched run
  computed and reduced to its metric where the model runs.

:class:`TorchBackend` is today's path (``core/hooks.read``; patching goes through the causal engine).
:class:`NNsightBackend` runs the same through ``nnsight.LanguageModel`` (nnsight 0.8): locally, or with
``remote=True`` as one NDIF request, where only what is saved travels back (the sites read; for patching the
``[layer, position]`` grid and two numbers, never the activations). ``remote="local"`` is nnsight's dry run of
the remote path: the request is serialized and deserialized with this package hidden, then run here.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .hooks import ModelLock, read, site
from .pooling import pooling_matrix

BACKENDS = ("torch", "nnsight")
# The order in which a block computes its sites: nnsight reads a run's values in the order they happen.
_ORDER = ("hook_resid_pre", "attn.hook_z", "hook_attn_out", "mlp.hook_post", "hook_mlp_out", "hook_resid_post")


class _Model(Protocol):  # what a backend needs of a LanguageModel (models.py imports this module)
    model: nn.Module
    adapter: Any
    n_layers: int
    n_heads: int
    name: str
    lock: ModelLock


class TorchBackend:
    """The default: the model runs in this process under torch hooks (``core/hooks.py``)."""

    name = "torch"
    remote: bool | str = False

    def read(self, model: _Model, names: Sequence[str], input_ids: Tensor) -> dict[str, Tensor]:
        """The activations at ``names`` of one run on ``input_ids`` [batch, pos] (see ``core/hooks.read``)."""
        mask = torch.ones_like(input_ids)
        return read(model, names, input_ids=input_ids, attention_mask=mask)


class NNsightBackend:
    """The model wrapped by ``nnsight.LanguageModel``; runs go through its intervention graph.

    ``remote=True`` sends each run to NDIF (set the key first: ``nnsight.CONFIG.set_default_api_key(key)``);
    the model must then be one NDIF hosts, named by its Hugging Face id. ``remote="local"`` simulates it here.

    Examples
    --------
    >>> import torch, llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama", backend="nnsight")
    >>> acts = model.backend.read(model, ["blocks.1.hook_resid_pre"], torch.tensor([[1, 2, 3]]))
    >>> acts["blocks.1.hook_resid_pre"].shape
    torch.Size([1, 3, 64])

    """

    name = "nnsight"

    def __init__(self, model: nn.Module, tokenizer: Any, remote: bool | str = False) -> None:
        if remote not in (False, True, "local"):
            raise ValueError(f"remote must be False, True (NDIF) or 'local' (nnsight's dry run); got {remote!r}")
        try:
            import nnsight
        except ImportError:
            raise ValueError("backend='nnsight' needs nnsight: pip install nnsight") from None
        with warnings.catch_warnings():  # 0.8 calls LanguageModel deprecated; it is the wrapper of a model object
            warnings.simplefilter("ignore", nnsight.NNsightDeprecationWarning)
            # A copy: nnsight sets the tokenizer's pad token and padding side, which would change the user's
            # tokenizer (shared with the default backend and other views: a pad id is a baseline in attribution).
            self.nn = nnsight.LanguageModel(model, tokenizer=copy.deepcopy(tokenizer))
        repo_id = getattr(self.nn, "repo_id", None) or ""
        if remote is True and (not repo_id or os.path.exists(repo_id)):
            raise ValueError(
                "remote=True runs a model NDIF hosts, named by its Hugging Face id: load it by that id "
                "(lw.load_model('org/name', backend='nnsight', remote=True)); a model object's name_or_path must "
                "be that id"
            )
        self.remote = remote
        self.received_bytes = 0  # what the last run brought back: the saved values (all that NDIF returns)
        self._paths = {id(m): path for path, m in model.named_modules()}

    def envoy(self, module: nn.Module) -> Any:
        """The nnsight Envoy of one of the model's modules (its ``.input`` / ``.output`` in a trace)."""
        path = self._paths.get(id(module))
        if path is None:
            raise ValueError(f"{type(module).__name__} is not a module of this model")
        envoy = self.nn
        for part in path.split(".") if path else ():
            envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
        return envoy

    def _where(self, model: _Model, name: str) -> tuple[str, Any, bool]:
        found = site(model, name)
        what = found.name.split(".", 2)[2]
        if what not in _ORDER or (what == "mlp.hook_post" and model.adapter.n_experts):
            raise ValueError(
                f"the nnsight backend reads {', '.join(_ORDER)} (a dense MLP's units); {name} needs the default backend"
            )
        return found.name, self.envoy(found.module), found.kind == "pre"

    def read(self, model: _Model, names: Sequence[str], input_ids: Tensor) -> dict[str, Tensor]:
        """The activations at ``names`` of one run on ``input_ids`` [batch, pos], read in the order they happen."""
        wheres = sorted(
            (self._where(model, n) for n in names),
            key=lambda w: (int(w[0].split(".")[1]), _ORDER.index(w[0].split(".", 2)[2])),
        )
        if not wheres:
            raise ValueError("give at least one site to read")
        plan = [(envoy, is_input) for _, envoy, is_input in wheres]  # plain values: what a remote request carries
        saved: list[Tensor] = []  # a name first bound inside a trace is not visible after it
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        graph = self.nn
        with model.lock, torch.no_grad(), graph.trace(inputs, remote=self.remote):
            for envoy, is_input in plan:
                saved.append((envoy.input if is_input else envoy.output).save())
        self.received_bytes = sum(_hidden(v).nbytes for v in saved)
        return {name: _hidden(value) for (name, _, _), value in zip(wheres, saved, strict=True)}

    def patch_grid(
        self,
        model: _Model,
        clean_ids: Sequence[int],
        corrupt_ids: Sequence[int],
        *,
        over: str,
        direction: str,
        positions: Sequence[int],
        first_difference: int,
        metric: Callable[[Tensor, Tensor], Tensor],
    ) -> tuple[Tensor, float, float]:
        """Exact activation patching in one nnsight session: ``(values [layer, position or head], clean, corrupt)``.

        nnsight's own loop (a trace per layer, an invoke per position or head). The source run's activations stay
        where the model runs; each patched run's ``metric(last logits [1, vocab], clean logits [vocab])`` is
        computed there, so only the grid travels back. Cells before the prompts differ are the base run's metric.
        """
        L, H = model.n_layers, model.n_heads
        adapter = model.adapter
        module = {"resid": lambda layer: adapter.blocks()[layer], "attn": adapter.attn_added, "mlp": adapter.mlp_added,
                  "heads": adapter.attn_out_proj}[over]  # fmt: skip
        sites = [self.envoy(module(layer)) for layer in range(L)]
        on_input = over in ("resid", "heads")
        graph = self.nn  # the model's own output: its logits soft-capped where the family caps (Gemma 2/3)
        base, source = (corrupt_ids, clean_ids) if direction == "denoise" else (clean_ids, corrupt_ids)
        base_t, source_t, clean_t = (
            torch.tensor([list(base)]),
            torch.tensor([list(source)]),
            torch.tensor([list(clean_ids)]),
        )
        corrupt_t = torch.tensor([list(corrupt_ids)])
        if over == "heads":  # one cell per head: its output at every patched position from the first difference
            rows = [p for p in positions if p >= first_difference]
            cells = [[(h, rows)] for h in range(H)] if rows else []
        else:
            cells = [[(p, None)] for p in positions if p >= first_difference]
        values: list[Tensor] = []  # per layer, saved: the grid is all that travels back
        ends: list[Tensor] = []
        # One statement a line inside the session: nnsight's dry run (remote="local") maps the inner traces to the
        # file's lines and goes astray after a statement that spans several (nnsight 0.8.1).
        with model.lock, torch.no_grad(), graph.session(remote=self.remote):
            kept = []
            with graph.trace(source_t):
                for layer in range(L):
                    kept.append((sites[layer].input if on_input else sites[layer].output).clone())
            with graph.trace(clean_t):
                clean_logits = graph.output.logits[:, -1]
            with graph.trace(corrupt_t):
                corrupt_logits = graph.output.logits[:, -1]
            both = [metric(clean_logits, clean_logits[0]), metric(corrupt_logits, clean_logits[0])]
            ends.append(torch.cat(both).save())
            for layer in range(L):
                row = []
                if cells:
                    with graph.trace() as tracer:
                        for cell in cells:
                            with tracer.invoke(base_t):
                                index, where = cell[0]
                                value = sites[layer].input if on_input else sites[layer].output
                                if where is None:
                                    value[:, index] = kept[layer][:, index]
                                else:
                                    cols = slice(index * value.shape[-1] // H, (index + 1) * value.shape[-1] // H)
                                    value[:, where, cols] = kept[layer][:, where, cols]
                                row.append(metric(graph.output.logits[:, -1], clean_logits[0]))
                    values.append(torch.cat(row).save())
        self.received_bytes = sum(v.nbytes for v in (*values, *ends))
        clean_metric, corrupt_metric = (float(v) for v in ends[0])
        base_metric = corrupt_metric if direction == "denoise" else clean_metric
        grid = torch.full((L, H if over == "heads" else len(clean_ids)), float("nan"))
        for layer in range(L):
            if over == "heads":
                grid[layer] = values[layer] if cells else base_metric
            else:
                grid[layer, list(positions)] = base_metric
                done = [cell[0][0] for cell in cells]
                if done:
                    grid[layer, done] = values[layer].float()
        return grid, clean_metric, corrupt_metric

    def serves_attention(self, model: _Model) -> bool:
        """Whether :meth:`attention_overview` can run for this model where it runs (a remote model's overview).

        The Llama-like families (Llama, Mistral, Qwen2, SmolLM2): RoPE, grouped-query attention, no q/k norm, no
        soft cap, no sliding window. Other families compute the overview here from the fetched stream.
        """
        adapter = model.adapter
        attn = adapter.blocks()[0].self_attn if adapter.family == "llama" else None
        return (
            attn is not None
            and hasattr(attn, "q_proj")
            and not hasattr(attn, "q_norm")
            and all(adapter.window(i) is None and adapter.attn_softcap(i) is None for i in range(model.n_layers))
        )

    def attention_overview(
        self, model: _Model, input_ids: Tensor, size: int, rollout_limit: int
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every layer's attention overview, computed where the model runs: only the summaries travel back.

        Returns ``thumbs`` [layer, head, size, size] (mean-pooled patterns), ``scores`` [layer, 3, head]
        (``SCORE_NAMES``: entropy, previous-token, first-token) and the pooled attention rollout [layer, size,
        size] (None above ``rollout_limit`` tokens), as ``AttentionIndex.overview`` computes them here.
        The answer is ``layers × (heads × size² + 3 × heads + size²)`` floats, whatever the text's length.
        """
        n, n_heads = input_ids.shape[1], model.n_heads
        size = min(size, n)
        bins, eye, first, with_rollout = pooling_matrix(n, size), torch.eye(n), 1 if n > 1 else 0, n <= rollout_limit
        rollout: list[Tensor] = []  # up to the last layer summarised (the layers come in order)

        def summarise(pattern: Tensor) -> Tensor:  # [head, query, key] -> what travels back for the layer
            entropy = torch.special.entr(pattern).sum(-1).mean(-1)
            previous = pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) if n > 1 else entropy * 0
            parts = [(bins @ pattern @ bins.T).flatten(), entropy, previous, pattern[:, first:, 0].mean(-1)]
            if with_rollout:  # Abnar & Zuidema, as AttentionIndex._rollout_step
                mixed = 0.5 * pattern.mean(0) + 0.5 * eye
                mixed = mixed / mixed.sum(-1, keepdim=True)
                rollout[:] = [mixed if not rollout else mixed @ rollout[0]]
                parts.append((bins @ rollout[0] @ bins.T).flatten())
            return torch.cat(parts)

        flat = self._served_attention(model, input_ids, summarise)  # [layer, heads*size² + 3*heads (+ size²)]
        cut, n_layers = n_heads * size * size, model.n_layers
        thumbs = flat[:, :cut].reshape(n_layers, n_heads, size, size)
        scores = flat[:, cut : cut + 3 * n_heads].reshape(n_layers, 3, n_heads)
        pooled = flat[:, cut + 3 * n_heads :].reshape(n_layers, size, size) if with_rollout else None
        return thumbs, scores, pooled

    def attention_token(self, model: _Model, input_ids: Tensor, position: int, direction: str) -> Tensor:
        """One token's attention in every layer and head, computed where the model runs: [layer, head, token].

        ``direction="from"``: where the token looks (its row); ``"to"``: who looks at it (its column), as
        ``AttentionIndex.rows`` and ``columns`` compute them here. A click on a remote model is one request.
        """
        if direction not in ("from", "to"):
            raise ValueError(f"direction must be 'from' or 'to'; got {direction!r}")

        def summarise(pattern: Tensor) -> Tensor:
            return pattern[:, position] if direction == "from" else pattern[:, :, position]

        return self._served_attention(model, input_ids, summarise)

    def _served_attention(self, model: _Model, input_ids: Tensor, summarise: Callable[[Tensor], Tensor]) -> Tensor:
        # Each layer's pattern rebuilt inside the run from its query and key projections and the rotary angles the
        # attention receives, then summarised there: plain torch and nested functions (nnsight sends those by
        # their source), so that NDIF runs the request without this package. Returns [layer, *summary].
        if not self.serves_attention(model):
            raise ValueError(
                f"attention is computed where the model runs for Llama-like families; {model.name} "
                f"({model.adapter.family}) computes it here from the fetched residual stream"
            )
        blocks, n_layers, n_heads = model.adapter.blocks(), model.n_layers, model.n_heads
        n, group, head_dim = input_ids.shape[1], n_heads // model.adapter.n_kv_heads, blocks[0].self_attn.head_dim
        scales = [model.adapter.attn_scale(layer) for layer in range(n_layers)]
        attns = [self.envoy(block.self_attn) for block in blocks]
        masked, kept = ~torch.ones(n, n, dtype=torch.bool).tril(), []

        def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:  # HF's apply_rotary_pos_emb
            dim = cos.shape[-1]
            x_rot, x_pass = x[..., :dim], x[..., dim:]
            half = torch.cat((-x_rot[..., dim // 2 :], x_rot[..., : dim // 2]), dim=-1)
            return torch.cat((x_rot * cos + half * sin, x_pass), dim=-1)

        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        with model.lock, torch.no_grad(), self.nn.trace(inputs, remote=self.remote):
            for layer in range(n_layers):
                attn = attns[layer]
                cos, sin = attn.inputs[1]["position_embeddings"]
                q = attn.q_proj.output[0].view(n, n_heads, head_dim).transpose(0, 1)
                k = attn.k_proj.output[0].view(n, -1, head_dim).transpose(0, 1)
                q, k = rotate(q, cos[0], sin[0]).float(), rotate(k, cos[0], sin[0]).float()
                scores = (q @ k.repeat_interleave(group, dim=0).transpose(1, 2)) * scales[layer]
                pattern = scores.masked_fill(masked, torch.finfo(scores.dtype).min).softmax(-1)
                kept.append(summarise(pattern).save())
        self.received_bytes = sum(v.nbytes for v in kept)
        return torch.stack(kept)


def _hidden(value: Any) -> Tensor:  # a module's input or output: the hidden states (first item of a tuple)
    return value[0] if isinstance(value, tuple) else value


def backend_for(name: str, model: nn.Module, tokenizer: Any, remote: bool | str) -> TorchBackend | NNsightBackend:
    """The backend called ``name`` (one of BACKENDS) for a loaded model, or a ValueError naming them.

    Examples
    --------
    >>> backend_for("torch", None, None, False).name
    'torch'

    """
    if name == "torch":
        if remote:
            raise ValueError("remote= goes with backend='nnsight' (runs on NDIF through nnsight)")
        return TorchBackend()
    if name == "nnsight":
        return NNsightBackend(model, tokenizer, remote)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
