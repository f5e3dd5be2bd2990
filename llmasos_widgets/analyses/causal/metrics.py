"""What a patch restores: metrics read from the next-token logits at the last position."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ...core import checks

if TYPE_CHECKING:
    from ...core.models import LanguageModel


# -- metrics -------------------------------------------------------------------------------------
class Metric:
    """A number read from the next-token logits at the last position: what a patch restores.

    Build one with :func:`logit_diff`, :func:`prob`, :func:`kl_to_clean` or :meth:`Metric.of` (any
    function of the logits). ``bind(model)`` resolves its tokens and returns
    ``f(logits [batch, vocab], clean_logits [vocab]) -> [batch]``.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> m = lw.logit_diff(" Paris", " London")
    >>> m.name
    "logit(' Paris') - logit(' London')"

    """

    def __init__(self, name: str, tokens: Sequence[str], fn: Callable[..., Tensor], kind: str | None = None) -> None:
        self.name = name
        self.tokens = tuple(tokens)
        self._fn = fn  # fn(logits, clean_logits, *token_ids)
        # The builder that made it ("logit_diff", "prob", "kl_to_clean"), so that a result file can name
        # the metric and rebuild it (:func:`rebuild`); None for a metric made from a function.
        self.kind = kind

    def __repr__(self) -> str:
        return f"Metric({self.name})"

    @classmethod
    def of(cls, fn: Any, name: str | None = None) -> Metric:
        """``fn`` itself if it is a Metric, else a metric from a function of the logits [batch, vocab] -> [batch].

        Examples
        --------
        >>> Metric.of(lambda logits: logits[:, 0], name="logit of token 0").name
        'logit of token 0'

        """
        if isinstance(fn, Metric):
            return fn
        if not callable(fn):
            raise ValueError(
                "metric must be lw.logit_diff(...), lw.prob(...), lw.kl_to_clean() or a function of the "
                f"logits [batch, vocab] returning [batch]; got {type(fn).__name__}"
            )
        return cls(name or getattr(fn, "__name__", "metric"), (), lambda lg, _: fn(lg))

    def bind(self, model: LanguageModel) -> Callable[[Tensor, Tensor], Tensor]:
        ids = [checks.one_token(model, token, "a metric token") for token in self.tokens]

        def bound(logits: Tensor, clean: Tensor) -> Tensor:
            out = self._fn(logits, clean, *ids)
            if not isinstance(out, Tensor) or out.shape != logits.shape[:1]:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(
                    f"the metric {self.name} must return one number per run, a tensor of shape "
                    f"[{logits.shape[0]}] for logits [{logits.shape[0]}, vocab]; it returned {shape}"
                )
            return out.float()

        return bound


def logit_diff(correct: str, wrong: str) -> Metric:
    """Logit of ``correct`` minus logit of ``wrong`` at the last position (each one token).

    Examples
    --------
    >>> logit_diff(" Mary", " John").tokens
    (' Mary', ' John')

    """
    return Metric(
        f"logit({correct!r}) - logit({wrong!r})",
        (correct, wrong),
        lambda lg, _, a, b: lg[:, a] - lg[:, b],
        "logit_diff",
    )


def prob(token: str) -> Metric:
    """Probability of ``token`` (one token) as the next token.

    Examples
    --------
    >>> prob(" Paris").name
    "p(' Paris')"

    """
    return Metric(f"p({token!r})", (token,), lambda lg, _, a: lg.float().softmax(-1)[:, a], "prob")


def kl_to_clean() -> Metric:
    """KL divergence KL(clean ‖ patched) of the next-token distributions (0 on the clean run).

    Examples
    --------
    >>> kl_to_clean().name
    'KL(clean || run)'

    """

    def kl(logits: Tensor, clean: Tensor) -> Tensor:
        clean_log = clean.float().log_softmax(-1)
        return (clean_log.exp() * (clean_log - logits.float().log_softmax(-1))).sum(-1)

    return Metric("KL(clean || run)", (), kl, "kl_to_clean")


def rebuild(kind: str, tokens: Sequence[str]) -> Metric:
    """The metric a builder named ``kind`` makes from ``tokens`` (what a result file records of a metric).

    Examples
    --------
    >>> rebuild("logit_diff", [" Mary", " John"]).name
    "logit(' Mary') - logit(' John')"

    """
    builders: dict[str, Callable[..., Metric]] = {"logit_diff": logit_diff, "prob": prob, "kl_to_clean": kl_to_clean}
    if kind not in builders:
        raise ValueError(f"unknown metric kind {kind!r}: one of {', '.join(builders)}")
    return builders[kind](*tokens)
