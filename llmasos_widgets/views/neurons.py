"""NeuronView: the MLP neurons a token fires, layer by layer; click a neuron for its overlay, vocabulary and examples.

The kernel sends one layer at a time, and only a summary of it (each token's top neurons, each
neuron's peak), never the [pos, neuron] activations: the view asks for one neuron's activations
over the text when it is clicked. In a mixture of experts a neuron is one expert's hidden unit
(core/adapters/moe.py), and the view also shows where the router sent the selected token in every layer.
See DESIGN.md, "NeuronView", for the requests.
"""

from __future__ import annotations

from typing import Any

import torch
import traitlets

from ..analyses.neuron_index import NeuronIndex
from ..analyses.neurons import (
    check_neuron,
    d_mlp,
    histogram,
    neuron_contributions,
    vocab_projection,
)
from ..core import checks
from ..core.trace import Trace
from . import summary, wire
from .base import ViewBase
from .panels import panel
from .protocol import request
from .wire import Arrays

# What the token panel ranks neurons by, with the label the view shows for each.
RANK_BY = (("activation", "rank by activation"), ("contribution", "rank by contribution to the prediction"))


@panel("neurons", title="MLP neurons", follows=("selected_token", "selected_layer"), inputs=("neuron_index",), order=40)
class NeuronView(ViewBase):
    """MLP neurons of a trace, linked to the token selection.

    Parameters
    ----------
    trace : Trace
        From ``model.trace(text)``.
    layer : int, optional
        The layer shown first (default: the index's first layer, else the middle layer).
    index : NeuronIndex, optional
        A corpus index built on the same model: the view then shows each neuron's top examples and
        can search neurons by token.
    neuron, token : int, optional
        Initial selection.
    k : int
        Neurons listed per token (1 to 100).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> view = lw.NeuronView(lw.load_model("tiny-llama").trace("The cat sat on the mat"), layer=1, neuron=5)
    >>> view.selected_layer, view.selected_neuron, view.d_mlp
    (1, 5, 128)

    """

    front_end = "neurons"
    n_layers = traitlets.Int().tag(sync=True)
    d_mlp = traitlets.Int().tag(sync=True)
    selected_neuron = traitlets.Int(-1).tag(sync=True)
    rank_by = traitlets.Unicode("activation").tag(sync=True)
    rank_by_choices = traitlets.List(default_value=[list(c) for c in RANK_BY], read_only=True).tag(sync=True)
    target = traitlets.Int(-1).tag(sync=True)  # token id explained by contributions; -1: the top prediction
    k = traitlets.Int(20).tag(sync=True)
    index_layers = traitlets.List(traitlets.Int()).tag(sync=True)  # empty: no index
    # A mixture of experts (0 experts: a dense MLP): neuron n is unit n % d_expert of expert n // d_expert,
    # and the last d_shared neurons are the shared expert's.
    n_experts = traitlets.Int(0).tag(sync=True)
    d_expert = traitlets.Int(0).tag(sync=True)
    d_shared = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        trace: Trace,
        layer: int | None = None,
        *,
        index: NeuronIndex | None = None,
        neuron: int | None = None,
        token: int | None = None,
        k: int = 20,
        **kwargs: Any,
    ) -> None:
        self._check_trace(trace)
        if index is not None:
            if not isinstance(index, NeuronIndex):
                raise ValueError(f"index must be a NeuronIndex, not {type(index).__name__}")
            index.check_model(trace.model)
        self.index = index
        adapter = trace.model.adapter
        experts = (
            {"n_experts": adapter.n_experts, "d_expert": adapter.d_expert, "d_shared": adapter.d_shared}
            if adapter.n_experts
            else {}
        )
        super().__init__(
            trace,
            n_layers=trace.n_layers,
            d_mlp=d_mlp(trace.model),
            k=k,
            index_layers=index.layers if index is not None else [],
            **experts,
            **kwargs,
        )
        if layer is None:
            layer = index.layers[0] if index is not None else trace.n_layers // 2
        self.selected_layer = self.trace.check_layer(layer)
        if neuron is not None:
            self.selected_neuron = neuron
        if token is not None:
            self.selected_token = token

    @classmethod
    def for_explorer(cls, host: Any, name: str, trace: Trace, *, neuron_index: NeuronIndex | None = None) -> ViewBase:
        return cls._as_panel(host, name, trace, index=neuron_index)

    # -- trait checks --------------------------------------------------------------------------
    @traitlets.validate("selected_neuron")
    def _check_neuron(self, proposal: Any) -> int:
        value = proposal["value"]
        return int(value) if value == -1 else check_neuron(self.trace.model, value)

    @traitlets.validate("rank_by")
    def _check_rank_by(self, proposal: Any) -> str:
        value = proposal["value"]
        if value not in dict(RANK_BY):
            raise ValueError(f"rank_by {value!r} is not one of {', '.join(repr(v) for v, _ in RANK_BY)}")
        return str(value)

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        return checks.int_in("k", proposal["value"], 1, 100)

    @traitlets.validate("target")
    def _check_target(self, proposal: Any) -> int:
        value, n = proposal["value"], int(self.trace.logits_at(0).shape[0])
        if value != -1 and not (isinstance(value, int) and 0 <= value < n):
            raise ValueError(f"target token id {value!r} is out of range: use -1 (top prediction) or 0..{n - 1}")
        return int(value)

    # -- requests ------------------------------------------------------------------------------
    def _summary(self) -> list[str]:
        lines = [f"{self.n_layers} layers x {self.d_mlp} neurons; layer {self.selected_layer}"]
        if self.selected_neuron >= 0:
            acts = self.trace.mlp_post(self.selected_layer)[:, self.selected_neuron].float()
            i = int(acts.argmax())
            lines.append(
                f"neuron {self.selected_layer}.{self.selected_neuron}: highest here on {summary.quote(self.tokens[i])}"
                f" (#{i}) at {summary.number(float(acts[i]))}"
            )
        if self.index_layers:
            lines.append(f"corpus index of layers {', '.join(map(str, self.index_layers))}")
        return lines

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        asked: list[dict[str, Any]] = [{"what": "layer", "layer": self.selected_layer, "k": self.k}]
        routed = ""
        if self.n_experts:  # a token's routing is a few numbers per layer: every token's, up to 512
            asked += [{"what": "router", "position": p} for p in range(min(len(self.trace), 512))]
            routed = "; the router's choices are recorded for every token" + (
                " up to 512" if len(self.trace) > 512 else ""
            )
        return asked, (
            f"layer {self.selected_layer}'s top-{self.k} neurons at every token are recorded{routed}; other layers "
            "and a neuron's details need the kernel"
        )

    def _prefetch(self, order: list[int], budget: int) -> list[tuple[int, dict[str, Any]]]:
        """The selected layer's top neurons at every token (one answer); contributions too when ranked so."""
        if self.selected_layer < 0:
            return []
        asked: list[tuple[int, dict[str, Any]]] = [(0, {"what": "layer", "layer": self.selected_layer, "k": self.k})]
        if self.rank_by == "contribution":
            asked += [
                (
                    d,
                    {
                        "what": "contributions",
                        "layer": self.selected_layer,
                        "position": p,
                        "target": self.target,
                        "k": self.k,
                    },
                )
                for d, p in enumerate(order)
            ]
        return asked

    @request("layer")
    def _serve_layer(self, layer: int, k: int = 20) -> tuple[dict[str, Any], Arrays]:
        """Each token's top-k neurons in ``layer`` and each neuron's peak over the text."""
        layer, k = self.trace.check_layer(layer), checks.int_in("k", k, 1, 100)
        acts = self.trace.mlp_post(layer).float().cpu()  # [pos, neuron]
        top = torch.topk(acts, min(k, acts.shape[1]), dim=1)
        arrays = [
            wire.encode("neurons", top.indices, "int32"),  # [pos, k]
            wire.encode("values", top.values, "float16"),  # [pos, k]
            wire.encode("neuron_max", acts.amax(0), "float16"),  # [neuron]
        ]
        return {"layer": layer, "k": k}, arrays

    @request("router")
    def _serve_router(self, position: int) -> tuple[dict[str, Any], Arrays]:
        """Where a mixture of experts' router sent the token at ``position``, in every layer: experts and weights."""
        position = self.trace.check_position(position)
        routes = [self.trace.router(layer) for layer in range(self.trace.n_layers)]  # a ValueError for a dense MLP
        arrays = [
            wire.encode("experts", torch.stack([r.experts[position] for r in routes]), "int32"),  # [layer, k]
            wire.encode("weights", torch.stack([r.weights[position] for r in routes]), "float32"),  # [layer, k]
        ]
        if routes[0].shared_gate is not None:
            gates = torch.stack([r.shared_gate[position] for r in routes if r.shared_gate is not None])
            arrays.append(wire.encode("shared_gate", gates, "float32"))  # [layer]
        return {"position": position, "n_experts": routes[0].n_experts}, arrays

    @request("contributions")
    def _serve_contributions(
        self, layer: int, position: int, target: int = -1, k: int = 20
    ) -> tuple[dict[str, Any], Arrays]:
        """The neurons adding most to the target logit at ``position`` (activation × gradient)."""
        k = checks.int_in("k", k, 1, 100)
        result = neuron_contributions(self.trace, layer, position, None if target == -1 else target, k=k)
        assert result.contributions is not None and result.target is not None
        fields = {
            "layer": result.layer,
            "position": result.position,
            "target": result.target,
            "target_token": self.trace.model.decode_token(result.target),
        }
        arrays = [
            wire.encode("neurons", result.neurons, "int32"),
            wire.encode("activations", result.activations, "float32"),
            wire.encode("contributions", result.contributions, "float32"),
        ]
        return fields, arrays

    @request("neuron")
    def _serve_neuron(self, layer: int, neuron: int, k: int = 10, bins: int = 30) -> tuple[dict[str, Any], Arrays]:
        """One neuron: its activation on every token, their histogram, and its vocabulary projection."""
        layer, neuron = self.trace.check_layer(layer), check_neuron(self.trace.model, neuron)
        k, bins = checks.int_in("k", k, 1, 50), checks.int_in("bins", bins, 1, 200)
        acts = self.trace.mlp_post(layer)[:, neuron].float().cpu()  # [pos]
        counts, lo, hi = histogram(acts, bins)
        proj = vocab_projection(self.trace.model, layer, neuron, k=k)
        fields: dict[str, Any] = {
            "layer": layer,
            "neuron": neuron,
            "hist_lo": lo,
            "hist_hi": hi,
            "promoted_tokens": proj.promoted_tokens,
            "suppressed_tokens": proj.suppressed_tokens,
        }
        if self.index is not None and layer in self.index.layers:
            fields["stats"] = self.index.stats(layer, neuron)
        arrays = [
            wire.encode("activations", acts, "float32"),  # [pos]: exact, the overlay shows the trace's values
            wire.encode("hist", counts, "int32"),
            wire.encode("promoted", proj.promoted, "int32"),
            wire.encode("promoted_logits", proj.promoted_logits, "float32"),
            wire.encode("suppressed", proj.suppressed, "int32"),
            wire.encode("suppressed_logits", proj.suppressed_logits, "float32"),
        ]
        return fields, arrays

    @request("examples")
    def _serve_examples(self, layer: int, neuron: int) -> tuple[dict[str, Any], Arrays]:
        """The neuron's top contexts in the index; their activations concatenated in one array."""
        index = self._need_index()
        examples = index.top_examples(layer, neuron)
        fields = {
            "layer": layer,
            "neuron": neuron,
            "examples": [
                {
                    "text_index": e.text_index,
                    "position": e.position,
                    "activation": e.activation,
                    "tokens": e.tokens,
                    "peak": e.peak,
                }
                for e in examples
            ],
        }
        flat = torch.tensor([a for e in examples for a in e.activations], dtype=torch.float32)
        return fields, [wire.encode("activations", flat, "float16")]

    @request("search")
    def _serve_search(self, token: str, k: int = 10) -> tuple[dict[str, Any], Arrays]:
        """Neurons whose top examples peak on ``token``."""
        found = self._need_index().neurons_for_token(token, k=checks.int_in("k", k, 1, 100))
        results = [{"layer": la, "neuron": n, "count": c, "activation": a} for la, n, c, a in found]
        return {"token": token, "results": results}, []

    def _need_index(self) -> NeuronIndex:
        if self.index is None:
            raise ValueError("this view has no corpus index: pass index=lw.NeuronIndex.build(model, texts, layers)")
        return self.index
