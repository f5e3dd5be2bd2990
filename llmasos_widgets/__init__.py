"""LLMasOS widgets: live, linked views of what a transformer language model does, in notebooks.

>>> import llmasos_widgets as lw
>>> model = lw.load_model("tiny-llama")
>>> trace = model.trace("The capital of France is")
>>> len(trace.tokens)
5
"""

from .attention import AttentionIndex
from .attention_view import AttentionView
from .attribution import Attribution, SanityCheck, attribute
from .causal import (
    CausalTrace,
    Direction,
    Metric,
    Patching,
    PatchResult,
    Steering,
    SteerResult,
    causal_trace,
    kl_to_clean,
    logit_diff,
    patch,
    prob,
    steer,
)
from .concept_view import ConceptView
from .concepts import CAV, Concept, TCAVResult, tcav, train_cav
from .corpus import sample_texts, sample_topics
from .explorer import Explorer, link
from .feature_view import FeatureView
from .features import FeatureIndex
from .lens_view import LensView
from .models import BUNDLED, DEFAULT_MODEL, LanguageModel, load_model, randomized
from .neuron_view import NeuronView
from .neurons import NeuronIndex, logit_lens, neuron_contributions, top_neurons, vocab_projection
from .patching_view import PatchingView
from .sae import SAE, SAEQuality, load_sae, train_sae
from .saliency_view import SaliencyView
from .steering_view import SteeringView
from .tokens_view import TokensView
from .trace import Prediction, Trace

__all__ = [
    "steer",
    "prob",
    "patch",
    "logit_diff",
    "kl_to_clean",
    "causal_trace",
    "SteerResult",
    "Steering",
    "PatchResult",
    "Patching",
    "Metric",
    "Direction",
    "CausalTrace",
    "Attribution",
    "SaliencyView",
    "SanityCheck",
    "attribute",
    "AttentionIndex",
    "AttentionView",
    "BUNDLED",
    "CAV",
    "Concept",
    "ConceptView",
    "DEFAULT_MODEL",
    "Explorer",
    "FeatureIndex",
    "FeatureView",
    "LanguageModel",
    "LensView",
    "NeuronIndex",
    "NeuronView",
    "PatchingView",
    "SteeringView",
    "Prediction",
    "SAE",
    "SAEQuality",
    "TCAVResult",
    "TokensView",
    "Trace",
    "link",
    "load_model",
    "randomized",
    "load_sae",
    "logit_lens",
    "neuron_contributions",
    "sample_texts",
    "sample_topics",
    "tcav",
    "train_sae",
    "top_neurons",
    "train_cav",
    "vocab_projection",
]
__version__ = "0.1.0"
