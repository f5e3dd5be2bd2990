"""Memory before it runs out: what a run will need, what is free, and a refusal that names a smaller setting.

An estimate is a sum of named parts, each a count of tensors' elements times their bytes (the model's dtype
for activations, float32 where the code computes in float32), so a refusal says where the bytes go.
``available_bytes`` is the least of the machine's available memory and what the process's address-space
limit (``RLIMIT_AS``) leaves. Entry points call :func:`require` before they start, so a request that would
not fit fails with :class:`NotEnoughMemory` instead of the kernel dying.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from .models import LanguageModel

F32 = 4  # bytes of a float32


class NotEnoughMemory(MemoryError):
    """A run that would need more memory than is free; the message names smaller settings."""


@dataclass(frozen=True)
class Shape:
    """The sizes an estimate reads from a model: layers, widths, heads, vocabulary, bytes per activation."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    itemsize: int  # bytes of one activation (the weights' dtype)

    @classmethod
    def of(cls, model: LanguageModel) -> Shape:
        """The shape of a loaded model.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> Shape.of(load_model("tiny-llama")).n_layers
        2

        """
        a, config = model.adapter, model.model.config
        # The width of mlp.hook_post, from shapes alone (an expert layer's weights would be copied to read it).
        d_mlp = a.n_experts * a.d_expert + a.d_shared if a.n_experts else int(a.neuron_output_weights(0).shape[0])
        head_dim = getattr(config, "head_dim", None) or a.d_model // a.n_heads
        vocab = int(model.model.get_input_embeddings().weight.shape[0])
        itemsize = next(model.model.parameters()).element_size()
        return cls(a.n_layers, a.d_model, d_mlp, a.n_heads, a.n_kv_heads, head_dim, vocab, itemsize)

    def backward_rows(self, rows: int) -> int:
        """Bytes one block saves for the backward per ``rows`` token rows.

        Queries, keys, values and the attention output; the MLP's gate, up, activation and product; the
        residual, its two norms and the attention's output; per head one log-sum-exp (sdpa keeps no scores).
        """
        qkv = (2 * self.n_heads + 2 * self.n_kv_heads) * self.head_dim
        return rows * ((qkv + 4 * self.d_mlp + 4 * self.d_model) * self.itemsize + self.n_heads * F32)

    def forward_rows(self, rows: int, keys: int) -> int:
        """Bytes one block's forward holds at once for ``rows`` token rows, each attending to ``keys`` keys.

        Queries, keys, values and the attention output, the MLP's gate, up and product, the residual and its
        norm, and one row of attention scores per head in float32.
        """
        qkv = (2 * self.n_heads + 2 * self.n_kv_heads) * self.head_dim
        return rows * ((qkv + 3 * self.d_mlp + 3 * self.d_model) * self.itemsize + self.n_heads * keys * F32)


@dataclass
class Estimate:
    """Bytes a run will need (``bytes``), as named parts, and the smaller settings to name if it does not fit.

    Examples
    --------
    >>> e = Estimate("trace", {"activations kept": 3 * 2**20, "one block's forward": 2**20})
    >>> e.bytes, str(e).splitlines()[0]
    (4194304, 'trace needs about 4.2 MB:')

    """

    what: str
    parts: dict[str, int]
    smaller: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return int(sum(self.parts.values()))

    def minus(self, other: Estimate) -> Estimate:
        """The estimate without ``other``'s parts (what is already held, e.g. a trace made before)."""
        return Estimate(self.what, {k: v for k, v in self.parts.items() if k not in other.parts}, self.smaller)

    def __str__(self) -> str:
        lines = [f"{self.what} needs about {_size(self.bytes)}:"]
        lines += [f"  {name}: {_size(n)}" for name, n in self.parts.items()]
        return "\n".join(lines)


def available_bytes() -> int:
    """Bytes this process may still take: the machine's available memory, less if ``RLIMIT_AS`` says so.

    Examples
    --------
    >>> available_bytes() > 0
    True

    """
    free = int(psutil.virtual_memory().available)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft - int(psutil.Process().memory_info().vms))
    return max(free, 0)


def require(estimate: Estimate) -> None:
    """Raise :class:`NotEnoughMemory` if ``estimate`` exceeds what is free, naming smaller settings.

    Examples
    --------
    >>> require(Estimate("trace", {"activations kept": 1024}))
    >>> require(Estimate("trace", {"activations kept": 2**62}, ["a shorter text"]))
    Traceback (most recent call last):
    ...
    llmasos_widgets.core.memory.NotEnoughMemory: trace needs about 4611686.0 TB but only ... is free:
    ...
    Try: a shorter text. ...

    """
    free = available_bytes()
    if estimate.bytes <= free:
        return
    ways = "; ".join(estimate.smaller) if estimate.smaller else "a smaller model"
    parts = "\n".join(str(estimate).splitlines()[1:])
    raise NotEnoughMemory(
        f"{estimate.what} needs about {_size(estimate.bytes)} but only {_size(free)} is free:\n{parts}\n"
        f"Try: {ways}. (lw.estimate(model, text, what=...) gives these numbers before a run.)"
    )


def trace_estimate(model: LanguageModel, n_tokens: int) -> Estimate:
    """Bytes ``model.trace`` of ``n_tokens`` tokens needs: the activations it keeps, one block's forward.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace_estimate(load_model("tiny-llama"), 100).bytes > 0
    True

    """
    s = Shape.of(model)
    kept = ((s.n_layers + 1) * s.d_model + s.n_layers * s.d_mlp) * n_tokens * s.itemsize
    smaller = [f"a shorter text (it is {n_tokens} tokens; the trace grows with the tokens)"]
    if s.itemsize == F32:
        smaller.append("a bfloat16 or float16 model (load_model(..., dtype=torch.bfloat16)): half the activations")
    return Estimate(
        "a trace",
        {
            f"residual stream and MLP activations kept ({n_tokens} tokens x {s.n_layers} layers)": kept,
            "one block's forward": s.forward_rows(n_tokens, n_tokens),
        },
        smaller,
    )


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"
