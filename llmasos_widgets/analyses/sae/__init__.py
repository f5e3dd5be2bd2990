"""Sparse autoencoders (SAEs) on the residual stream: encode, decode, train, measure, save and load.

model.py holds the SAE, quality.py its measurement, training.py ``train_sae``, cache.py activation caches,
formats.py ``load_sae`` and the foreign layouts.

*Site.* An SAE of layer ``l`` reads the residual stream after block ``l``: TransformerLens's
``blocks.{l}.hook_resid_post``, the output of decoder layer ``l`` (what a forward hook on
``adapter.blocks()[l]`` sees), ``trace.resid_pre(l + 1)`` or ``trace["blocks.{l}.hook_resid_post"]``;
the same convention as concepts.py. Layers count from 0 and negative layers count from the end
(``checks.layer``). EleutherAI's sparsify names this site ``layers.{l}``; SAELens's
``blocks.{l}.hook_resid_pre`` is the same tensor as ``blocks.{l-1}.hook_resid_post``.

*Encoder* (EleutherAI sparsify and OpenAI's TopK SAE, Gao et al. 2024, https://arxiv.org/abs/2406.04093)::

    pre  = (x − b_dec) @ W_enc + b_enc            # [.., n_latents]
    acts = TopK_k(ReLU(pre))                      # k largest kept, the rest 0
    x̂    = acts @ W_dec + b_dec                   # W_dec rows are unit vectors
    x    = x̂ + error                              # error: what the dictionary misses

``relu`` and ``jumprelu`` activations are read from SAELens files too. :func:`train_sae` trains a
TopK SAE sparsify's way: Adam, a learning rate scaled by ``1/sqrt(n_latents / 2**14)`` with linear
warm-up and decay, loss = FVU + AuxK/32 (the dead latents' best ``d_model/2`` predict the error), the
decoder's rows kept unit-norm, ``b_dec`` started at the activations' mean (or geometric median).
"""

from .cache import ActivationCache, cache_activations
from .formats import LAYOUTS, load_sae, shipped_saes
from .model import MASSIVE_RATIO, SAE, Reconstruction, TopK
from .quality import SAEQuality
from .training import geometric_median, massive_first_position, train_sae

__all__ = [
    "LAYOUTS",
    "MASSIVE_RATIO",
    "SAE",
    "ActivationCache",
    "Reconstruction",
    "SAEQuality",
    "TopK",
    "cache_activations",
    "geometric_median",
    "load_sae",
    "massive_first_position",
    "shipped_saes",
    "train_sae",
]
