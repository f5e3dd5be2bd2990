"""Offloaded models (accelerate: weights on disk or in a CPU map, loaded per call) pass the family reference suite.

The same ``measure_*`` functions and bounds as tests/core/test_families.py, on a model whose blocks keep their
weights on the ``meta`` device between calls: loaded by ``load_model(folder, device_map=..., offload_folder=...)``
with blocks on ``"disk"`` and ``"cpu"``, or wrapped whole by accelerate's ``cpu_offload`` (a hook on every module
with weights). The engine's direct calls to a block's parts go through ``core/offload.materialized``.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import cpu_offload
from accelerate.hooks import AlignDevicesHook, add_hook_to_module

import llmasos_widgets as lw
from llmasos_widgets.analyses import causal
from llmasos_widgets.analyses.neurons import neuron_output_weights
from llmasos_widgets.core.offload import is_offloaded, materialized
from llmasos_widgets.core.tiny import tiny_model
from tests.core import test_families as fam

CASES = [
    ("tiny-llama", "disk"),
    ("tiny-gemma2", "disk"),
    ("tiny-llama", "cpu_offload"),
    ("tiny-gemma2", "cpu_offload"),
    ("tiny-llama", "whole_blocks"),
]


def offloaded(name: str, how: str, folder) -> lw.LanguageModel:
    """``name``'s tiny model with its weights offloaded ``how``, named ``name`` (test_families looks it up by name)."""
    hf, tok = tiny_model(name)
    if how == "cpu_offload":
        return lw.LanguageModel(name, cpu_offload(hf, execution_device="cpu"), tok)
    if how == "whole_blocks":  # one hook per block that loads all its parts (accelerate's place_submodules):
        for block in hf.model.layers:  # a part called alone finds its weights on meta unless materialized
            add_hook_to_module(block, AlignDevicesHook(execution_device="cpu", offload=True, place_submodules=True))
        return lw.LanguageModel(name, hf, tok)
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    # Every other block on disk, the final norm too: the engine crosses from one kind to the other.
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "disk", "lm_head": "cpu"}
    device_map |= {f"model.layers.{i}": ("disk", "cpu")[i % 2] for i in range(hf.config.num_hidden_layers)}
    loaded = lw.load_model(str(folder), device_map=device_map, offload_folder=folder / "offload")
    return lw.LanguageModel(name, loaded.model, loaded.tokenizer)


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def model(request, tmp_path_factory):
    name, how = request.param
    model = offloaded(name, how, tmp_path_factory.mktemp(f"{name}-{how}"))
    block = model.adapter.blocks()[0]
    assert is_offloaded(model.model) and block.mlp.down_proj.weight.device.type == "meta"
    return model


def test_materialized_loads_a_blocks_weights_for_direct_use_and_drops_them_after(model):
    block, x = model.adapter.blocks()[0], torch.randn(1, 4, model.d_model)
    with model.lock, torch.no_grad(), materialized(block):
        assert block.mlp.down_proj.weight.device.type == "cpu"
        out = block.mlp(x)
        block.mlp(x)  # a forward inside keeps them (cpu_offload's own hook on the Linear would drop them)
        assert block.mlp.down_proj.weight.device.type == "cpu"
    assert block.mlp.down_proj.weight.device.type == "meta"
    reference = tiny_model(model.name)[0].model.layers[0].mlp
    assert torch.allclose(out, reference(x).detach(), atol=1e-6)


def test_trace_and_attention_equal_hf_eager(model):
    found = fam.measure_trace(model)
    assert found["attention"] <= 1e-5 and found["attention index"] <= 1e-5, found
    assert max(found["activations"], found["resid_post = pre + attn + mlp"], found["logits"]) <= 1e-4, found


@pytest.mark.parametrize("over", causal.SITES)
def test_patching_equals_a_plain_hook_loop(model, over):
    assert fam.measure_patching(model, over) <= 1e-4


@pytest.mark.filterwarnings("ignore:integrated gradients' completeness gap")
def test_attribution_equals_captum(model):
    # captum itself cannot run a model offloaded whole (inputs go to its first weight's device, meta):
    # it runs on the same weights not offloaded.
    found = fam.measure_attribution(model, reference=lw.load_model(model.name))
    assert max(found.values()) <= 1e-4, found


def test_steering_at_zero_is_generate_and_steering_is_a_hook(model):
    assert fam.measure_steering(model)["steering at 0: tokens unlike generate"] == 0


def test_an_sae_trains_and_reads_the_offloaded_model(model):
    assert fam.measure_sae(model) <= 1e-4


def test_neurons_and_their_output_weights(model):
    assert fam.measure_neurons(model) <= 1e-4
    plain = lw.load_model(model.name)
    assert torch.equal(neuron_output_weights(model, 0), neuron_output_weights(plain, 0))


def test_a_tiny_model_by_name_takes_a_device_map(tmp_path):
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "disk",
                  "model.layers.1": "cpu", "model.norm": "disk", "lm_head": "cpu"}  # fmt: skip
    model = lw.load_model("tiny-llama", device_map=device_map, offload_folder=tmp_path)
    assert is_offloaded(model.model) and model.device == torch.device("cpu")
    ours, plain = model.trace("The cat sat on the mat"), lw.load_model("tiny-llama").trace("The cat sat on the mat")
    assert torch.allclose(ours.residual, plain.residual, atol=1e-6)
    assert torch.allclose(ours.attention(0), plain.attention(0), atol=1e-6)
    with pytest.raises(ValueError, match="a tiny model takes a device_map dict"):
        lw.load_model("tiny-llama", device_map="auto")
    with pytest.raises(ValueError, match="needs offload_folder"):
        lw.load_model("tiny-llama", device_map=device_map)
