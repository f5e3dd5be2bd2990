"""Weights accelerate offloaded (``device_map`` with ``"cpu"`` or ``"disk"``, ``cpu_offload``), used outside a forward.

An offloaded module keeps its weights on the ``meta`` device and an accelerate hook (``module._hf_hook``, an
``AlignDevicesHook`` with ``offload=True``) loads them onto the execution device for each of its own forward
calls, then drops them again. The package also uses weights outside the model's forward: the causal engine
calls a block's parts directly (``Adapter.block``), attention patterns are recomputed from the stream, logits
are derived from the final stream. :func:`materialized` loads a module's offloaded weights for the duration of
such a use (and keeps its submodules' own hooks from dropping them meanwhile); on a model that is not offloaded
it does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def _offload_hooks(module: nn.Module) -> list[Any]:
    """The accelerate hooks on ``module`` itself that offload weights (a SequentialHook's parts included)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    parts = getattr(hook, "hooks", None) or [hook]
    return [h for h in parts if getattr(h, "offload", False) and hasattr(h, "weights_map")]


def is_offloaded(model: nn.Module) -> bool:
    """Whether any module of ``model`` has weights offloaded by accelerate (kept on ``meta`` between calls).

    Examples
    --------
    >>> from llmasos_widgets.core.tiny import tiny_model
    >>> is_offloaded(tiny_model("tiny-llama")[0])
    False

    """
    return any(_offload_hooks(m) for m in model.modules())


def execution_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes: its accelerate hook's execution device, else its first real weight's device.

    Examples
    --------
    >>> execution_device(nn.Linear(2, 2))
    device(type='cpu')

    """
    for m in module.modules():
        hook = getattr(m, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            device = getattr(h, "execution_device", None)
            if device is not None:
                return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


@contextmanager
def materialized(*modules: nn.Module | None) -> Iterator[None]:
    """Hold the offloaded weights of ``modules`` and their submodules on their execution device meanwhile.

    Nested uses and forward calls inside leave them in place; on exit they go back to ``meta`` as accelerate
    would leave them. Weights already loaded (the module is inside its own forward) are left alone. The caller
    holds the model's lock: the hooks are the model's shared state.

    Examples
    --------
    >>> from accelerate import cpu_offload
    >>> layer = cpu_offload(nn.Linear(2, 2), execution_device="cpu")
    >>> layer.weight.device.type
    'meta'
    >>> with materialized(layer):
    ...     layer.weight.device.type
    'cpu'
    >>> layer.weight.device.type
    'meta'

    """
    loaded: list[tuple[nn.Module, Any]] = []
    try:
        for top in modules:
            for module in top.modules() if top is not None else ():
                for hook in _offload_hooks(module):
                    if not any(t.device.type == "meta" for t in module.parameters(recurse=hook.place_submodules)):
                        continue  # loaded already (inside its forward): not ours to drop
                    hook.pre_forward(module)  # loads the weights onto the execution device
                    hook.offload = False  # so a forward call inside keeps them
                    loaded.append((module, hook))
        yield
    finally:
        for module, hook in reversed(loaded):
            hook.offload = True
            hook.post_forward(module, None)  # back to meta
