"""One rule for layers everywhere: negative counts from the end (as in Python and TransformerLens)."""

import warnings

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses import neurons

SHOUT = [f"STOP {w} NOW!!! GET OUT!!!" for w in "APPLE BREAD CHAIR DOOR EAGLE FOX GOAT HILL IRON JAR KITE".split()]


@pytest.fixture(scope="module")
def llama():
    return lw.load_model("tiny-llama")


def test_negative_layers_count_from_the_end_in_every_analysis(llama):
    trace = llama.trace("The capital of France is")
    assert torch.equal(trace.attention(-1), trace.attention(1))
    assert torch.equal(trace.mlp_post(-2), trace.mlp_post(0))
    assert torch.equal(neurons.vocab_logits(llama, -1, 3), neurons.vocab_logits(llama, 1, 3))
    assert torch.equal(neurons.top_neurons(trace, -1, 2, k=3).neurons, neurons.top_neurons(trace, 1, 2, k=3).neurons)
    res = lw.attribute(llama, "The cat sat", method="layer_integrated_gradients", layer=-1, n_steps=4, progress=False)
    assert res.settings["layer"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cav = lw.train_cav(llama, lw.Concept("shout", SHOUT), -1)
    assert cav.layer == 1


@pytest.mark.parametrize("bad", [2, -3, 1.5, True, "1"])
def test_a_layer_out_of_range_gets_the_same_message_everywhere(llama, bad):
    trace = llama.trace("The capital of France is")
    message = rf"layer {bad!r} is out of range: tiny-llama has layers 0\.\.1 \(or -2\.\.-1 from the end\)"
    calls = [
        lambda: trace.attention(bad),
        lambda: neurons.vocab_logits(llama, bad, 0),
        lambda: lw.attribute(llama, "The cat", method="layer_integrated_gradients", layer=bad, progress=False),
        lambda: lw.train_cav(llama, lw.Concept("shout", SHOUT), bad),
        lambda: lw.AttentionView(trace, layer=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_every_index_counts_from_the_end_at_every_entry_point(llama, tmp_path):
    # One rule (core/checks.py): a negative layer, head, position, neuron, feature, step or block
    # counts from the end wherever it is accepted, and out of range it names what is allowed.
    from llmasos_widgets.analyses import neurons
    from tests._views import ask, capture

    trace = llama.trace("The capital of France is")
    d_mlp = neurons.d_mlp(llama)
    assert neurons.check_neuron(llama, -1) == d_mlp - 1
    index = lw.NeuronIndex.build(llama, ["a b c", "b c d"], [0, 1], 2, progress=False)
    assert index.top_examples(-1, -1) == index.top_examples(1, d_mlp - 1)
    assert index.stats(-2, 3) == index.stats(0, 3)
    sae = lw.SAE.random(64, 128, 8, layer=1)
    view = capture(lw.FeatureView(trace, sae))
    assert ask(view, what="feature", feature=-1, k=5, bins=10)[0]["type"] == "response"
    assert view.token_features(-1) == view.token_features(len(trace) - 1)
    view.selected_feature = -2  # a selection trait's -1 means "none"; other negatives count from the end
    assert view.selected_feature == 126
    assert sae.direction(-1).vector.equal(sae.direction(127).vector)
    saved = sae.save(tmp_path / "s.sae")
    assert lw.load_sae(saved, model=llama).layer == 1
    lens = capture(lw.LensView(trace))
    lens._on_custom_msg(lens, {"type": "request", "id": 3, "what": "lens", "block": -1}, [])
    from tests._views import wait_for

    assert wait_for(lens, "response")[0][0]["start"] == 0  # one block of 16: block -1 is block 0
    steering = capture(lw.SteeringView(llama, "The cat", direction=torch.ones(64), layer=1, max_new_tokens=2))
    steering._on_custom_msg(steering, {"type": "request", "id": 4, "what": "steer", "step": -1}, [])
    answer = wait_for(steering, "response")[0][0]
    assert answer["step"] == 20 and answer["alpha"] == steering.alpha_values[-1]
    result = lw.tcav(
        llama, ["The capital of France is"], " Paris", [lw.Concept("shout", SHOUT)], [1], n_random=2, progress=False
    )
    assert result.concept_index(-1) == 0
    with pytest.raises(ValueError, match=r"concept 1 is out of range: this result's concepts \['shout'\] are 0\.\.0"):
        result.concept_index(1)
    with pytest.raises(ValueError, match=r"neuron 128 is out of range: tiny-llama has neurons 0\.\.127 \(or -128"):
        index.top_examples(0, 128)


def test_shipped_saes_take_negative_layers_of_their_model():
    from llmasos_widgets.analyses.sae import shipped_saes

    layers = shipped_saes().get("smollm2-135m")
    if not layers:
        pytest.skip("no shipped SAE in this install")
    assert lw.load_sae("smollm2-135m", layer=-6).layer == 24  # smollm2-135m has 30 layers
    with pytest.raises(
        ValueError, match=r"no shipped SAE for 'smollm2-135m' at layer 3 \(shipped: layers \[12, 24\]\)"
    ):
        lw.load_sae("smollm2-135m", layer=3)
