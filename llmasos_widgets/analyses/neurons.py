"""MLP neuron analyses: the neurons a token fires, and what a neuron writes to the vocabulary.

A neuron is one coordinate of ``blocks.{layer}.mlp.hook_post`` (the input of the MLP's output
projection); in a mixture of experts, one expert's hidden unit (core/adapters/moe.py: 0 on the tokens the router
did not send to that expert, taken before the routing weight). Everything here reads a
:class:`~llmasos_widgets.core.trace.Trace` or the model's weights and returns plain dataclasses. A
neuron's top contexts over a corpus are :class:`~.neuron_index.NeuronIndex`'s; the logit lens is in lens.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..core import checks
from ..core.hooks import hooked
from ..core.offload import materialized
from ..core.trace import Trace

if TYPE_CHECKING:
    from ..core.models import LanguageModel


# -- shapes and weights ------------------------------------------------------------------------
def d_mlp(model: LanguageModel) -> int:
    """Neurons per MLP layer (the width of ``mlp.hook_post``).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> d_mlp(load_model("tiny-gpt2"))
    256

    """
    return int(neuron_output_weights(model, 0).shape[0])


def check_neuron(model: LanguageModel, neuron: int) -> int:
    """Return ``neuron`` if the model's MLPs have it, else raise a ValueError naming the range.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> check_neuron(load_model("tiny-gpt2"), 3)
    3

    """
    return checks.index(neuron, d_mlp(model), "neuron", f"{model.name} has neurons")


def neuron_output_weights(model: LanguageModel, layer: int) -> Tensor:  # [neuron, d_model]
    """Each neuron's output weights in ``layer``: what it adds to the residual stream per unit of activation.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> neuron_output_weights(load_model("tiny-llama"), 0).shape
    torch.Size([128, 64])

    """
    return model.adapter.neuron_output_weights(checks.layer(layer, model.n_layers, model.name))


def unembedding(model: LanguageModel) -> tuple[Tensor, Tensor | None]:  # [vocab, d_model], [d_model]
    """The unembedding matrix and the final norm's gain (None if the model has none).

    For masked LMs the head's non-linear transform is left out: the matrix is its decoder.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> w_u, gain = unembedding(load_model("tiny-llama"))
    >>> w_u.shape, gain.shape
    (torch.Size([480, 64]), torch.Size([64]))

    """
    head = model.adapter.unembed()
    if head is None:
        raise ValueError(f"{model.name} has no language-model head, so its neurons write to no vocabulary")
    decoder = getattr(getattr(head, "predictions", head), "decoder", head)
    norm = model.adapter.final_norm()
    with model.lock, materialized(head, norm):  # offloaded weights (core/offload.py): the tensors outlive the load
        gain = getattr(norm, "weight", None) if norm is not None else None
        return decoder.weight.detach(), (gain.detach() if gain is not None else None)


# -- per token ---------------------------------------------------------------------------------
@dataclass
class TokenNeurons:
    """The neurons of one layer ranked for one token."""

    layer: int
    position: int
    neurons: Tensor  # [k] int64
    activations: Tensor  # [k] float32
    contributions: Tensor | None = None  # [k] activation × gradient of the target logit
    target: int | None = None  # the target token id of the contributions


def top_neurons(trace: Trace, layer: int, position: int, k: int = 20) -> TokenNeurons:
    """The ``k`` neurons of ``layer`` with the largest activations at ``position``.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> top = top_neurons(trace, layer=1, position=-1, k=3)
    >>> bool(top.activations[0] == trace.mlp_post(1)[-1].max())
    True

    """
    layer, pos = trace.check_layer(layer), trace.check_position(position)
    acts = trace.mlp_post(layer)[pos].float().cpu()
    top = torch.topk(acts, _check_k(k, acts.shape[0]))
    return TokenNeurons(layer, pos, top.indices, top.values)


def neuron_contributions(
    trace: Trace, layer: int, position: int, target: int | None = None, k: int = 20
) -> TokenNeurons:
    """The ``k`` neurons of ``layer`` at ``position`` that add most to one logit there (activation × gradient).

    Parameters
    ----------
    trace : Trace
        A trace of a causal or masked LM.
    layer, position : int
        Where the neurons are.
    target : int, optional
        The token id whose logit at ``position`` is explained; the model's top prediction when None.
    k : int
        How many neurons, ranked by contribution (largest first).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> c = neuron_contributions(trace, layer=0, position=-1, k=5)
    >>> c.contributions.shape, c.target == trace.top_predictions(-1, k=1)[0].id
    (torch.Size([5]), True)

    """
    model = trace.model
    layer, pos = trace.check_layer(layer), trace.check_position(position)
    vocab = model.adapter.unembed()
    if vocab is None:
        raise ValueError(f"{model.name} has no language-model head: there is no logit to explain")
    if target is None:
        target = int(trace.logits_at(pos).argmax())
    target = checks.one_token(model, target, "target token")
    grad = _grad_of_logit(trace, layer, pos, target)  # [d_mlp]
    acts = trace.mlp_post(layer)[pos].float().cpu()
    contrib = acts * grad
    top = torch.topk(contrib, _check_k(k, contrib.shape[0]))
    return TokenNeurons(layer, pos, top.indices, acts[top.indices], top.values, target)


def _grad_of_logit(trace: Trace, layer: int, pos: int, target: int) -> Tensor:  # [d_mlp]
    # One forward and backward pass with the MLP hidden layer as a leaf: the gradient of the target
    # logit at `pos` with respect to that position's neurons.
    model = trace.model
    adapter = model.adapter
    kept: dict[str, Tensor] = {}

    def make_leaf(units: Tensor) -> Tensor:  # the MLP then runs on from the leaf (a mixture: weighted by its router)
        leaf = units.detach().requires_grad_(True)
        kept["leaf"] = leaf
        return leaf

    ids = torch.tensor([trace.token_ids[: pos + 1] if model.is_causal else trace.token_ids], device=model.device)
    with hooked(model, [adapter.mlp_hook(layer, "hook_post", make_leaf)]), torch.enable_grad():
        hidden = adapter.base()(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        # The base model's output is already through the final norm; the head (soft-capped where capped) maps it.
        logit = adapter.head_logits(hidden[0, pos : pos + 1])[0, target]
        (grad,) = torch.autograd.grad(logit, kept["leaf"])
    return grad[0, pos].float().cpu()


def _check_k(k: int, n: int) -> int:
    return checks.int_in("k", k, 1, n)


# -- per neuron --------------------------------------------------------------------------------
@dataclass
class VocabProjection:
    """The tokens a neuron's output weights promote and suppress most through the unembedding."""

    layer: int
    neuron: int
    promoted: Tensor  # [k] token ids, largest logit first
    promoted_logits: Tensor  # [k]
    suppressed: Tensor  # [k] token ids, most negative first
    suppressed_logits: Tensor  # [k]
    promoted_tokens: list[str]
    suppressed_tokens: list[str]


def vocab_logits(model: LanguageModel, layer: int, neuron: int) -> Tensor:  # [vocab]
    """What one unit of the neuron's activation adds to every logit: ``W_U (gain ⊙ w_out)``.

    The final norm's per-dimension gain is applied; its data-dependent scaling is not (it divides
    every logit by the same positive number, so it changes no ranking).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> vocab_logits(load_model("tiny-llama"), 1, 7).shape
    torch.Size([480])

    """
    return direction_logits(model, neuron_output_weights(model, layer)[check_neuron(model, neuron)])


def direction_logits(model: LanguageModel, vector: Tensor) -> Tensor:  # [vocab]
    """What one unit of a residual-stream direction ``vector`` [d_model] adds to every logit: ``W_U (gain ⊙ v)``.

    As for a neuron (:func:`vocab_logits`): the final norm's gain is applied, its data-dependent
    scaling (the same positive divisor for every logit) is not.

    Examples
    --------
    >>> import torch
    >>> from llmasos_widgets import load_model
    >>> direction_logits(load_model("tiny-llama"), torch.ones(64)).shape
    torch.Size([480])

    """
    w_u, gain = unembedding(model)
    v = vector.detach().float().to(w_u.device)
    direction = v * gain.float() if gain is not None else v
    return (w_u.float() @ direction).cpu()


def vocab_projection(model: LanguageModel, layer: int, neuron: int, k: int = 10) -> VocabProjection:
    """The ``k`` tokens a neuron promotes most and the ``k`` it suppresses most.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> proj = vocab_projection(load_model("tiny-llama"), layer=1, neuron=7, k=3)
    >>> len(proj.promoted_tokens), bool(proj.promoted_logits[0] >= proj.promoted_logits[1])
    (3, True)

    """
    layer, neuron = checks.layer(layer, model.n_layers, model.name), check_neuron(model, neuron)
    logits = vocab_logits(model, layer, neuron)
    k = _check_k(k, logits.shape[0])
    up, down = torch.topk(logits, k), torch.topk(-logits, k)
    return VocabProjection(
        layer,
        neuron,
        up.indices,
        up.values,
        down.indices,
        -down.values,
        [model.decode_token(i) for i in up.indices.tolist()],
        [model.decode_token(i) for i in down.indices.tolist()],
    )


def histogram(values: Tensor, bins: int = 30) -> tuple[Tensor, float, float]:
    """Counts of ``values`` in ``bins`` equal bins between their min and max: ``(counts, lo, hi)``.

    Examples
    --------
    >>> counts, lo, hi = histogram(torch.tensor([0.0, 0.1, 1.0]), bins=2)
    >>> counts.tolist(), lo, hi
    ([2, 1], 0.0, 1.0)

    """
    values = values.float().flatten().cpu()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1e-6
    return torch.histc(values, bins=bins, min=lo, max=hi).to(torch.int32), lo, hi
