"""ConceptView: TCAV scores per layer and concept (a bokeh chart) and a trace's per-token concept projection.

One anywidget. The chart is a bokeh figure built here and sent as ``bokeh.embed.json_item``; the
front-end renders it with the BokehJS shipped inside the bokeh Python package (asked for once, by
request, and run in the page), so it works offline and in any front-end anywidget supports, and it
sits in the same view as the token overlay, where a layer pick redraws both.
"""

from __future__ import annotations

import json
from typing import Any

import traitlets

from ..analyses.concepts import TCAVResult, projection
from ..core.trace import Trace
from . import summary, wire
from .base import ViewBase
from .panels import panel
from .protocol import request
from .wire import Arrays

# The widths (px) the chart is drawn at: the view asks for the widest that fits, so an exported file
# can hold every chart it may ask for.
CHART_WIDTHS = (360, 520, 680, 840)


@panel("concepts", title="Concepts (TCAV)", follows=("selected_token",), inputs=("concepts",), order=60)
class ConceptView(ViewBase):
    """TCAV scores with error bars and significance marks, CAV accuracy, and a concept overlay on a text.

    Parameters
    ----------
    result : TCAVResult
        From :func:`~llmasos_widgets.tcav`.
    trace : Trace, optional
        A text to project onto the concept's CAV (also :meth:`show_projection`).

    Synced traits beyond the common ones: ``concepts`` and ``layers`` (of the result),
    ``selected_concept`` (index), ``rows`` (the result's table), ``target``, ``alpha``,
    ``has_trace``, ``chart_widths`` (read-only). ``selected_layer`` is one of ``layers``.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    >>> res = lw.tcav(model, ["The capital of France is"], 5, [shout], [0, 1], n_random=3, progress=False)
    >>> view = lw.ConceptView(res).show_projection(model.trace("STOP IT"))
    >>> view.selected_layer = 1
    >>> view.has_trace, view.selected_layer, view.concepts
    (True, 1, ['shout'])

    """

    front_end = "concepts"
    text_optional = True  # the projection's text comes with show_projection
    concepts = traitlets.List(traitlets.Unicode()).tag(sync=True)
    layers = traitlets.List(traitlets.Int()).tag(sync=True)
    selected_concept = traitlets.Int(0).tag(sync=True)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    target = traitlets.Unicode("").tag(sync=True)
    alpha = traitlets.Float(0.05).tag(sync=True)
    n_random = traitlets.Int(0).tag(sync=True)
    has_trace = traitlets.Bool(False).tag(sync=True)
    chart_widths = traitlets.List(traitlets.Int(), default_value=list(CHART_WIDTHS), read_only=True).tag(sync=True)

    def __init__(self, result: TCAVResult, trace: Trace | None = None, **kwargs: Any) -> None:
        if not isinstance(result, TCAVResult):
            raise ValueError(f"ConceptView needs a TCAVResult (from lw.tcav(...)), not {type(result).__name__}")
        self.result = result
        best = min(range(len(result.layers)), key=lambda j: float(result.p_values[0, j]))
        super().__init__(
            None,
            model_name=result.model_name,
            concepts=result.concepts,
            layers=result.layers,
            rows=result.rows(),
            target=result.target if result.contrast is None else f"{result.target} − {result.contrast}",
            alpha=result.alpha,
            n_random=int(result.scores.shape[-1]),
            selected_layer=result.layers[best],
            **kwargs,
        )
        if trace is not None:
            self.show_projection(trace)

    @classmethod
    def for_explorer(cls, host: Any, name: str, trace: Trace, *, concepts: TCAVResult | None = None) -> ViewBase:
        if concepts is None:
            raise ValueError(
                "no concepts: pass concepts=lw.tcav(model, inputs, target, [concept], layers) to see TCAV "
                "scores and each token's projection on the concept"
            )
        return cls._as_panel(host, name, concepts, trace)

    def show_projection(self, trace: Trace) -> ConceptView:
        """Overlay the cosine of each token of ``trace`` with the selected concept's CAV; returns the view.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
        >>> res = lw.tcav(model, ["Hello"], 5, [shout], [1], n_random=2, progress=False)
        >>> view = lw.ConceptView(res).show_projection(model.trace("Hi there"))
        >>> view.has_trace, "".join(view.tokens)
        (True, 'Hi there')

        """
        if not isinstance(trace, Trace):
            raise ValueError(f"show_projection needs a Trace (from model.trace(text)), not {type(trace).__name__}")
        if trace.model.name != self.result.model_name or trace.model.d_model != self.result.directions.shape[-1]:
            raise ValueError(
                f"the trace is of {trace.model.name!r} but the concepts were measured on {self.result.model_name!r}"
            )
        self._show_text(trace)
        self.has_trace = True
        return self

    # -- selection -----------------------------------------------------------------------------
    @traitlets.validate("selected_token")
    def _check_token(self, proposal: Any) -> int:
        value = proposal["value"]
        if value == -1:
            return -1
        if self.trace is None:
            raise ValueError("no text to select a token in: call show_projection(trace) first")
        return self.trace.check_position(value)

    @traitlets.validate("selected_layer")
    def _check_layer(self, proposal: Any) -> int:
        value = proposal["value"]
        if value == -1:
            return -1
        self.result.layer_index(value)
        return int(value)

    @traitlets.validate("selected_head")
    def _check_head(self, proposal: Any) -> int:
        return int(proposal["value"])  # heads play no part here; kept for linking with other views

    @traitlets.validate("selected_concept")
    def _check_concept(self, proposal: Any) -> int:
        return self.result.concept_index(proposal["value"])

    # -- requests ------------------------------------------------------------------------------
    def _summary(self) -> list[str]:
        lines = [f"TCAV toward {summary.quote(self.target)}, {self.n_random} random sets, alpha {self.alpha}"]
        for row in self.rows:
            verdict = "significant" if row["significant"] else "not significant"
            lines.append(
                f"{row['concept']} at layer {row['layer']}: score {summary.number(row['score'])} vs random "
                f"{summary.number(row['random_score'])}, {verdict}"
            )
        return lines

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        # Everything the view can ask for: the page's width picks one of CHART_WIDTHS, a click picks a layer
        # or a concept. A view exported with no layer selected draws that chart first.
        layers = self.result.layers + ([-1] if self.selected_layer == -1 else [])
        requests: list[dict[str, Any]] = [{"what": "bokehjs"}]
        requests += [{"what": "chart", "layer": la, "width": w} for la in layers for w in CHART_WIDTHS]
        if not self.has_trace:
            return requests, "the chart at every layer is recorded; no text was shown to project onto the concepts"
        requests += [
            {"what": "projection", "concept": c, "layer": la}
            for c in range(len(self.result.concepts))
            for la in self.result.layers
        ]
        return requests, "the chart and the text's projection onto every concept at every layer are recorded"

    @request("bokehjs")
    def _serve_bokehjs(self) -> tuple[dict[str, Any], Arrays]:
        import bokeh
        from bokeh.resources import INLINE

        # The first bundle is bokeh.min.js itself: all a plain figure needs (no widgets, tables, gl).
        return {"version": bokeh.__version__, "source": INLINE.js_raw[0]}, []

    @request("chart")
    def _serve_chart(self, layer: int = -1, width: int = CHART_WIDTHS[-1]) -> tuple[dict[str, Any], Arrays]:
        from bokeh.embed import json_item

        if layer != -1:
            self.result.layer_index(layer)
        if width not in CHART_WIDTHS:
            raise ValueError(f"chart width {width!r} is not one of {', '.join(map(str, CHART_WIDTHS))} px")
        fig = tcav_figure(self.result, selected_layer=layer, width=width)
        return {"item": json.loads(json.dumps(json_item(fig))), "layer": layer}, []

    @request("projection")
    def _serve_projection(self, concept: int, layer: int) -> tuple[dict[str, Any], Arrays]:
        if self.trace is None:
            raise ValueError("no text to project: call view.show_projection(trace) in Python")
        c = self.result.concept_index(concept)
        cos = projection(self.result, self.trace, c, layer)
        fields = {"concept": c, "layer": layer, "min": float(cos.min()), "max": float(cos.max())}
        return fields, [wire.encode("cosine", cos, "float32")]


def tcav_figure(result: TCAVResult, *, selected_layer: int = -1, width: int = 640) -> Any:
    """A bokeh figure of the TCAV scores: bars per layer and concept, random baseline, error bars, marks.

    Bars show the mean score over the random runs and whiskers one standard deviation; the grey bar
    is the random-vs-random baseline. ``*`` marks a significant score (Bonferroni-adjusted p below
    alpha), ``?`` an unreliable one (its CAVs barely beat chance). The selected layer is outlined.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    >>> res = lw.tcav(model, ["Hello"], 5, [shout], [0, 1], n_random=2, progress=False)
    >>> tcav_figure(res, selected_layer=1).name
    'lw-tcav-chart'

    """
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d, Span, Whisker  # type: ignore[attr-defined]
    from bokeh.plotting import figure

    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    groups = [*result.concepts, "random"]
    data: dict[str, list[Any]] = {k: [] for k in ("x", "score", "lower", "upper", "color", "line", "alpha", "mark")}
    data.update({k: [] for k in ("concept", "layer", "p", "accuracy", "label")})
    for j, layer in enumerate(result.layers):
        for c, name in enumerate(groups):
            runs = result.scores[c, j] if c < len(result.concepts) else result.random_scores[j]
            mean = float(runs.mean())
            std = float(runs.std()) if runs.numel() > 1 else 0.0
            data["x"].append((f"layer {layer}", name))
            data["score"].append(mean)
            data["lower"].append(max(0.0, mean - std))
            data["upper"].append(min(1.0, mean + std))
            data["color"].append(palette[c % len(palette)] if c < len(result.concepts) else "#9e9e9e")
            data["line"].append(2.5 if layer == selected_layer else 0.0)
            data["concept"].append(name)
            data["layer"].append(layer)
            if c < len(result.concepts):
                sig, reliable = bool(result.significant[c, j]), bool(result.reliable[c, j])
                data["alpha"].append(0.9 if reliable else 0.35)
                data["mark"].append("*" if sig else "?" if not reliable else "")
                data["p"].append(f"{float(result.p_adjusted[c, j]):.3g}")
                data["accuracy"].append(f"{float(result.accuracy[c, j].mean()):.2f}")
                data["label"].append("significant" if sig else "unreliable CAV" if not reliable else "not significant")
            else:
                data["alpha"].append(0.6)
                data["mark"].append("")
                data["p"].append("")
                data["accuracy"].append(f"{float(result.random_accuracy[j].mean()):.2f}")
                data["label"].append("random vs random")
    source = ColumnDataSource(data)
    title = f"TCAV scores for {result.target!r} ({len(result.inputs)} inputs, {result.scores.shape[-1]} random sets)"
    if selected_layer != -1:
        title += f" · layer {selected_layer} selected"
    fig = figure(
        x_range=FactorRange(*data["x"]),
        y_range=Range1d(start=0.0, end=1.12),
        height=280,
        width=width,
        title=title,
        toolbar_location=None,
        name="lw-tcav-chart",
        tags=[selected_layer],
    )
    bars = fig.vbar(
        x="x",
        top="score",
        width=0.8,
        source=source,
        fill_color="color",
        fill_alpha="alpha",
        line_color="#111111",
        line_width="line",
        name="scores",
    )
    fig.add_layout(Whisker(source=source, base="x", lower="lower", upper="upper", line_color="#333333"))
    fig.text(x="x", y="upper", text="mark", source=source, text_align="center", text_font_size="16px", y_offset=-2)
    fig.add_layout(Span(location=0.5, dimension="width", line_dash="dashed", line_color="#888888"))
    fig.add_tools(
        HoverTool(
            renderers=[bars],
            tooltips=[
                ("", "@concept, layer @layer"),
                ("score", "@score{0.00} (@lower{0.00}–@upper{0.00})"),
                ("adjusted p", "@p"),
                ("CAV accuracy", "@accuracy"),
                ("", "@label"),
            ],
        )
    )
    fig.yaxis.axis_label = "share of inputs with positive derivative"
    fig.xaxis.major_label_orientation = 0.9
    fig.xgrid.grid_line_color = None
    return fig
