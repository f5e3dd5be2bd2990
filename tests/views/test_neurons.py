"""NeuronView and LensView controllers: each request answered with the trace's own numbers."""

import numpy as np
import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.neuron_index import NeuronIndex
from llmasos_widgets.views import lens as lens_view
from llmasos_widgets.views.lens import BLOCK
from tests._numbers import assert_ranked
from tests._views import arrays, ask, capture, wait_for

TEXT = "The capital of France is Paris, and the capital of Italy is Rome."


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def index(model):
    return NeuronIndex.build(model, lw.sample_texts()[:30], layers=[1], top_k=4, progress=False)


@pytest.fixture()
def view(model, index):
    return capture(lw.NeuronView(model.trace(TEXT), index=index))


def test_defaults_and_selection(model, index):
    trace = model.trace(TEXT)
    assert lw.NeuronView(trace).selected_layer == 1  # the middle of 2 layers
    assert lw.NeuronView(trace, index=index).index_layers == [1]
    view = lw.NeuronView(trace, layer=0, neuron=3, token=4)
    assert (view.selected_layer, view.selected_neuron, view.selected_token) == (0, 3, 4)


def test_layer_summary_is_each_tokens_top_neurons(view):
    content, buffers = ask(view, what="layer", layer=1, k=5)
    assert content["type"] == "response"
    got = arrays(content, buffers)
    acts = view.trace.mlp_post(1)
    top = torch.topk(acts, 5, dim=1)
    assert got["neurons"].tolist() == top.indices.tolist()
    np.testing.assert_allclose(got["values"], top.values.numpy(), rtol=1e-3, atol=1e-3)  # float16
    np.testing.assert_allclose(got["neuron_max"], acts.amax(0).numpy(), rtol=1e-3, atol=1e-3)
    assert all(d["dtype"] in ("float16", "int32") for d in content["arrays"])


def test_neuron_request_gives_overlay_histogram_and_vocabulary(view, model):
    content, buffers = ask(view, what="neuron", layer=1, neuron=9, k=4, bins=10)
    got = arrays(content, buffers)
    acts = view.trace.mlp_post(1)[:, 9]
    np.testing.assert_array_equal(got["activations"], acts.numpy())
    assert got["hist"].sum() == len(view.trace)
    lo, hi = content["hist_lo"], content["hist_hi"]
    assert (lo, hi) == (pytest.approx(float(acts.min())), pytest.approx(float(acts.max())))
    direct = model.model.lm_head.weight @ (
        model.model.model.norm.weight * model.model.model.layers[1].mlp.down_proj.weight[:, 9]
    )
    tol = 1e-5 * float(direct.detach().abs().max())  # float32 products in another order: near-equal either way
    assert_ranked(got["promoted"], direct, k=4, tol=tol)
    assert_ranked(got["suppressed"], -direct, k=4, tol=tol)
    assert content["promoted_tokens"] == [model.decode_token(i) for i in got["promoted"].tolist()]
    assert set(content["stats"]) == {"tokens", "mean", "std", "max", "positive"}  # layer 1 is indexed


def test_contributions_request(view):
    content, buffers = ask(view, what="contributions", layer=0, position=5, target=-1, k=6)
    got = arrays(content, buffers)
    ref = lw.neuron_contributions(view.trace, 0, 5, k=6)
    assert content["target"] == ref.target
    assert got["neurons"].tolist() == ref.neurons.tolist()
    np.testing.assert_allclose(got["contributions"], ref.contributions.numpy(), rtol=1e-5)


def test_examples_and_search_come_from_the_index(view, index):
    content, buffers = ask(view, what="examples", layer=1, neuron=2)
    got = arrays(content, buffers)
    examples = index.top_examples(1, 2)
    assert [e["tokens"] for e in content["examples"]] == [e.tokens for e in examples]
    flat = [a for e in examples for a in e.activations]
    np.testing.assert_allclose(got["activations"], flat, rtol=1e-3, atol=1e-3)
    token = examples[0].tokens[examples[0].peak]
    content, _ = ask(view, what="search", token=token, k=3)
    assert content["results"] and content["results"][0]["layer"] == 1
    assert [(r["layer"], r["neuron"]) for r in content["results"]] == [
        (la, n) for la, n, _, _ in index.neurons_for_token(token, k=3)
    ]


def test_bad_requests_answer_with_clear_errors(model):
    view = capture(lw.NeuronView(model.trace(TEXT)))
    cases = [
        ({"what": "layer", "layer": 9}, "layer 9 is out of range: tiny-llama has layers 0..1"),
        ({"what": "neuron", "layer": 0, "neuron": 500}, "neuron 500 is out of range: tiny-llama has neurons 0..127"),
        ({"what": "layer", "layer": 0, "k": 0}, "k must be an int from 1 to 100"),
        ({"what": "examples", "layer": 0, "neuron": 1}, "this view has no corpus index"),
        ({"what": "contributions", "layer": 0, "position": 99}, "position 99 is out of range"),
    ]
    for request, message in cases:
        content, _ = ask(view, **request)
        assert content["type"] == "error" and message in content["message"], content
    with pytest.raises(Exception, match="rank_by 'weight' is not one of 'activation', 'contribution'"):
        view.rank_by = "weight"
    # The view's picker offers exactly what the check accepts.
    for value, _label in view.rank_by_choices:
        view.rank_by = value
    with pytest.raises(Exception, match="neuron 128 is out of range"):
        view.selected_neuron = 128


def test_an_index_of_another_model_is_refused(index):
    trace = lw.load_model("tiny-gpt2").trace(TEXT)
    with pytest.raises(ValueError, match="built on another model"):
        lw.NeuronView(trace, index=index)


def test_one_layer_costs_little_on_the_wire(model):
    """What the view needs to show one layer: a [pos, k] summary, not the [pos, d_mlp] activations."""
    text = " ".join(lw.sample_texts()[:60])
    trace = model.trace(text, truncate=True)
    view = capture(lw.NeuronView(trace))
    content, buffers = ask(view, what="layer", layer=1, k=20)
    sent = sum(len(b) for b in buffers)
    assert sent == len(trace) * 20 * (4 + 2) + 128 * 2
    assert sent < trace.mlp_post(1).numel() * 2  # less than the layer in float16


# -- LensView -------------------------------------------------------------------------------------
def test_lens_answers_every_layer_with_the_direct_computation(model):
    trace = model.trace(TEXT)
    view = capture(lw.LensView(trace))
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "lens"}, [])
    ((content, buffers),) = wait_for(view, "response")
    got = arrays(content, buffers)
    n = min(len(trace), BLOCK)  # block 0: the first positions
    assert got["ids"].shape == (2, n) and content["start"] == 0
    hf = model.model
    with torch.no_grad():
        out = hf(input_ids=torch.tensor([trace.token_ids]), output_hidden_states=True)
    for layer, hidden in enumerate(out.hidden_states[1:]):
        normed = hidden[0] if layer == 1 else hf.model.norm(hidden[0])
        probs = torch.softmax(hf.lm_head(normed).detach(), -1)
        for pos in range(n):  # the top token (of another computation: near-equal ones either way)
            assert_ranked([got["ids"][layer, pos]], probs[pos], k=1, tol=1e-6)
        np.testing.assert_allclose(got["probs"][layer], probs.max(-1).values[:n].numpy(), rtol=1e-3, atol=1e-4)
    assert all(str(i) in content["vocab"] for i in got["ids"].flatten().tolist())


def test_lens_cell_and_errors(model):
    trace = model.trace(TEXT)
    view = capture(lw.LensView(trace, k=5))
    content, buffers = ask(view, what="cell", layer=0, position=3, k=5)
    got = arrays(content, buffers)
    ref = lw.logit_lens(trace, 0, k=5)  # every position at once: another matrix shape than the cell's one row
    with model.lock:  # the package's own unembedding, run as every run of the model is
        probs = torch.softmax(trace.model.adapter.logits(trace.resid_pre(1)[3:4]), -1)[0]
    assert_ranked(got["ids"], probs, k=5, tol=1e-6)
    np.testing.assert_allclose(got["probs"], ref.probs[3].numpy(), rtol=1e-5)
    content, _ = ask(view, what="cell", layer=5, position=0)
    assert content["type"] == "error" and "layer 5 is out of range" in content["message"]
    with pytest.raises(Exception, match="k must be an int from 1 to 50"):
        view.k = 0


def test_lens_is_asked_in_blocks_of_positions(model):
    trace = model.trace("one two three four five six seven eight nine ten " * 6)
    assert len(trace) > BLOCK
    view = capture(lw.LensView(trace))
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "lens", "block": 1}, [])
    ((content, buffers),) = wait_for(view, "response")
    ref = lw.logit_lens(trace, 1, k=2)
    assert content["start"] == BLOCK
    got = arrays(content, buffers)
    top, ids = ref.probs[BLOCK : 2 * BLOCK].numpy(), ref.ids[BLOCK : 2 * BLOCK].numpy()
    np.testing.assert_allclose(got["probs"][1], top[:, 0], rtol=1e-3)  # float16 on the wire
    # The whole text's lens has the same top token at each position, or two within rounding there.
    differ = got["ids"][1] != ids[:, 0]
    assert (got["ids"][1][differ] == ids[differ, 1]).all() and (top[differ, 0] - top[differ, 1] <= 1e-6).all()
    n_blocks = -(-len(trace) // BLOCK)
    view._on_custom_msg(view, {"type": "request", "id": 2, "what": "lens", "block": n_blocks}, [])
    message = wait_for(view, "error")[0][0]["message"]
    assert f"block {n_blocks} is out of range" in message and f"blocks 0..{n_blocks - 1}" in message


def test_lens_column_is_the_blocks_column(model):
    trace = model.trace("one two three four five six seven eight nine ten")
    view = capture(lw.LensView(trace))
    content, buffers = ask(view, what="column", position=9)
    got = arrays(content, buffers)
    for layer in range(2):  # each layer's top token at position 9 (near-equal ones either way)
        ref = lw.logit_lens(trace, layer, k=2)
        assert got["ids"][layer] == ref.ids[9, 0] or float(ref.probs[9, 0] - ref.probs[9, 1]) <= 1e-6
    assert content["position"] == 9 and all(str(i) in content["vocab"] for i in got["ids"].tolist())
    content, _ = ask(view, what="column", position=99)
    assert content["type"] == "error" and "position 99 is out of range" in content["message"]


def test_a_lens_block_is_made_of_the_columns_already_computed(model, monkeypatch):
    trace = model.trace("one two three four five six seven eight nine ten " * 2)
    view = capture(lw.LensView(trace))
    columns = [arrays(*ask(view, what="column", position=p)) for p in range(BLOCK, 2 * BLOCK)]
    calls = []
    monkeypatch.setattr(lens_view, "logit_lens_block", lambda *a, **k: calls.append(a) or None)
    view.sent.clear()
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "lens", "block": 1}, [])
    ((content, buffers),) = wait_for(view, "response")
    got = arrays(content, buffers)
    assert calls == []  # no unembedding: the block is the columns the clicks (or the prefetch) computed
    assert [got["ids"][:, j].tolist() for j in range(BLOCK)] == [c["ids"].tolist() for c in columns]
    np.testing.assert_array_equal(got["probs"], np.stack([c["probs"] for c in columns], 1))


# -- a mixture of experts: neurons are experts' units, and the router is shown per token --------------------
@pytest.mark.parametrize("name", ["tiny-qwen2-moe", "tiny-mixtral"])
def test_a_mixture_of_experts_answers_its_router_and_its_units(name, tmp_path):
    from llmasos_widgets.views import export
    from tests.views.test_export import exported

    model = lw.load_model(name)
    trace = model.trace("Le café 大型 🤖 naïve")
    view = capture(lw.NeuronView(trace, layer=1, token=2))
    a = model.adapter
    assert (view.n_experts, view.d_expert, view.d_shared) == (4, 32, a.d_shared)
    assert view.d_mlp == 4 * 32 + a.d_shared
    content, buffers = ask(view, what="router", position=2)
    got = arrays(content, buffers)
    assert got["experts"].tolist() == [trace.router(layer).experts[2].tolist() for layer in range(2)]
    np.testing.assert_allclose(got["weights"], [trace.router(layer).weights[2].numpy() for layer in range(2)])
    assert ("shared_gate" in got) == (name == "tiny-qwen2-moe")
    # A neuron of expert 3: its overlay is its unit over the text, 0 where the router sent the token elsewhere.
    content, buffers = ask(view, what="neuron", layer=1, neuron=3 * 32 + 4, k=3, bins=5)
    acts = arrays(content, buffers)["activations"]
    np.testing.assert_array_equal(acts, trace.mlp_post(1)[:, 3 * 32 + 4].numpy())
    sent = (trace.router(1).experts == 3).any(-1).numpy()
    assert (acts[~sent] == 0).all()
    # An exported file answers every token's router.
    _, (data,) = exported(view.save_html(tmp_path / "moe.html"))
    assert export.request_key({"what": "router", "position": 5}) in data["recorded"]


def test_a_dense_model_answers_the_router_with_an_error(view):
    content, _ = ask(view, what="router", position=0)
    assert content["type"] == "error" and "not a mixture of experts" in content["message"]
    assert view.n_experts == 0
