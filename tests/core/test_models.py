import importlib.metadata

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

import llmasos_widgets as lw
from llmasos_widgets.core import models
from llmasos_widgets.core.adapters import adapter_for
from tests._numbers import assert_ranked


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
    # Two loads of the same weights (one through accelerate's dispatch): the same predictions within rounding.
    mine, theirs = ours.top_predictions(-1, 3), ref.top_predictions(-1, 3)
    assert_ranked([p.id for p in mine], torch.softmax(ref.logits_at(-1), -1), k=3, tol=1e-6)
    assert [p.prob for p in mine] == pytest.approx([p.prob for p in theirs], rel=1e-5)


def test_randomized_copy_redraws_every_weight_seeded_and_leaves_the_model_alone():
    model = lw.load_model("tiny-llama")
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    control, again, other = lw.randomized(model), lw.randomized(model), lw.randomized(model, seed=1)
    assert (control.name, other.name) == ("tiny-llama-randomized", "tiny-llama-randomized-1")
    assert control.tokenizer is model.tokenizer and control.n_layers == model.n_layers
    for name, p in model.model.state_dict().items():
        assert torch.equal(p, before[name]), f"{name} of the original changed"
        q, r, s = control.model.state_dict()[name], again.model.state_dict()[name], other.model.state_dict()[name]
        assert torch.equal(q, r), f"{name} is not seeded"
        if name.endswith("bias"):
            assert (q == 0).all()
        elif q.ndim == 1:
            assert (q == 1).all(), f"{name}: a norm scale is 1"
        else:
            assert not torch.equal(q, p) and not torch.equal(q, s), name
            assert abs(float(q.std()) - 0.02) < 0.004 and abs(float(q.mean())) < 0.004, name
    trace = control.trace("Le café coûte 3 € 🙂")  # the copy runs like any model
    assert trace.tokens == model.trace("Le café coûte 3 € 🙂").tokens


def test_randomized_keeps_tied_weights_tied():
    gpt2 = lw.randomized(lw.load_model("tiny-gpt2"))
    assert gpt2.model.lm_head.weight is gpt2.model.transformer.wte.weight


def test_randomized_refuses_bad_input():
    model = lw.load_model("tiny-llama")
    with pytest.raises(TypeError, match="model must be a LanguageModel"):
        lw.randomized(model.model)
    with pytest.raises(ValueError, match="seed"):
        lw.randomized(model, seed=-1)
    with pytest.raises(ValueError, match="std must be a positive number"):
        lw.randomized(model, std=0)


def test_a_pad_id_of_0_is_used_as_the_pad_id(monkeypatch):
    # `pad or eos` took a pad id of 0 for "no pad token" and padded with EOS instead.
    import copy

    tiny = lw.load_model("tiny-llama")
    tok = copy.deepcopy(tiny.tokenizer)  # tiny models share one tokenizer: change a copy
    tok.pad_token, tok.eos_token = "<|endoftext|>", tok.convert_ids_to_tokens(5)
    model = lw.LanguageModel("tiny-llama", tiny.model, tok)
    assert (tok.pad_token_id, tok.eos_token_id) == (0, 5)
    generate, pads = model.model.generate, []
    monkeypatch.setattr(model.model, "generate", lambda *a, **kw: pads.append(kw["pad_token_id"]) or generate(*a, **kw))
    model.generate_trace("The cat", max_new_tokens=2)
    lw.steer(model, "The cat", torch.ones(model.d_model), 1.0, layer=1, max_new_tokens=2)
    assert pads == [0, 0, 0] and model.pad_token_id == 0
    pad = lw.attribute(model, "The cat sat", baseline="pad", n_steps=4, progress=False)
    zero = lw.attribute(model, "The cat sat", baseline=0, n_steps=4, progress=False)  # the token id 0
    torch.testing.assert_close(pad.scores, zero.scores)
