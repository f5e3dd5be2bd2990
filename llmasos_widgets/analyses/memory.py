"""What an Explorer, a trace, an attribution or a patching sweep will need in memory, before it runs.

Each estimate sums the tensors the code holds at its peak (core/memory.py has the parts and the refusal);
the entry points (``model.trace``, ``Explorer``, ``attribute``, ``patch``) check it against what is free.
"""

from __future__ import annotations

from typing import Any

from ..core.memory import F32, Estimate, Shape, available_bytes, trace_estimate
from ..core.models import LanguageModel

WHATS = ("trace", "explorer", "attribution", "patching")
GRADIENT_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "layer_integrated_gradients")
ROLLOUT_LIMIT = 1024  # AttentionIndex keeps rollouts up to this many tokens (analyses/attention.py)
PATCH_ROWS = 8192  # rows of one patched block call (causal/engine.py, PatchEngine.max_rows)


def estimate(model: LanguageModel, text: str, what: str = "trace", **settings: Any) -> Estimate:
    """Bytes ``what`` will need on ``model`` and ``text``, with a breakdown (``print(e)``) and smaller settings.

    Parameters
    ----------
    model : LanguageModel
        The loaded model (its shapes and its weights' dtype set the sizes).
    text : str
        The text (for ``"patching"``, the clean prompt; the corrupt one has as many tokens).
    what : str
        ``"trace"``, ``"explorer"``, ``"attribution"`` or ``"patching"``.
    **settings
        For ``"attribution"``: ``method``, ``n_steps``, ``internal_batch_size``, ``n_rows`` (targets: 1);
        for ``"patching"``: ``over`` (``"resid"``), ``positions`` (how many patched; default every token).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> e = lw.estimate(lw.load_model("tiny-llama"), "The capital of France is", what="explorer")
    >>> e.bytes > lw.estimate(lw.load_model("tiny-llama"), "The capital of France is").bytes
    True

    """
    if what not in WHATS:
        raise ValueError(f"what must be one of {', '.join(WHATS)}; got {what!r}")
    n_tokens = len(model.tokenizer(text, add_special_tokens=True)["input_ids"])
    return estimate_tokens(model, n_tokens, what, **settings)


def estimate_tokens(model: LanguageModel, n_tokens: int, what: str, **settings: Any) -> Estimate:
    """:func:`estimate` for a text of ``n_tokens`` tokens (what the entry points call).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> estimate_tokens(lw.load_model("tiny-llama"), 10, "patching").what
    'a patching sweep (resid)'

    """
    if what == "trace":
        return trace_estimate(model, n_tokens)
    if what == "explorer":
        return _explorer(model, n_tokens)
    if what == "attribution":
        return _attribution(model, n_tokens, **settings)
    if what == "patching":
        return _patching(model, n_tokens, **settings)
    raise ValueError(f"what must be one of {', '.join(WHATS)}; got {what!r}")


def _explorer(model: LanguageModel, T: int) -> Estimate:  # noqa: N803
    s = Shape.of(model)
    trace = trace_estimate(model, T)
    parts = dict(trace.parts)
    # Measured: the panels made at once hold about a float32 copy of what the trace keeps (smollm2, T = 512).
    kept = ((s.n_layers + 1) * s.d_model + s.n_layers * s.d_mlp) * T
    parts["panels' float32 reads of the trace"] = kept * F32
    # AttentionIndex: every layer's queries and keys (float32) and each query's log-sum-exp.
    parts["attention index (queries, keys, log-sum-exp; float32)"] = (
        s.n_layers * s.n_heads * T * (2 * s.head_dim + 1) * F32
    )
    if T <= ROLLOUT_LIMIT:
        parts["attention rollout (float32)"] = s.n_layers * T * T * F32
    # A click unembeds the token after every layer (the lens column): logits, softmax and their top-k.
    parts["one click (every layer's unembedding of a token, float32)"] = 6 * s.n_layers * s.vocab * F32
    smaller = [*trace.smaller]
    smaller.append("fewer panels (panels=[...] without 'attention': its index is the second largest part)")
    return Estimate("an Explorer", parts, smaller)


def _attribution(
    model: LanguageModel,
    T: int,  # noqa: N803
    *,
    method: str = "integrated_gradients",
    n_steps: int | None = None,
    internal_batch_size: int | None = None,
    n_rows: int = 1,
    **_: Any,
) -> Estimate:
    s = Shape.of(model)
    if method in GRADIENT_METHODS and method not in ("saliency", "input_x_gradient"):
        steps = n_steps or 33  # the adaptive rule's first grid
        # By default attribute() batches as many points as fit in half the free memory (fitting_batch).
        batch = min(internal_batch_size or fitting_batch(model, T, max(1, 2048 // T)), steps)
    else:
        batch = 1
    if method not in GRADIENT_METHODS:  # perturbation: forwards without a backward
        batch = 8
        saved = s.forward_rows(batch * T, T)
    else:
        # A backward keeps what every block's forward made, for the whole batch (backward_rows, per layer).
        saved = s.n_layers * s.backward_rows(batch * T)
    parts = {
        f"activations for the backward ({batch} x {T} tokens x {s.n_layers} layers)": saved,
        f"log-probabilities of {n_rows} target row(s) (float32)": 3 * batch * n_rows * s.vocab * F32,
        "the gradient and the path (float32)": 3 * batch * T * s.d_model * F32,
    }
    smaller = [f"a shorter text (it is {T} tokens)"]
    if batch > 1:
        smaller.insert(0, f"internal_batch_size={max(1, batch // 4)} (points per forward pass; now {batch})")
    if method == "integrated_gradients":
        smaller.append("method='input_x_gradient' (one forward and one backward)")
    return Estimate(f"an attribution ({method})", parts, smaller)


def _patching(model: LanguageModel, T: int, *, over: str = "resid", positions: int | None = None, **_: Any) -> Estimate:  # noqa: N803
    s = Shape.of(model)
    n_pos = T if positions is None else int(positions)
    cells = s.n_layers * (s.n_heads if over == "heads" else n_pos)
    # The runs patched at one position go through the blocks together, each joining at its layer.
    rows = min(PATCH_ROWS, s.n_layers * T)
    parts = {
        "clean and corrupt runs' activations (3 sites x layers)": 2 * 3 * (s.n_layers + 1) * T * s.d_model * s.itemsize,
        f"one patched block call ({rows} token rows)": s.forward_rows(rows, T),
        f"last-position logits of {cells} patched runs (float32)": 2 * cells * s.vocab * F32,
    }
    smaller = [
        f"fewer positions (positions=[...]; now {n_pos})",
        "method='attribution' (one forward and one backward)",
        f"shorter prompts (they are {T} tokens)",
    ]
    return Estimate(f"a patching sweep ({over})", parts, smaller)


def fitting_batch(model: LanguageModel, n_tokens: int, limit: int) -> int:
    """The most points (up to ``limit``) an attribution's backward can batch in half the free memory.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> fitting_batch(lw.load_model("tiny-llama"), 10, 64)
    64

    """
    s = Shape.of(model)
    per_point = s.n_layers * s.backward_rows(n_tokens) + 3 * (s.vocab + n_tokens * s.d_model) * F32
    return max(1, min(limit, available_bytes() // 2 // per_point))
