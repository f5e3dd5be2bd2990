"""LLMasOS widgets: live, linked views of what a transformer language model does, in notebooks.

>>> import llmasos_widgets as lw
>>> model = lw.load_model("tiny-llama")
>>> trace = model.trace("The capital of France is")
>>> len(trace.tokens)
5
"""

from .attention import AttentionIndex
from .attention_view import AttentionView
from .models import BUNDLED, DEFAULT_MODEL, LanguageModel, load_model
from .tokens_view import TokensView
from .trace import Prediction, Trace

__all__ = [
    "AttentionIndex",
    "AttentionView",
    "BUNDLED",
    "DEFAULT_MODEL",
    "LanguageModel",
    "Prediction",
    "TokensView",
    "Trace",
    "load_model",
]
__version__ = "0.1.0"
