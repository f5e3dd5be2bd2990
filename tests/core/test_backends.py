"""The nnsight backend against the default one: the same Trace and the same patching grids, through nnsight's graph.

Locally (``remote=False``), in nnsight's dry run of a remote request (``remote="local"``: serialized and run with
this package hidden, as NDIF would), and up to the request ``remote=True`` would send (no network here): what it
carries, its size, and that what comes back is the grid, not activations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.attention import AttentionIndex
from llmasos_widgets.core.backends import NNsightBackend
from llmasos_widgets.core.tiny import tiny_model

CLEAN, CORRUPT = "The cat sat on the warm mat in the", "The dog sat on the warm mat in the"
TEXT = "The café in Paris is naïve: the cat reads on the mat."


def both(name):
    return lw.load_model(name), lw.load_model(name, backend="nnsight")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gemma2", "tiny-neox"])
def test_a_trace_through_nnsight_equals_the_default(name):
    default, graph = both(name)
    assert isinstance(graph.backend, NNsightBackend) and default.backend.name == "torch"
    ours, theirs = default.trace(TEXT), graph.trace(TEXT)
    assert torch.allclose(ours.residual, theirs.residual, atol=1e-5)
    for layer in range(default.n_layers):
        assert torch.allclose(ours.mlp_post(layer), theirs.mlp_post(layer), atol=1e-5)
        assert torch.allclose(ours.attention(layer), theirs.attention(layer), atol=1e-5)
    assert torch.allclose(ours.logits, theirs.logits, atol=1e-4)
    assert [p.token for p in ours.top_predictions(-1)] == [p.token for p in theirs.top_predictions(-1)]


# Every site on tiny-llama; GPT-2's Conv1D blocks and Gemma 2's soft-capped logits on the resid and head grids.
PATCH_CASES = [("tiny-llama", over) for over in ("resid", "attn", "mlp", "heads")]
PATCH_CASES += [(name, over) for name in ("tiny-gpt2", "tiny-gemma2") for over in ("resid", "heads")]


@pytest.mark.parametrize(("name", "over"), PATCH_CASES)
def test_patching_through_nnsight_equals_the_default(name, over):
    default, graph = both(name)
    metric = lw.logit_diff(" cat", " the")
    ours = lw.patch(default, CLEAN, CORRUPT, metric=metric, over=over, progress=False)
    theirs = lw.patch(graph, CLEAN, CORRUPT, metric=metric, over=over, progress=False)
    assert theirs.values.shape == ours.values.shape
    assert torch.allclose(theirs.values, ours.values, atol=1e-4), (theirs.values - ours.values).abs().max()
    assert (
        abs(theirs.clean_metric - ours.clean_metric) < 1e-4 and abs(theirs.corrupt_metric - ours.corrupt_metric) < 1e-4
    )
    # What came back from nnsight's run: one float32 per computed cell (from the first differing token on; every
    # head) and the two end metrics. Never an activation.
    ids = [default.tokenizer.encode(t) for t in (CLEAN, CORRUPT)]
    first = next(i for i, (a, b) in enumerate(zip(*ids, strict=True)) if a != b)
    cells = default.n_layers * (default.n_heads if over == "heads" else len(ids[0]) - first)
    assert graph.backend.received_bytes == 4 * (cells + 2)


def test_noising_and_a_subset_of_positions_through_nnsight():
    default, graph = both("tiny-gpt2")
    kw = dict(metric=lw.logit_diff(" cat", " dog"), direction="noise", positions=[2, 5, -1], progress=False)
    ours, theirs = lw.patch(default, CLEAN, CORRUPT, **kw), lw.patch(graph, CLEAN, CORRUPT, **kw)
    assert torch.allclose(theirs.values, ours.values, atol=1e-4, equal_nan=True)
    assert theirs.values.isnan().sum() == ours.values.isnan().sum() > 0


def test_smollm2_traced_through_nnsight_equals_the_default(smollm2):
    graph = lw.LanguageModel(
        smollm2.name, smollm2.model, smollm2.tokenizer, NNsightBackend(smollm2.model, smollm2.tokenizer)
    )
    ours, theirs = smollm2.trace(TEXT), graph.trace(TEXT)
    assert torch.allclose(ours.residual, theirs.residual, atol=1e-4)
    assert torch.allclose(ours.mlp_post(29), theirs.mlp_post(29), atol=1e-4)
    assert torch.allclose(ours.attention(15), theirs.attention(15), atol=1e-5)
    assert torch.allclose(ours.logits_at(-1), theirs.logits_at(-1), atol=1e-3)
    assert graph.backend.received_bytes == 4 * len(ours) * (31 * 576 + 30 * 1536)  # the stream and MLP units


def test_the_dry_run_of_a_remote_request_equals_the_local_run():
    local, dry = (
        lw.load_model("tiny-llama", backend="nnsight"),
        lw.load_model("tiny-llama", backend="nnsight", remote="local"),
    )
    metric = lw.logit_diff(" cat", " the")
    a = lw.patch(local, CLEAN, CORRUPT, metric=metric, progress=False)
    b = lw.patch(dry, CLEAN, CORRUPT, metric=metric, progress=False)  # serialized, package hidden, deserialized, run
    assert torch.equal(a.values, b.values)
    assert torch.equal(local.trace(TEXT).residual, dry.trace(TEXT).residual)


def test_views_take_a_model_of_either_backend():
    graph = lw.load_model("tiny-llama", backend="nnsight")
    trace = graph.trace(TEXT)
    assert lw.AttentionView(trace).tokens == lw.AttentionView(lw.load_model("tiny-llama").trace(TEXT)).tokens
    result = lw.patch(graph, CLEAN, CORRUPT, metric=lw.logit_diff(" cat", " the"), progress=False)
    view = lw.PatchingView(result)
    assert view.n_layers == 2 and view.clean_metric == pytest.approx(result.clean_metric)


def test_what_a_remote_request_would_send(monkeypatch):
    """remote=True up to the request: the envelope names the model, the payload is code, not tensors."""
    from nnsight.intervention.backends.remote import RemoteBackend
    from nnsight.modeling import huggingface

    sent = []

    class Sent(Exception):
        pass

    def request(self, request, tracer):  # RemoteBackend.request without the websocket: keep what it would send
        sent.append((request, self._serialize(tracer), self.host, self.api_key))
        raise Sent

    monkeypatch.setattr(RemoteBackend, "request", request)
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct"
    monkeypatch.setitem(huggingface._ID_CACHE, repo, repo)  # the hub's canonical id, asked over the network
    hf, tok = tiny_model("tiny-llama")
    hf.name_or_path = hf.config._name_or_path = repo  # as a model loaded from the hub by its id
    model = lw.load_model(hf, tokenizer=tok, backend="nnsight", remote=True)
    with pytest.raises(Sent):
        lw.patch(model, CLEAN, CORRUPT, metric=lw.logit_diff(" cat", " the"), progress=False)
    trace = model.trace(TEXT)  # nothing is sent yet: each site travels when a view first needs it
    assert len(sent) == 1
    with pytest.raises(Sent):
        AttentionIndex(trace).overview(0, 16)  # the overview is computed where the model runs
    (patch_request, patch_blob, host, _), (_, overview_blob, _, _) = sent
    assert repo in patch_request.metadata() and host.startswith("https://")
    # One session for the whole grid (source, clean and corrupt runs and a trace per layer): code and token ids.
    weights = sum(p.numel() * 4 for p in hf.parameters())
    assert len(patch_blob) < 64_000 < weights, (len(patch_blob), weights)
    assert len(overview_blob) < 64_000


def test_a_remote_overview_is_computed_where_the_model_runs():
    """remote: the overview's thumbnails, scores and rollout come back, never the residual stream."""
    text = TEXT + " 大型语言模型的可解释性 🤖"
    ours = AttentionIndex(lw.load_model("tiny-llama").trace(text))
    model = lw.load_model("tiny-llama", backend="nnsight", remote="local")  # serialized, package hidden, run
    trace = model.trace(text)
    theirs = AttentionIndex(trace)
    size, n = 8, len(trace)
    for layer in range(model.n_layers):  # in order: the local rollout multiplies up layer by layer
        a, b = ours.overview(layer, size), theirs.overview(layer, size)
        assert torch.allclose(a.thumbs, b.thumbs, atol=1e-6) and torch.allclose(a.scores, b.scores, atol=1e-5)
        assert torch.allclose(a.rollout, b.rollout, atol=1e-6)
    heads, layers = model.n_heads, model.n_layers
    assert model.backend.received_bytes == 4 * layers * (heads * size * size + 3 * heads + size * size)
    assert trace._resid.fetched == trace._mlp_post.fetched == 0  # noqa: SLF001 (what came back: nothing else)
    # A click: one token's row and column in every layer and head, one request each, [layer, head, token] floats.
    for position in (0, 5, n - 1):
        assert torch.allclose(theirs.rows(position), ours.rows(position), atol=1e-6)
        assert model.backend.received_bytes == 4 * layers * heads * n
        assert torch.allclose(theirs.columns(position), ours.columns(position), atol=1e-6)
    assert trace._resid.fetched == 0  # noqa: SLF001
    # The rest of the Trace reads each site on first use, equal to the default backend's.
    assert trace.top_predictions(-1) == ours.trace.top_predictions(-1)
    assert trace._resid.fetched == 1  # noqa: SLF001 (the final stream only)
    assert torch.equal(trace.mlp_post(1), ours.trace.mlp_post(1)) and trace._mlp_post.fetched == 1  # noqa: SLF001
    assert torch.allclose(trace.residual, ours.trace.residual, atol=1e-6) and 4 * n * 64 * 2 < 1e6


def test_a_remote_overview_of_another_family_is_computed_here():
    # Gemma 2 soft-caps and slides its window: not rebuilt where the model runs; computed here from the stream.
    model = lw.load_model("tiny-gemma2", backend="nnsight", remote="local")
    assert not model.backend.serves_attention(model)
    with pytest.raises(ValueError, match="Llama-like"):  # the overview and a click computed here instead
        model.backend.attention_overview(model, torch.tensor([[1, 2, 3]]), 8, 1024)
    ours, theirs = AttentionIndex(lw.load_model("tiny-gemma2").trace(TEXT)), AttentionIndex(model.trace(TEXT))
    for layer in range(model.n_layers):
        assert torch.allclose(ours.overview(layer, 8).thumbs, theirs.overview(layer, 8).thumbs, atol=1e-6)
    assert torch.allclose(ours.rows(3), theirs.rows(3), atol=1e-6)
    assert theirs.trace._resid.fetched == model.n_layers  # noqa: SLF001 (each block's input, read once)


def test_bad_backends_are_named():
    with pytest.raises(ValueError, match="backend must be one of torch, nnsight"):
        lw.load_model("tiny-llama", backend="jax")
    with pytest.raises(ValueError, match="remote= goes with backend='nnsight'"):
        lw.load_model("tiny-llama", remote=True)
    with pytest.raises(ValueError, match="Hugging Face id"):
        lw.load_model("tiny-llama", backend="nnsight", remote=True)
    with pytest.raises(ValueError, match="remote must be False, True"):
        lw.load_model("tiny-llama", backend="nnsight", remote="ndif")


def test_the_attention_view_of_a_remote_model_draws_from_the_summaries():
    from tests._views import arrays, capture, wait_for  # noqa: PLC0415

    views = [capture(lw.AttentionView(lw.load_model("tiny-llama").trace(TEXT)))]
    remote = lw.load_model("tiny-llama", backend="nnsight", remote="local")
    views.append(capture(lw.AttentionView(remote.trace(TEXT))))
    for view in views:
        view._on_custom_msg(view, {"type": "request", "id": 1, "what": "overview", "size": 8}, [])
        wait_for(view, "response")
    ours, theirs = ([arrays(c, b) for c, b in v.sent if c["type"] == "chunk"] for v in views)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for name in a:  # bytes quantised for the wire may round to the next step: one step apart at most
            step = 1 if a[name].dtype == np.uint8 else 1e-5
            assert np.abs(a[name].astype(np.float64) - b[name]).max() <= step, name
    assert views[1].trace._resid.fetched == 0  # noqa: SLF001
