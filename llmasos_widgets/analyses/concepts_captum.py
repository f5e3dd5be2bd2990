"""captum's TCAV run on our CAVs and random sets: the independent reference :func:`~.concepts.tcav` is tested against.

captum 0.9's ``captum.concept.TCAV`` flattens a layer's output per input, so texts of different lengths
fail; :class:`CaptumWrapper` feeds it one pooled vector per text and layer (identity sub-modules
``pooled.{l}``), fed back at the pooled positions so that its gradient is the one :func:`~.concepts.tcav`
uses. Used by the tests and ``bench/concepts.py`` only; the package's own TCAV does not import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..core import checks
from ..core.hooks import block_output, hooked, post, replace_output
from .concepts import (
    Concept,
    TCAVResult,
    check_layers,
    encode_for_pooling,
    pad_pooled,
    train_direction,
)

if TYPE_CHECKING:
    from ..core.models import LanguageModel


class _Pooled(nn.Module):
    """Identity that returns a new tensor, so captum's hook sees (and differentiates) the pooled vector."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 1.0


class CaptumWrapper(nn.Module):
    """The model as ``captum.concept.TCAV`` needs it for text: pooled layers it can hook, by name.

    ``forward(input_ids, attention_mask, pool_weights)`` (right-padded batches) returns the
    log-probabilities of the next token after each row's last real token, [batch, vocab]. The
    sub-module ``pooled.{layer}`` outputs the pooled activation [batch, d_model]; it is fed back at
    each pooled position (``h + m ⊙ (pooled - pooled.detach())``, m = 1 there, pooled from a detached
    ``h``), so
    captum's gradient with respect
    to it is the module docstring's directional-derivative gradient.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> wrapper = CaptumWrapper(load_model("tiny-llama"), [1])
    >>> ids, mask, w = wrapper.encode(["Hi there", "Hello"], "mean")
    >>> wrapper(ids, mask, w).shape[0]
    2

    """

    def __init__(self, model: LanguageModel, layers: Sequence[int]) -> None:
        super().__init__()
        self.lm = model
        self.layers = check_layers(model, layers)
        self.pooled = nn.ModuleDict({str(layer): _Pooled() for layer in self.layers})

    def encode(self, texts: Sequence[str], pooling: str) -> tuple[Tensor, Tensor, Tensor]:
        """Right-padded ``(input_ids, attention_mask, pool_weights)`` of texts, as ``forward`` takes them."""
        return pad_pooled(self.lm, [encode_for_pooling(self.lm, t) for t in texts], pooling)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, pool_weights: Tensor) -> Tensor:
        blocks = self.lm.adapter.blocks()
        w = pool_weights.to(self.lm.device)

        def feed_back(layer: int):  # type: ignore[no-untyped-def]
            def hook(module, args, output):  # type: ignore[no-untyped-def]
                h = block_output(output)
                # Pooled from a detached h: otherwise a later layer's feed-back term would add a path
                # from this layer's pooled vector, and its gradient would no longer be Σ_t w_t ∂f/∂h_t.
                p = torch.einsum("bp,bpd->bd", w.to(h), h.detach())
                q = self.pooled[str(layer)](p)
                where = (w > 0).to(h)[:, :, None]  # fed back in full at each pooled position
                return replace_output(output, h + where * (q - q.detach())[:, None, :])

            return hook

        with hooked(self.lm, [post(blocks[layer], feed_back(layer)) for layer in self.layers]):
            logits = self.lm.model(input_ids=input_ids, attention_mask=attention_mask).logits
        last = attention_mask.sum(1) - 1
        return torch.log_softmax(logits[torch.arange(len(last)), last].float(), -1)


class _CaptumClassifier:
    """captum ``Classifier`` giving the CAVs of a :func:`tcav` result, or training them as :func:`tcav` does.

    Concept ids say which CAV an experimental set is: concept k has id k (the random concept
    ``RANDOM_ID - 1``) and random set r + 1 has id ``RANDOM_ID + r``. With ``result`` given, it hands
    captum that result's directions (the same CAVs); without, it fits captum's activations with
    :func:`tcav`'s fit and seed.
    """

    RANDOM_ID = 1000

    def __init__(self, method: str, seed: int, test_size: float, result: TCAVResult | None = None) -> None:
        self.method, self.seed, self.test_size, self.result = method, seed, test_size, result
        self.calls = 0

    def train_and_eval(self, dataloader: Any, **kwargs: Any) -> dict[str, Any]:
        batches = list(dataloader)
        x = torch.cat([b[0] for b in batches]).double().numpy()
        y = torch.cat([b[1] for b in batches]).numpy()
        self._classes = [int(y[0]), int(y[-1])]  # [concept, random set]: captum loads them in that order
        run = self._classes[1] - self.RANDOM_ID
        if self.result is not None:
            # captum trains each experimental set's layers in the order given, one call each.
            res, k, j = self.result, self._classes[0], self.calls % len(self.result.layers)
            self.calls += 1
            assert res.random_directions is not None
            self._weights = (
                res.directions[k, j, run] if k < len(res.concepts) else res.random_directions[j, run]
            ).float()
            return {}
        pos, neg = x[y == self._classes[0]], x[y == self._classes[1]]
        direction, acc, _, _, _ = train_direction(pos, neg, self.method, self.seed + run, self.test_size, n_splits=0)
        self._weights = torch.from_numpy(direction).float()
        return {"accs": torch.tensor(acc)}

    def weights(self) -> Tensor:
        return torch.stack([self._weights, -self._weights])

    def classes(self) -> list[int]:
        return self._classes


def captum_tcav(
    model: LanguageModel,
    result: TCAVResult,
    concepts: Sequence[Concept],
    save_path: str,
    *,
    same_cavs: bool = True,
) -> tuple[Tensor, Tensor]:
    """Recompute a :func:`tcav` result's scores with ``captum.concept.TCAV`` configured the same.

    Same inputs, target, layers, pooling (through :class:`CaptumWrapper`) and random sets; captum
    computes the activations and the layer gradients itself. With ``same_cavs`` its classifier hands
    it the result's CAVs, so any difference is in the gradients and scoring; without, it trains them
    from its own activations with :func:`tcav`'s fit and seeds (the whole pipeline, as a user would
    configure it). Returns captum's ``sign_count`` as ``(scores [concept, layer, run],
    random_scores [layer, run])``, comparable with the result's. A contrast target is not supported
    (captum scores one output index).

    Examples
    --------
    >>> import tempfile, llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    >>> res = lw.tcav(model, ["The capital of France is", "Hi"], 5, [shout], [1], n_random=2, progress=False)
    >>> scores, _ = captum_tcav(model, res, [shout], tempfile.mkdtemp())
    >>> bool(torch.equal(scores, res.scores))
    True

    """
    from captum.concept import TCAV
    from captum.concept import Concept as CaptumConcept

    if result.contrast is not None:
        raise ValueError("captum_tcav scores a single target token; this result uses a contrast")
    if [c.name for c in concepts] != result.concepts:
        raise ValueError(f"give the result's concepts in its order: {result.concepts}")
    wrapper = CaptumWrapper(model, result.layers)

    def make(cid: int, name: str, texts: Sequence[str]) -> Any:
        # One batch per concept: captum reloads saved batches in file-name order ("10" before "2").
        return CaptumConcept(cid, name, [wrapper.encode(texts, result.pooling)])

    n_random = result.scores.shape[-1]
    randoms = [make(_CaptumClassifier.RANDOM_ID + r, f"random{r}", result.random_sets[r + 1]) for r in range(n_random)]
    positives = [make(i, c.name, c.examples) for i, c in enumerate(concepts)]
    positives.append(make(_CaptumClassifier.RANDOM_ID - 1, "random_concept", result.random_sets[0]))
    sets = [[p, r] for p in positives for r in randoms]
    names = [f"pooled.{layer}" for layer in result.layers]
    classifier = _CaptumClassifier(result.method, result.seed, result.test_size, result if same_cavs else None)
    interpreter = TCAV(wrapper, names, model_id="lw", classifier=classifier, save_path=save_path)  # type: ignore[arg-type]
    inputs = wrapper.encode(result.inputs, result.pooling)
    out = interpreter.interpret(inputs, sets, target=checks.one_token(model, result.target, "target"))
    per_set = torch.tensor([[float(out[f"{p.id}-{r.id}"][n]["sign_count"][0]) for n in names] for p, r in sets])
    per_set = per_set.reshape(len(positives), n_random, len(names)).permute(0, 2, 1)  # [positive, layer, run]
    return per_set[:-1].contiguous(), per_set[-1].contiguous()
