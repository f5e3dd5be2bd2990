"""LLMasOS widgets: live, linked views of what a transformer language model does, in notebooks.

>>> import llmasos_widgets as lw
>>> model = lw.load_model("tiny-llama")
>>> trace = model.trace("The capital of France is")
>>> len(trace.tokens)
5
"""

from .analyses.attention import AttentionIndex
from .analyses.attribution import Attribution, SanityCheck, attribute
from .analyses.causal import (
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
from .analyses.circuits import (
    Ablation,
    Components,
    Induction,
    LogitAttribution,
    PathPatch,
    ablate,
    ablate_heads,
    decompose,
    direct_logit_attribution,
    induction,
    path_patch,
)
from .analyses.concepts import CAV, Concept, TCAVResult, tcav, train_cav
from .analyses.evaluation import Evaluation, evaluate
from .analyses.exercises import Verdict, check, exercises
from .analyses.features import FeatureIndex
from .analyses.lens import logit_lens
from .analyses.memory import estimate
from .analyses.neuron_index import NeuronIndex
from .analyses.neurons import neuron_contributions, top_neurons, vocab_projection
from .analyses.results import load
from .analyses.sae import SAE, SAEQuality, load_sae, train_sae
from .core.build import PUBLISHED, random_model
from .core.corpus import sample_texts, sample_topics
from .core.memory import Estimate, NotEnoughMemory
from .core.models import BUNDLED, DEFAULT_MODEL, LanguageModel, load_model, randomized
from .core.trace import Prediction, Trace
from .views.attention import AttentionView
from .views.concepts import ConceptView
from .views.evaluation import EvaluationView
from .views.explorer import Explorer, link
from .views.features import FeatureView
from .views.lens import LensView
from .views.neurons import NeuronView
from .views.patching import PatchingView
from .views.saliency import SaliencyView
from .views.steering import SteeringView
from .views.tokens import TokensView

__all__ = [
    "Evaluation",
    "EvaluationView",
    "evaluate",
    "load",
    "Verdict",
    "check",
    "exercises",
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
    "random_model",
    "estimate",
    "Estimate",
    "NotEnoughMemory",
    "PUBLISHED",
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
