"""Explorer: every view of one text in one widget, linked on one token, layer and head selection.

Each panel is the view itself (TokensView, AttentionView, FeatureView, ...) built with no comm of its own: its
messages travel through the Explorer's, tagged with the panel's name, and its own synced traits are
mirrored in ``panel_states``. The selection (``selected_token``, ``selected_layer``, ``selected_head``)
is the Explorer's: in the page every panel reads it from the Explorer's model, so a click redraws all
panels without a round trip to the kernel. The page keeps the answers it is likely to need, filled by the
kernel ahead of the click (``cache_mb``); a click that misses asks for every open panel in one message
(``views/serve.py``).
"""

from __future__ import annotations

from typing import Any

import traitlets

from ..analyses.memory import estimate, estimate_tokens
from ..core.memory import require, trace_estimate
from ..core.models import LanguageModel
from ..core.trace import Trace
from .base import TEXT_TRAITS, ViewBase
from .panels import SELECTION, registered_panels
from .serve import Server, Turns

# Above this many tokens the saliency panel starts folded (unless ``collapsed=`` says otherwise): its first
# draw is a backward pass over the text (about 11 s at 2,048 tokens of smollm2-135m on 2 cores).
FOLD_SALIENCY_ABOVE = 512

_WIDGET_OWN = ("layout", "tabbable", "tooltip")
_WIDE = ("attention", "lens", "features")  # panels that span both columns of a wide cell at first


class Explorer(ViewBase):
    """A token strip and every panel of one text (attention, saliency, neurons, lens, SAE features...), linked.

    Parameters
    ----------
    source : LanguageModel or Trace
        A model (then give ``text``) or a trace (a text, or a prompt and its generation).
    text : str, optional
        The text, when ``source`` is a model.
    panels : list of str, optional
        Which panels, in order (default: every registered panel that applies to the model, see
        :func:`~llmasos_widgets.views.panels.registered_panels`). A panel that does not apply says why in
        ``panel_notes`` and in the page.
    collapsed : list of str, optional
        Panels shown folded; a folded panel fetches nothing until it is opened. By default none is, but
        for the saliency panel above ``FOLD_SALIENCY_ABOVE`` (512) tokens when it must compute its own
        attribution (a backward pass): its fold says so, and opening it starts the work.
    layer : int, optional
        The layer selected at first (default: the middle one).
    attribution : Attribution, optional
        What the saliency panel shows (default: input × gradient of the model's next token, or of each
        generated token, computed when the panel is first drawn).
    concepts : TCAVResult, optional
        What the concept panel shows (from :func:`~llmasos_widgets.tcav`); without it, that panel says
        how to make one.
    neuron_index : NeuronIndex, optional
        Top corpus examples for the neuron panel.
    sae : SAE, optional
        What the feature panel reads (from :func:`~llmasos_widgets.load_sae` or
        :func:`~llmasos_widgets.train_sae`); the panel keeps the SAE's layer and follows the token.
        Without it, or with an SAE that does not fit the model, that panel says why.
    feature_index : FeatureIndex, optional
        Corpus examples and density for the feature panel's dashboards (built with the same SAE).
    evaluation : Evaluation, optional
        What the evaluation panel shows (from :func:`~llmasos_widgets.evaluate`): the methods' curves,
        the table and each prompt's overlays; when the Explorer's text is one of its prompts, that
        prompt's strips follow the token selection. Without it, that panel says how to make one.
    **kwargs
        The inputs above are the panels' own (each view's registration names those it reads); anything
        else is a synced trait, as for every view.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> ex = lw.Explorer(lw.load_model("tiny-llama"), "The capital of France is")
    >>> ex.panels, ex.panel_notes["concepts"][:33]
    (['tokens', 'attention', 'saliency', 'neurons', 'lens'], 'no concepts: pass concepts=lw.tca')
    >>> ex.selected_token = 3
    >>> ex.panel("neurons").selected_token, ex.panel("lens").selected_token
    (3, 3)
    >>> ex = lw.Explorer(ex.trace, panels=["lens", "features"], sae=lw.SAE.random(64, 128, 8, layer=1))
    >>> ex.selected_token = 2
    >>> ex.panel("features").selected_token, ex.panel("features").layer
    (2, 1)

    """

    front_end = "explorer"
    panels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    collapsed = traitlets.List(traitlets.Unicode()).tag(sync=True)
    panel_states = traitlets.Dict().tag(sync=True)  # panel -> its own synced traits
    panel_links = traitlets.Dict().tag(sync=True)  # panel -> the selection traits it follows
    panel_notes = traitlets.Dict().tag(sync=True)  # panel left out -> why
    panel_titles = traitlets.Dict().tag(sync=True)  # panel -> its title (its registration's)
    panel_costs = traitlets.Dict().tag(sync=True)  # panel -> what opening it costs, shown on its fold
    # In a wide cell the panels sit in a grid of two columns: how many each spans (1 or 2). The page moves
    # and widens panels by setting `panels` (a new order of the same panels) and this.
    panel_spans = traitlets.Dict(traitlets.Int()).tag(sync=True)
    # The page's cache of answers (MB): what the kernel fills ahead of a click; 0: every click asks the kernel.
    cache_mb = traitlets.Float(64.0).tag(sync=True)

    def __init__(
        self,
        source: LanguageModel | Trace,
        text: str | None = None,
        *,
        panels: list[str] | tuple[str, ...] | None = None,
        collapsed: list[str] | tuple[str, ...] | None = None,
        layer: int | None = None,
        **kwargs: Any,
    ) -> None:
        registry = registered_panels()
        known_inputs = {i for p in registry.values() for i in p.inputs}
        inputs = {k: kwargs.pop(k) for k in list(kwargs) if k in known_inputs}
        unknown = sorted(set(kwargs) - set(self.trait_names()))
        if unknown:
            raise TypeError(
                f"Explorer() got unexpected keyword argument(s): {', '.join(unknown)}; the panels take "
                f"{', '.join(sorted(known_inputs))}"
            )
        if isinstance(source, LanguageModel) and isinstance(text, str):
            require(estimate(source, text, "explorer"))  # before the trace: the whole Explorer must fit
        trace = _trace_of(source, text)
        if trace is source:  # a trace already held: what the panels add must fit
            require(estimate_tokens(trace.model, len(trace), "explorer").minus(trace_estimate(trace.model, len(trace))))
        wanted = list(registry if panels is None else panels)
        costs = _costs(trace, inputs)
        if collapsed is None:
            collapsed = [p for p in costs if len(trace) > FOLD_SALIENCY_ABOVE]
        bad = [p for p in [*wanted, *collapsed] if p not in registry]
        if bad or not wanted or len(set(wanted)) != len(wanted):
            raise ValueError(f"panels must be distinct names from {', '.join(registry)}; got {list(panels or [])}")
        self._views: dict[str, ViewBase] = {}
        self._links: dict[str, tuple[str, ...]] = {}
        notes: dict[str, str] = {}
        for name in wanted:
            entry = registry[name]
            try:
                given = {k: inputs[k] for k in entry.inputs if k in inputs}
                self._views[name] = entry.view.for_explorer(self, name, trace, **given)
                self._links[name] = entry.follows
            except ValueError as e:
                notes[name] = str(e)
        if not self._views:
            raise ValueError(
                f"no panel applies to {trace.model.name}: " + "; ".join(f"{k}: {v}" for k, v in notes.items())
            )
        super().__init__(
            trace,
            panels=[p for p in wanted if p in self._views],
            collapsed=[p for p in collapsed if p in self._views],
            panel_links={name: list(self._links[name]) for name in self._views},
            panel_titles={name: registry[name].title for name in wanted},
            panel_notes=notes,
            panel_costs={k: v for k, v in costs.items() if k in self._views},
            panel_spans={name: 2 if name in _WIDE else 1 for name in self._views},
            panel_states={name: self._own_state(name) for name in self._views},
            selected_layer=trace.check_layer(trace.n_layers // 2 if layer is None else layer),
            **kwargs,
        )
        for name, view in self._views.items():
            view.observe(lambda change, name=name: self._panel_changed(name, change), names=self._own_keys(name))
            view.observe(self._follow, names=list(self._links[name]))
            self._push(name, {key: getattr(self, key) for key in self._links[name]})
        self.observe(self._lead, names=list(SELECTION))
        self._server = Server(self)
        turns = Turns()
        for view in self._views.values():
            view._turns = turns

    @traitlets.validate("panels")
    def _check_order(self, proposal: Any) -> list[str]:
        """After the first draw the page may reorder the panels, never change which there are."""
        value = list(proposal["value"])
        views = self.__dict__.get("_views")
        if views is not None and self.panels and sorted(value) != sorted(self.panels):
            raise traitlets.TraitError(f"panels can be reordered, not changed: {sorted(self.panels)}; got {value}")
        return value

    @traitlets.validate("panel_spans")
    def _check_spans(self, proposal: Any) -> dict[str, int]:
        value = dict(proposal["value"])
        bad = {k: v for k, v in value.items() if v not in (1, 2)}
        if bad:
            raise traitlets.TraitError(f"a panel spans 1 or 2 columns; got {bad}")
        return value

    def close(self) -> None:
        """Close the widget and end its worker thread."""
        server = self.__dict__.get("_server")  # absent when __init__ refused its arguments
        if server is not None:
            server.stop()
        super().close()

    def panel(self, name: str) -> ViewBase:
        """The view behind a panel (e.g. ``ex.panel("attention").heads = [0, 3]``)."""
        if name not in self._views:
            why = self.panel_notes.get(name, f"it is not one of {', '.join(self._views)}")
            raise ValueError(f"the Explorer has no {name!r} panel: {why}")
        return self._views[name]

    def _own_keys(self, name: str) -> list[str]:
        """A panel's synced traits that are its own (not the text, nor the selection it follows)."""
        shared = set(TEXT_TRAITS) | set(self._links[name]) | set(_WIDGET_OWN)
        return [k for k in self._views[name].keys if not k.startswith("_") and k not in shared]

    def _own_state(self, name: str) -> dict[str, Any]:
        return self._views[name].get_state(self._own_keys(name))

    # -- keeping the selection and the panels' state in step -------------------------------------
    def _panel_changed(self, name: str, _change: Any) -> None:
        self.panel_states = {**self.panel_states, name: self._own_state(name)}

    def _push(self, name: str, values: dict[str, Any]) -> None:
        """Give a panel the shared selection; a value it cannot take (its validator says no) is skipped."""
        for key, value in values.items():
            try:
                setattr(self._views[name], key, value)
            except (ValueError, traitlets.TraitError):
                pass

    def _lead(self, change: Any) -> None:
        for name in self._views:
            if change.name in self._links[name]:
                self._push(name, {change.name: change.new})

    def _follow(self, change: Any) -> None:
        try:
            setattr(self, change.name, change.new)  # a panel moved the selection from Python
        except (ValueError, traitlets.TraitError):
            pass

    # -- messages --------------------------------------------------------------------------------
    def _on_custom_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "batch":
            self._server.batch(content)
            return
        if isinstance(content, dict) and content.get("type") == "prefetch":
            self._server.prefetch(content)
            return
        if not isinstance(content, dict) or "panel" not in content:
            super()._on_custom_msg(widget, content, buffers)
            return
        name = content["panel"]
        view = self._views.get(name)
        if view is None:
            self.send({"type": "error", "id": content.get("id"), "panel": name, "message": f"no panel {name!r}"})
        elif content.get("type") == "set":
            self._set_from_page(name, content.get("changes") or {})
        else:
            view._on_custom_msg(view, {k: v for k, v in content.items() if k != "panel"}, buffers)

    def _set_from_page(self, name: str, changes: dict[str, Any]) -> None:
        """A panel's own traits set in the page; a refused value sends the panel back its state."""
        view, allowed = self._views[name], set(self._own_keys(name))
        for key, value in changes.items():
            try:
                if key not in allowed:
                    raise ValueError(f"{key!r} is not a setting of the {name} panel")
                setattr(view, key, value)
            except (ValueError, traitlets.TraitError) as e:
                self.send({"type": "panel_state", "panel": name, "state": self._own_state(name), "message": str(e)})

    def _handler(self, what: str) -> Any:
        """Recorded answers (save_html): each request names its panel."""

        def route(reply: Any, panel: str = "", **params: Any) -> None:
            handler = self.panel(panel)._handler(what)
            if handler is None:
                raise ValueError(f"the {panel} panel cannot answer {what!r}")
            handler(reply, **params)

        return route

    def _summary(self) -> list[str]:
        lines = ["panels: " + ", ".join(self.panels)]
        lines += [f"{name} left out: {why}" for name, why in self.panel_notes.items()]
        return lines

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        requests, notes = [], []
        for name in self.panels:
            if name in self.collapsed:
                notes.append(f"{name}: folded, not recorded")
                continue
            panel_requests, note = self._views[name]._export_requests()
            requests += [{**r, "panel": name} for r in panel_requests]
            notes.append(f"{name}: {note}")
        return requests, "; ".join(notes)


def _costs(trace: Trace, inputs: dict[str, Any]) -> dict[str, str]:
    """What opening a panel costs, where its first draw is long: the saliency panel's backward pass."""
    if inputs.get("attribution") is not None:
        return {}
    return {
        "saliency": f"input × gradient over {len(trace):,} tokens: one backward pass per generated token, or one in all"
    }


def _trace_of(source: Any, text: str | None) -> Trace:
    if isinstance(source, Trace):
        if text is not None:
            raise ValueError("give a Trace alone, or a model and a text: Explorer(trace) or Explorer(model, text)")
        return source
    if isinstance(source, LanguageModel):
        if not isinstance(text, str):
            raise ValueError(f"Explorer(model, text) needs the text as a str, not {type(text).__name__}")
        return source.trace(text)
    raise ValueError(f"Explorer needs a model and a text, or a Trace; not {type(source).__name__}")


def link(*views: ViewBase, names: tuple[str, ...] = ("selected_token",)) -> list[Any]:
    """Link the selection of separate views in the page (no kernel round trip), as inside an Explorer.

    Every view has the same selection traits (``selected_token``, ``selected_layer``,
    ``selected_head``); this links the ``names`` of the first view to each other view with
    ``ipywidgets.jslink``, which runs in the notebook front-end (JupyterLab, Notebook 7, VS Code, Colab).
    marimo has no front-end links: there, link in Python with ``traitlets.link``. Returns the links
    (``.unlink()`` undoes one).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> trace = lw.load_model("tiny-llama").trace("The capital of France is")
    >>> attention, lens = lw.AttentionView(trace), lw.LensView(trace)
    >>> links = lw.link(attention, lens, names=("selected_token", "selected_layer"))
    >>> len(links)
    2

    """
    import ipywidgets

    if len(views) < 2 or not all(isinstance(v, ViewBase) for v in views):
        raise ValueError("link needs two or more views, e.g. lw.link(lw.AttentionView(trace), lw.LensView(trace))")
    bad = [n for n in names if n not in SELECTION]
    if bad or not names:
        raise ValueError(f"link shares selection traits: {', '.join(SELECTION)}; got {list(names)}")
    first, *others = views
    return [ipywidgets.jslink((first, name), (other, name)) for other in others for name in names]
