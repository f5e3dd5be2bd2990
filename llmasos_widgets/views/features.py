"""FeatureView: the SAE features active on the selected token, and a selected feature's dashboard.

The trace's residual stream at the SAE's layer is encoded once, when the view is made, and its sparse
codes (``[pos, k]`` values and indices) are kept: a click on a token reads its row, a click on a feature
reads that feature's column, so no click runs the encoder. A feature's dashboard follows sae_vis and
Neuronpedia: its activation over the text, its histogram and density, the tokens its decoder row
promotes and suppresses through the unembedding, and, from a :class:`~llmasos_widgets.FeatureIndex`,
its top examples, examples across activation quantiles and corpus statistics. The dashboard steers with
the feature's decoder direction at a chosen coefficient. See DESIGN.md, "FeatureView", for the requests.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
import traitlets

from ..analyses.causal import Steering, stream_norm
from ..analyses.corpus_index import Example
from ..analyses.features import FeatureIndex
from ..analyses.neurons import direction_logits, histogram
from ..analyses.sae import SAE, TopK, shipped_saes
from ..core import checks
from ..core.trace import Trace
from . import summary, wire
from .base import ViewBase
from .panels import panel
from .protocol import Reply, request
from .steering import RANGE, SteeringView, alpha_grid
from .wire import Arrays

# The steering control's coefficients, in units of the stream's median norm at the layer over the decoder
# row's norm (|α·v| = scale × |h|): SteeringView's default range, the same 21 steps.
STEER_SCALES = tuple(alpha_grid(-RANGE, RANGE))
STEER_TOKENS = 12  # tokens each steered generation adds
VOCAB_K = 10  # promoted and suppressed tokens per dashboard
TEXT_BINS = 30  # histogram of the feature's non-zero activations over the text
QUANTILES = 4  # bands of the index's sample of examples
EXPORT_TOKENS = 512  # an exported file records every token's features up to this many tokens
EXPORT_DASHBOARDS = 12  # and at most this many dashboards


@panel("features", title="SAE features", follows=("selected_token",), inputs=("sae", "feature_index"), order=70)
class FeatureView(ViewBase):
    """Sparse-autoencoder features of a trace, linked to the token selection.

    Parameters
    ----------
    trace : Trace
        From ``model.trace(text)``, of the model the SAE reads.
    sae : SAE
        From :func:`~llmasos_widgets.train_sae` or :func:`~llmasos_widgets.load_sae`.
    index : FeatureIndex, optional
        Built with the same model and SAE: the dashboard then shows corpus examples, density and histogram,
        and the search looks in the corpus instead of the text.
    feature, token : int, optional
        Initial selection.
    k : int
        Features listed per token (1 to 100).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> view = lw.FeatureView(model.trace("The cat sat on the mat"), lw.SAE.random(64, 128, 8, layer=1), token=2)
    >>> view.n_features, view.layer, view.selected_token, view.selected_feature
    (128, 1, 2, -1)
    >>> len(view.token_features(2)) <= 8
    True

    """

    front_end = "features"
    layer = traitlets.Int(0).tag(sync=True)  # the SAE reads blocks.{layer}.hook_resid_post
    n_features = traitlets.Int().tag(sync=True)
    selected_feature = traitlets.Int(-1).tag(sync=True)
    k = traitlets.Int(20).tag(sync=True)
    unread = traitlets.List(traitlets.Int()).tag(sync=True)  # positions the SAE does not read (SAE.reads)
    sae_name = traitlets.Unicode("").tag(sync=True)
    index_note = traitlets.Unicode("").tag(sync=True)  # "" with an index, else what is missing without one
    steer_scales = traitlets.List(traitlets.Float(), default_value=list(STEER_SCALES), read_only=True).tag(sync=True)
    # The `feature` request's params as the page sends them, so an exported file's keys match its clicks.
    vocab_k = traitlets.Int(VOCAB_K, read_only=True).tag(sync=True)
    text_bins = traitlets.Int(TEXT_BINS, read_only=True).tag(sync=True)
    steer_tokens = traitlets.Int(STEER_TOKENS).tag(sync=True)
    stream_norm = traitlets.Float(0.0).tag(sync=True)  # the median norm of the stream the SAE reads
    can_steer = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        trace: Trace,
        sae: SAE,
        index: FeatureIndex | None = None,
        *,
        feature: int | None = None,
        token: int | None = None,
        k: int = 20,
        **kwargs: Any,
    ) -> None:
        self._check_trace(trace)
        if not isinstance(sae, SAE):
            raise ValueError(f"FeatureView needs an SAE (lw.train_sae or lw.load_sae), not {type(sae).__name__}")
        model = trace.model
        sae.require_residual("FeatureView")
        sae.check_model(model)  # width, layer and, where the SAE knows it, the model it was trained on
        if index is not None:
            if not isinstance(index, FeatureIndex):
                raise ValueError(f"index must be a FeatureIndex, not {type(index).__name__}")
            index.check_model(model)
            index.check_sae(sae)
        self.sae, self.index = sae, index
        # The one encode: every click reads these codes.
        with torch.no_grad():
            codes = sae.encode(trace, sparse=True)
        assert isinstance(codes, TopK)
        self._values = codes.values.detach().float().cpu()  # [pos, k], largest first
        self._indices = codes.indices.detach().cpu()  # [pos, k]
        self._read = sae.reads(trace.resid_pre(sae.layer + 1)).cpu()  # [pos]: positions the SAE reads
        self._lock = threading.Lock()
        self._steering: Steering | None = None
        causal = model.is_causal and model.adapter.unembed() is not None
        super().__init__(
            trace,
            layer=sae.layer,
            n_features=sae.n_latents,
            k=k,
            unread=(~self._read).nonzero().flatten().tolist(),
            sae_name=repr(sae),
            index_note="" if index is not None else _NO_INDEX,
            steer_tokens=STEER_TOKENS,
            stream_norm=stream_norm(trace, sae.layer + 1),  # SteeringView's scale
            can_steer=causal,
            **kwargs,
        )
        self.selected_layer = sae.layer
        if feature is not None:
            self.selected_feature = feature
        if token is not None:
            self.selected_token = token

    @classmethod
    def for_explorer(
        cls, host: Any, name: str, trace: Trace, *, sae: SAE | None = None, feature_index: FeatureIndex | None = None
    ) -> ViewBase:
        if sae is None:
            raise ValueError(_no_sae_note(trace.model.name))
        return cls._as_panel(host, name, trace, sae, feature_index)

    # -- trait checks --------------------------------------------------------------------------
    @traitlets.validate("selected_feature")
    def _check_feature(self, proposal: Any) -> int:
        value = proposal["value"]
        return int(value) if value == -1 else self._feature(value)

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        return checks.int_in("k", proposal["value"], 1, 100)

    @traitlets.validate("steer_tokens")
    def _check_steer_tokens(self, proposal: Any) -> int:
        return checks.int_in("steer_tokens", proposal["value"], 1, 200)

    def _feature(self, feature: Any) -> int:
        return checks.index(feature, self.sae.n_latents, "feature", "this SAE has features")

    # -- the numbers ---------------------------------------------------------------------------
    def token_features(self, position: int, k: int | None = None) -> list[tuple[int, float]]:
        """The features active at ``position``, largest activation first: ``[(feature, activation)]``.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> view = lw.FeatureView(lw.load_model("tiny-llama").trace("a b c"), lw.SAE.random(64, 32, 4, layer=0))
        >>> all(a > 0 for _, a in view.token_features(1))
        True

        """
        pos = self.trace.check_position(position) % len(self.trace)
        k = self.k if k is None else checks.int_in("k", k, 1, 100)
        values, indices = self._values[pos], self._indices[pos]
        on = values > 0
        return [(int(f), float(v)) for f, v in zip(indices[on][:k].tolist(), values[on][:k].tolist(), strict=True)]

    def feature_activations(self, feature: int) -> torch.Tensor:  # [pos]
        """One feature's activation at every position of the text (from the cached codes).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> view = lw.FeatureView(lw.load_model("tiny-llama").trace("a b c"), lw.SAE.random(64, 32, 4, layer=0))
        >>> view.feature_activations(3).shape
        torch.Size([3])

        """
        f = self._feature(feature)
        return (self._values * (self._indices == f)).sum(-1)

    def steering_view(self, feature: int | None = None, **kwargs: Any) -> SteeringView:
        """A :class:`~llmasos_widgets.SteeringView` of the trace's text steered with the feature's decoder row.

        ``feature`` defaults to the selected one; other keywords go to SteeringView (``alphas``,
        ``max_new_tokens``, ``positions``, ...).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> view = lw.FeatureView(lw.load_model("tiny-llama").trace("The cat"), lw.SAE.random(64, 32, 4, layer=0))
        >>> view.steering_view(5, max_new_tokens=3).direction_name
        'SAE L0 feature 5'

        """
        if feature is None:
            if self.selected_feature < 0:
                raise ValueError("no feature is selected: pass feature= or click one in the view")
            feature = self.selected_feature
        kwargs.setdefault("max_new_tokens", self.steer_tokens)
        return SteeringView(
            self.trace.model, self.trace.text, direction=self.sae.direction(self._feature(feature)), **kwargs
        )

    # -- requests ------------------------------------------------------------------------------
    @request("token")
    def _serve_token(self, position: int, k: int = 20) -> tuple[dict[str, Any], Arrays]:
        """The features active at ``position`` (read from the cached codes)."""
        pos = self.trace.check_position(position) % len(self.trace)
        found = self.token_features(pos, k)
        fields = {"position": pos, "skipped": not bool(self._read[pos]), "n_active": len(found)}
        arrays = [
            wire.encode("features", torch.tensor([f for f, _ in found], dtype=torch.int32), "int32"),
            wire.encode("activations", torch.tensor([a for _, a in found]), "float32"),
        ]
        return fields, arrays

    @request("feature")
    def _serve_feature(self, feature: int, k: int = VOCAB_K, bins: int = TEXT_BINS) -> tuple[dict[str, Any], Arrays]:
        """One feature's dashboard: over the text, through the unembedding, and in the index when there is one."""
        f = self._feature(feature)
        k, bins = checks.int_in("k", k, 1, 50), checks.int_in("bins", bins, 1, 200)
        acts = self.feature_activations(f)  # [pos]
        read = acts[self._read]
        fired = read[read > 0]
        counts, lo, hi = histogram(fired, bins) if fired.numel() else (torch.zeros(bins, dtype=torch.int32), 0.0, 1.0)
        fields: dict[str, Any] = {
            "feature": f,
            "text_fires": int(fired.numel()),
            "text_tokens": int(read.numel()),
            "text_max": float(read.max()) if read.numel() else 0.0,
            "hist_lo": lo,
            "hist_hi": hi,
        }
        arrays = [
            wire.encode("activations", acts, "float32"),  # [pos]: exact, as encoded
            wire.encode("hist", counts, "int32"),
        ]
        try:
            logits = direction_logits(self.trace.model, self.sae.W_dec[f])
            up, down = torch.topk(logits, k), torch.topk(-logits, k)
            decode = self.trace.model.decode_token
            fields["promoted_tokens"] = [decode(i) for i in up.indices.tolist()]
            fields["suppressed_tokens"] = [decode(i) for i in down.indices.tolist()]
            arrays += [
                wire.encode("promoted", up.indices, "int32"),
                wire.encode("promoted_logits", up.values, "float32"),
                wire.encode("suppressed", down.indices, "int32"),
                wire.encode("suppressed_logits", -down.values, "float32"),
            ]
        except ValueError as e:  # no language-model head: the rest of the dashboard still stands
            fields["vocab_note"] = str(e)
        if self.index is not None:
            fields.update(self._index_fields(f, arrays))
        else:
            fields["index_note"] = _NO_INDEX
        return fields, arrays

    def _index_fields(self, f: int, arrays: Arrays) -> dict[str, Any]:
        index = self.index
        assert index is not None
        stats = index.stats(f)
        hist, edges = index.histogram(f)
        top, sample = index.top_examples(f), index.sample_examples(f)
        bands = quantile_bands([e.activation for e in sample], QUANTILES)
        flat = [a for e in [*top, *sample] for a in e.activations]
        arrays += [
            wire.encode("index_hist", hist, "int32"),
            wire.encode("index_edges", edges, "float32"),
            wire.encode("example_activations", torch.tensor(flat, dtype=torch.float32), "float16"),
        ]
        return {
            "stats": {k: (v if math.isfinite(v) else None) for k, v in stats.items()},  # JSON has no -inf
            "top_examples": [_example(e) for e in top],
            "sample_examples": [_example(e) for e in sample],
            "bands": bands,
            "index_texts": index.counts["texts"],
        }

    @request("search")
    def _serve_search(self, token: str, k: int = 10) -> tuple[dict[str, Any], Arrays]:
        """Features that fire most on ``token``: from the index's top examples, else over this text."""
        if not isinstance(token, str) or token == "":
            raise ValueError(f"token must be a non-empty str such as ' Paris', got {token!r}")
        k = checks.int_in("k", k, 1, 100)
        if self.index is not None:
            found = self.index.features_for_token(token, k=k)
            results = [{"feature": f, "count": c, "activation": a} for f, c, a in found]
            return {"token": token, "source": "index", "results": results}, []
        where = [i for i, t in enumerate(self.trace.tokens) if t == token and bool(self._read[i])]
        best: dict[int, list[float]] = {}
        for i in where:
            for f, a in self.token_features(i, 100):
                best.setdefault(f, []).append(a)
        ranked = sorted(best.items(), key=lambda item: (-len(item[1]), -max(item[1])))[:k]
        results = [{"feature": f, "count": len(a), "activation": max(a)} for f, a in ranked]
        return {"token": token, "source": "text", "positions": len(where), "results": results}, []

    @request("steer", stream=True)
    def _stream_steer(self, reply: Reply, feature: int, step: int) -> None:
        """Baseline and steered generations of the trace's text with the feature's decoder row at scale ``step``."""
        f = self._feature(feature)
        step = checks.index(step, len(self.steer_scales), "step", "the steering scale has steps")
        direction = self.sae.direction(f)
        with self._lock:  # one generation at a time; a newer click made this one stale while it waited
            if reply.cancelled:
                return
            alpha = self.steer_scales[step] * self.stream_norm / direction.norm
            if self._steering is None or self._steering.max_new_tokens != self.steer_tokens:
                # The baseline generation, made once: only the steered run depends on the click.
                self._steering = Steering(self.trace.model, self.trace.text, max_new_tokens=self.steer_tokens)
            res = self._steering.run(direction, alpha)
        if reply.cancelled:
            return
        payload = {**res.summary(), "step": step}
        payload.update(feature=f, scale=self.steer_scales[step], direction=res.direction)
        reply.done(payload, [])

    def _summary(self) -> list[str]:
        pos = self.selected_token if self.selected_token >= 0 else len(self.tokens) - 1
        values, indices = self._values[pos], self._indices[pos]
        shown = ", ".join(
            f"#{int(i)} {summary.number(float(v))}" for v, i in zip(values[:3], indices[:3], strict=True) if v > 0
        )
        lines = [f"{self.sae_name}: {self.n_features} features of layer {self.layer}"]
        lines.append(f"strongest at {summary.quote(self.tokens[pos])} (#{pos}): {shown or 'none active'}")
        if self.selected_feature >= 0:
            lines.append(f"selected feature #{self.selected_feature}")
        return lines

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        n = len(self.trace)
        requests: list[dict[str, Any]] = [
            {"what": "token", "position": i, "k": self.k} for i in range(min(n, EXPORT_TOKENS))
        ]
        if 0 <= self.selected_token and self.selected_token >= EXPORT_TOKENS:
            requests.append({"what": "token", "position": self.selected_token, "k": self.k})
        features: list[int] = []
        if self.selected_feature >= 0:
            features.append(self.selected_feature)
        if self.selected_token >= 0:
            features += [f for f, _ in self.token_features(self.selected_token)]
        peaks = (self._values * self._read[:, None]).flatten()
        for j in torch.argsort(peaks, descending=True).tolist():  # then the strongest features of the text
            if len(dict.fromkeys(features)) >= EXPORT_DASHBOARDS or peaks[j] <= 0:
                break
            features.append(int(self._indices.flatten()[j]))
        chosen = list(dict.fromkeys(features))[:EXPORT_DASHBOARDS]
        requests += [{"what": "feature", "feature": f, "k": self.vocab_k, "bins": self.text_bins} for f in chosen]
        tokens = (
            f"every token's features (up to {EXPORT_TOKENS} tokens)"
            if n <= EXPORT_TOKENS
            else (f"the features of the first {EXPORT_TOKENS} tokens and the selected one")
        )
        return requests, (
            f"{tokens} and the dashboards of {len(chosen)} features (the selected one, the selected token's, "
            "then the text's strongest) are recorded; other features, the search and steering need the kernel"
        )


_NO_INDEX = (
    "no FeatureIndex: top examples, examples by activation quantile, and corpus density and histogram need "
    "index=lw.FeatureIndex.build(model, sae, texts); shown here is this text only"
)


def quantile_bands(activations: list[float], n: int = QUANTILES) -> list[dict[str, Any]]:
    """Split a sample's activations (largest first) into ``n`` bands of equal size, strongest band first.

    Each band is ``{"start", "stop", "lo", "hi"}``: the sample's indices ``start:stop`` and their range.

    Examples
    --------
    >>> [(b["start"], b["stop"]) for b in quantile_bands([9.0, 7.0, 5.0, 3.0, 1.0], 2)]
    [(0, 2), (2, 5)]
    >>> quantile_bands([], 4)
    []

    """
    m = len(activations)
    bands = []
    for b in range(min(n, m)):
        start, stop = round(b * m / min(n, m)), round((b + 1) * m / min(n, m))
        part = activations[start:stop]
        bands.append({"start": start, "stop": stop, "lo": min(part), "hi": max(part)})
    return bands


def _example(e: Example) -> dict[str, Any]:
    return {
        "text_index": e.text_index,
        "position": e.position,
        "activation": e.activation,
        "tokens": e.tokens,
        "peak": e.peak,
    }


def _no_sae_note(model_name: str) -> str:
    """What the features panel says without an SAE: a shipped SAE only where one fits this model.

    Examples
    --------
    >>> "smollm2-135m" in _no_sae_note("smollm2-135m"), "smollm2" in _no_sae_note("tiny-llama")
    (True, False)

    """
    what = "to see the sparse features active on each token and a feature's dashboard"
    layers = shipped_saes().get(model_name)
    if layers:
        shipped = f"sae=lw.load_sae({model_name!r}, layer={layers[0]}) (shipped for layers {layers})"
        return f"no SAE: pass {shipped} or sae=lw.train_sae(model, texts, layer=...) {what}"
    return f"no SAE: pass sae=lw.train_sae(model, texts, layer=...) or an SAE of this model from lw.load_sae {what}"
