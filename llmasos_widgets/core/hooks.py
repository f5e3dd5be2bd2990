"""One home for running a model: its lock, and the hooks a run places on its modules.

Every view and analysis of a model shares its torch modules, and a hook placed on a module acts on
every forward pass through it, whoever runs it. A trace taken while a SteeringView generates would be
steered; a patching capture's hooks would overwrite another capture's activations. So every run of a
model's modules holds ``model.lock`` (a :class:`ModelLock`), and hooks are placed only with
:func:`hooked`, which holds the lock while they are on and removes them in ``finally``. Runs of one
model take turns, in the order they asked; runs of different models are independent.

The test suite checks the rule: a global forward pre-hook fails any test in which a model's module
runs on a thread that does not hold that model's lock (``tests/conftest.py``).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn


class ModelLock:
    """A re-entrant lock that serves waiting threads in the order they came (first in, first out).

    Python's own locks let a thread that releases and re-acquires in a loop (a patching sweep, one
    group at a time) take the lock again before a waiting thread wakes, so a click could wait for the
    whole sweep; here it waits for one group at most.

    Examples
    --------
    >>> lock = ModelLock()
    >>> with lock:
    ...     with lock:  # re-entrant: a run may call another (steer calls model.trace)
    ...         lock.held()
    True
    >>> lock.held()
    False

    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[object] = deque()

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            ticket = object()
            self._queue.append(ticket)
            try:
                while self._owner is not None or self._queue[0] is not ticket:
                    self._cond.wait()
            except BaseException:  # a KeyboardInterrupt while waiting: leave the queue
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("ModelLock released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def held(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# One lock per torch model, whichever LanguageModel wraps it: two wrappers of one model share its modules.
_LOCKS: weakref.WeakKeyDictionary[nn.Module, ModelLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def lock_of(module: nn.Module) -> ModelLock:
    """The lock of a torch model: made on first use, the same for every LanguageModel that wraps it.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> lock_of(model.model) is model.lock is lw.LanguageModel("again", model.model, model.tokenizer).lock
    True

    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = ModelLock()
        return lock


@dataclass(frozen=True)
class Hook:
    """A hook to place on ``module``: ``kind`` is ``"pre"`` (before its forward) or ``"post"`` (after).

    ``fn`` has torch's signature: ``fn(module, args)`` for a pre-hook, ``fn(module, args, kwargs)``
    with ``with_kwargs``; ``fn(module, args, output)`` for a post-hook. Returning a value replaces the
    input (pre) or the output (post), as in torch.
    """

    module: nn.Module
    kind: str
    fn: Callable[..., Any]
    with_kwargs: bool = False

    def place(self) -> torch.utils.hooks.RemovableHandle:
        if self.kind == "pre":
            return self.module.register_forward_pre_hook(self.fn, with_kwargs=self.with_kwargs)
        if self.kind == "post":
            return self.module.register_forward_hook(self.fn, with_kwargs=self.with_kwargs)
        raise ValueError(f"a hook's kind is 'pre' or 'post', got {self.kind!r}")


def pre(module: nn.Module, fn: Callable[..., Any], *, with_kwargs: bool = False) -> Hook:
    """A hook run before ``module``'s forward (see :class:`Hook`)."""
    return Hook(module, "pre", fn, with_kwargs)


def post(module: nn.Module, fn: Callable[..., Any]) -> Hook:
    """A hook run after ``module``'s forward (see :class:`Hook`)."""
    return Hook(module, "post", fn)


class _HasLock(Protocol):  # what hooked() needs of a LanguageModel (models.py imports this module)
    lock: ModelLock


@contextmanager
def hooked(model: _HasLock, hooks: Iterable[Hook]) -> Iterator[None]:
    """Hold ``model.lock`` with ``hooks`` placed; they are removed on exit, whatever happens.

    Examples
    --------
    >>> import torch, llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> seen = []
    >>> hook = post(model.adapter.blocks()[0], lambda module, args, output: seen.append(output.shape))
    >>> with hooked(model, [hook]):
    ...     _ = model.adapter.base()(input_ids=torch.tensor([[1, 2, 3]]))
    >>> seen, model.lock.held()
    ([torch.Size([1, 3, 64])], False)

    """
    with model.lock:
        handles = []
        try:
            for hook in hooks:
                handles.append(hook.place())
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def inputs_only(model: _HasLock, module: nn.Module) -> Iterator[None]:
    """Hold ``model.lock`` with ``module``'s weights frozen (``requires_grad=False``) meanwhile.

    Gradient methods need gradients of inputs or activations only; freezing the weights saves their
    gradients' memory and time. It is global state of the shared modules, so it lasts only as long as
    the lock is held: another run never sees the weights frozen.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> with inputs_only(model, model.model):
    ...     any(p.requires_grad for p in model.model.parameters())
    False
    >>> all(p.requires_grad for p in model.model.parameters())
    True

    """
    with model.lock:
        frozen = [p for p in module.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)


# -- reading and replacing what a module computes --------------------------------------------------
def block_output(output: Any) -> Tensor:
    """The hidden states a block (or any module) returned: the first item of a tuple, or the tensor itself.

    Examples
    --------
    >>> block_output((torch.ones(2), None)).tolist(), block_output(torch.zeros(1)).tolist()
    ([1.0, 1.0], [0.0])

    """
    return output[0] if isinstance(output, tuple) else output


def replace_output(output: Any, hidden: Tensor) -> Any:
    """``output`` with its hidden states replaced by ``hidden`` (a post-hook returns this to replace them).

    Examples
    --------
    >>> replace_output((torch.ones(2), "cache"), torch.zeros(2))
    (tensor([0., 0.]), 'cache')

    """
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def hidden_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    """The hidden states a block was called with (Hugging Face passes them by position or by keyword)."""
    return args[0] if args else kwargs["hidden_states"]


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the deepest site needed has run (see :func:`run`)."""


def _stop(module: nn.Module, args: Any, output: Any) -> None:
    raise StopForward


# -- sites by TransformerLens name, and runs that read them -------------------------------------------
SITES = ("hook_resid_pre", "hook_resid_post", "mlp.hook_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z")
# A mixture of experts' routing (core/adapters/moe.py): TransformerLens's names for the chosen experts and their
# weights [.., k], and Qwen2-MoE's shared expert's gate [.., 1].
MOE_SITES = ("mlp.hook_expert_indices", "mlp.hook_expert_weights", "mlp.hook_shared_gate")
_SITE = re.compile(r"^blocks\.(-?\d+)\.(" + "|".join(re.escape(s) for s in (*SITES, *MOE_SITES)) + ")$")


class _Adapted(Protocol):  # what a site needs of a LanguageModel
    adapter: Any
    n_layers: int
    name: str
    lock: ModelLock


@dataclass(frozen=True)
class Site:
    """Where an activation is read: after (``"post"``) or before (``"pre"``) ``module`` runs, at ``layer``."""

    name: str
    layer: int
    module: nn.Module
    kind: str
    # How the adapter reads a site that is no module's input or output (the MLP's units, a router's
    # choices): a function of a callback that returns the hook handing the callback the activation.
    via: Callable[[Callable[[Tensor], None]], Hook] | None = None

    def hook(self, store: dict[str, Tensor]) -> Hook:
        """A hook that stores this site's activation in ``store[self.name]``."""
        if self.via is not None:
            return self.via(lambda value: store.__setitem__(self.name, value))
        if self.kind == "pre":

            def keep_input(module: nn.Module, args: Any, kwargs: Any) -> None:
                store[self.name] = hidden_input(args, kwargs)

            return Hook(self.module, "pre", keep_input, with_kwargs=True)

        def keep_output(module: nn.Module, args: Any, output: Any) -> None:
            store[self.name] = block_output(output)

        return Hook(self.module, "post", keep_output)


def site(model: _Adapted, name: str) -> Site:
    """The site TransformerLens calls ``name`` in ``model``; negative layers count from the end.

    ``blocks.{l}.hook_resid_pre`` (the stream entering block l), ``hook_resid_post`` (leaving it),
    ``mlp.hook_post`` (the MLP's hidden activations: its output projection's input), ``hook_attn_out`` and
    ``hook_mlp_out`` (what attention and the MLP add to the stream, after their post-norms where a family has
    them), ``attn.hook_z`` (the heads' outputs before the output projection, ``[.., head * head_dim]``). A
    mixture of experts also has ``mlp.hook_expert_indices`` and ``mlp.hook_expert_weights`` (each token's top-k
    experts and their routing weights, ``[.., k]``) and, with a shared expert, ``mlp.hook_shared_gate``
    (``[.., 1]``); its ``mlp.hook_post`` is every expert's hidden units (core/adapters/moe.py).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> s = site(model, "blocks.-1.mlp.hook_post")
    >>> s.layer, s.kind, s.module is model.adapter.mlp_out(1)
    (1, 'pre', True)

    """
    from .checks import layer as check_layer

    found = _SITE.match(name) if isinstance(name, str) else None
    if found is None:
        raise KeyError(f"unknown site {name!r}: use blocks.{{layer}}.<one of {', '.join(SITES)}>")
    layer, what = check_layer(int(found.group(1)), model.n_layers, model.name), found.group(2)
    canonical = f"blocks.{layer}.{what}"
    adapter = model.adapter
    if what == "hook_resid_pre":
        return Site(canonical, layer, adapter.blocks()[layer], "pre")
    if what == "hook_resid_post":
        return Site(canonical, layer, adapter.blocks()[layer], "post")
    if what.startswith("mlp."):  # the MLP's units (a mixture's experts' too) and its routing: the adapter knows
        hook = adapter.mlp_hook(layer, what[4:], lambda value: None)  # a ValueError where the model has no such site
        return Site(canonical, layer, hook.module, hook.kind, via=lambda keep: adapter.mlp_hook(layer, what[4:], keep))
    if what == "hook_attn_out":  # after a post-attention norm where the family has one (Gemma 2/3, OLMo-2)
        return Site(canonical, layer, adapter.attn_added(layer), "post")
    if what == "hook_mlp_out":
        return Site(canonical, layer, adapter.mlp_added(layer), "post")
    return Site(canonical, layer, adapter.attn_out_proj(layer), "pre")  # attn.hook_z


def run(model: _Adapted, hooks: Iterable[Hook] = (), *, stop_after: nn.Module | None = None, **inputs: Any) -> Any:
    """Run the model's base (no LM head) on ``inputs`` with ``hooks`` placed, holding its lock.

    With ``stop_after``, the pass ends once that module has run (the layers after it cannot change what the
    hooks read: "run to layer L and stop") and None is returned; else the base model's output. Gradients
    follow the caller's mode (``torch.no_grad()`` or ``torch.enable_grad()`` around the call).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> run(model, stop_after=model.adapter.blocks()[0], input_ids=torch.tensor([[1, 2]])) is None
    True

    """
    placed = list(hooks)
    if stop_after is not None:
        placed.append(Hook(stop_after, "post", _stop))
    try:
        with hooked(model, placed):
            return model.adapter.base()(**inputs)
    except StopForward:
        return None


def read(
    model: _Adapted, names: Iterable[str], *, hooks: Iterable[Hook] = (), stop: bool = True, **inputs: Any
) -> dict[str, Tensor]:
    """The activations at ``names`` (TransformerLens names, see :func:`site`) of one run on ``inputs``.

    With ``stop`` (the default), the run ends after the deepest of them. Keys are the canonical names
    (negative layers resolved). Other ``hooks`` (a steering vector, noise) act on the same run.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> acts = read(model, ["blocks.0.hook_resid_post", "blocks.-1.mlp.hook_post"], input_ids=torch.tensor([[1, 2, 3]]))
    >>> {k: tuple(v.shape) for k, v in acts.items()}
    {'blocks.0.hook_resid_post': (1, 3, 64), 'blocks.1.mlp.hook_post': (1, 3, 128)}

    """
    sites = [site(model, n) for n in names]
    if not sites:
        raise ValueError("give at least one site to read")
    store: dict[str, Tensor] = {}
    last = model.adapter.blocks()[max(s.layer for s in sites)]  # the block of the deepest site ends the run
    run(model, [*hooks, *(s.hook(store) for s in sites)], stop_after=last if stop else None, **inputs)
    missing = [s.name for s in sites if s.name not in store]
    if missing:
        raise RuntimeError(f"the forward pass did not reach {', '.join(missing)}; please report this model")
    return {s.name: store[s.name] for s in sites}
