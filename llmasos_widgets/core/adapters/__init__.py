"""Architecture adapters: where each Hugging Face family keeps the parts that a Trace reads and the engine runs.

The base class (``base.py``) says what a family must provide and composes a block from it; each family is one
module. The registry below maps a config's ``model_type`` to its adapter: adding a family is one module, one
entry in ``ADAPTERS`` and one tiny model (DESIGN.md, "Adding a family").
"""

from __future__ import annotations

from torch import nn

from .base import Adapter, Edit, apply_rope, unchanged
from .bert import BertAdapter
from .gemma import Gemma2Adapter, Gemma3Adapter, GemmaAdapter
from .gpt2 import GPT2Adapter
from .llama import LlamaAdapter
from .moe import MoEAdapter, OlmoeAdapter, Qwen2MoEAdapter, Qwen3MoEAdapter
from .neox import NeoXAdapter
from .olmo2 import Olmo2Adapter
from .phi3 import Phi3Adapter

ADAPTERS: tuple[type[Adapter], ...] = (
    LlamaAdapter,
    GemmaAdapter,
    Gemma2Adapter,
    Gemma3Adapter,
    GPT2Adapter,
    NeoXAdapter,
    Phi3Adapter,
    Olmo2Adapter,
    MoEAdapter,
    Qwen2MoEAdapter,
    Qwen3MoEAdapter,
    OlmoeAdapter,
    BertAdapter,
)

__all__ = [
    "ADAPTERS",
    "Adapter",
    "BertAdapter",
    "Edit",
    "GPT2Adapter",
    "Gemma2Adapter",
    "Gemma3Adapter",
    "GemmaAdapter",
    "LlamaAdapter",
    "MoEAdapter",
    "NeoXAdapter",
    "Olmo2Adapter",
    "OlmoeAdapter",
    "Phi3Adapter",
    "Qwen2MoEAdapter",
    "Qwen3MoEAdapter",
    "adapter_class",
    "adapter_for",
    "apply_rope",
    "supported_model_types",
    "unchanged",
]


def supported_model_types() -> list[str]:
    """Every config ``model_type`` an adapter handles.

    Examples
    --------
    >>> "gemma2" in supported_model_types(), "gpt_neox" in supported_model_types()
    (True, True)

    """
    return [t for a in ADAPTERS for t in a.model_types]


def adapter_class(model_type: str) -> type[Adapter]:
    """The adapter class for a config's ``model_type``, or a ValueError listing the supported ones.

    Examples
    --------
    >>> adapter_class("qwen2").family
    'llama'
    >>> adapter_class("gemma3_text").family
    'gemma3'

    """
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise ValueError(
        f"unsupported architecture {model_type!r}: supported model types are {', '.join(supported_model_types())}. "
        "A family whose blocks are built like one of these may only need its model_type added to that adapter's "
        "model_types; otherwise add an adapter (llmasos_widgets/core/adapters/, see 'Adding a family' in DESIGN.md)"
    )


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter bound to a loaded Hugging Face model.

    Examples
    --------
    >>> from llmasos_widgets.core.tiny import tiny_model
    >>> adapter_for(tiny_model("tiny-gpt2")[0]).family
    'gpt2'

    """
    return adapter_class(getattr(model.config, "model_type", "?"))(model)
