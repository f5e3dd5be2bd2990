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
