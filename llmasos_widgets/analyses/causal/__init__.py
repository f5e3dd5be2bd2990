"""Causal interventions: activation patching (exact and attribution), causal tracing and steering.

Activation patching runs the model on a *base* prompt while one activation is replaced by its value
on a *source* prompt, and reads a metric from the logits. Denoising patches clean values into the
corrupt run (the base) and asks which single activation restores the behaviour; noising patches
corrupt values into the clean run. Scores are normalised so that 0 is the corrupt run's metric and 1
the clean run's, in both directions. The sites, per layer l and position p (TransformerLens names):

- ``resid``: ``blocks.{l}.hook_resid_pre``, the residual stream entering block l;
- ``attn``: ``blocks.{l}.hook_attn_out``, what the attention adds to the residual stream;
- ``mlp``: ``blocks.{l}.hook_mlp_out``, what the MLP adds;
- ``heads``: one head's output ``blocks.{l}.attn.hook_z`` (before the output projection), patched at
  every position of ``positions``: a [layer, head] grid.

Exact patching is computed, not estimated, but not by one forward pass per cell: a patch at layer l and
position p leaves every layer below l and every position before p as in the base run (the model is
causal), so a patched run starts at block l from the base run's residual stream, computes positions p..
only, attends to the base run's keys and values before p, and unembeds only the last position. Cells
of one position (or one layer, for heads) run as one batch, and cells before the first position where
the two prompts differ are the base run itself (nothing to patch there). ``_Engine`` runs the blocks.
"""

from .engine import SITES, Cell, Edit, Engine, Run
from .metrics import Metric, kl_to_clean, logit_diff, prob
from .patching import DIRECTIONS, METHODS, Patching, PatchResult, patch
from .steering import STEER_POSITIONS, Direction, Steering, SteerResult, as_direction, steer, stream_norm
from .tracing import CausalTrace, causal_trace

__all__ = [
    "DIRECTIONS",
    "METHODS",
    "SITES",
    "STEER_POSITIONS",
    "CausalTrace",
    "Cell",
    "Direction",
    "Edit",
    "Engine",
    "Metric",
    "PatchResult",
    "Patching",
    "Run",
    "SteerResult",
    "Steering",
    "as_direction",
    "causal_trace",
    "kl_to_clean",
    "logit_diff",
    "patch",
    "prob",
    "steer",
    "stream_norm",
]
