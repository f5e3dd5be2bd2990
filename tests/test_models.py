import importlib.metadata

import pytest
from transformers import T5Config, T5ForConditionalGeneration

import llmasos_widgets as lw
from llmasos_widgets import models
from llmasos_widgets.adapters import adapter_for


def test_tiny_models_are_seeded_and_identical_across_loads():
    a, b = lw.load_model("tiny-llama"), lw.load_model("tiny-llama")
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters(), strict=False):
        assert (p == q).all(), name


def test_unsupported_architecture_lists_the_supported_ones():
    t5 = T5ForConditionalGeneration(T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, vocab_size=32))
    with pytest.raises(
        ValueError, match=r"unsupported architecture 't5': supported model types are llama, .*gpt2.*bert"
    ):
        adapter_for(t5)


def test_missing_bundled_model_names_the_fetch_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", missing)
    with pytest.raises(ValueError, match=r"not installed.*python -m llmasos_widgets fetch-models"):
        lw.load_model("smollm2-135m")


def test_unreachable_model_id_is_a_clear_oserror():
    with pytest.raises(OSError, match=r"could not load 'no-such-org/no-such-model'.*Offline, use a bundled model"):
        lw.load_model("no-such-org/no-such-model")


def test_missing_gguf_file_and_bad_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="GGUF file not found"):
        lw.load_model(str(tmp_path / "nothing.gguf"))
    with pytest.raises(ValueError, match="name_or_path"):
        lw.load_model("")
    with pytest.raises(ValueError, match="unknown device"):
        lw.load_model("tiny-llama", device="gpu7")


def test_local_folder_loads_through_the_hub_code_path(tmp_path):
    model = lw.load_model("tiny-gpt2")
    model.model.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    again = lw.load_model(str(tmp_path))
    assert again.adapter.family == "gpt2"
    text = "The capital of France is"
    assert again.trace(text).top_predictions(-1, 3) == model.trace(text).top_predictions(-1, 3)


def test_device_map_is_passed_to_from_pretrained(tmp_path):
    # On this CPU-only machine "auto" places every module on the CPU, so this checks the plumbing,
    # not sharding over GPUs (which needs a GPU machine).
    model = lw.load_model("tiny-llama")
    model.model.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    mapped = lw.load_model(str(tmp_path), device_map="auto")
    text = "The capital of France is"
    ours, ref = mapped.trace(text), model.trace(text)
    assert (ours.attention(1) - ref.attention(1)).abs().max().item() <= 1e-6
    assert ours.top_predictions(-1, 3) == ref.top_predictions(-1, 3)
