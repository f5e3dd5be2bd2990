"""Neuron analyses against independent references: plain HF hooks, captum, direct products, brute force."""

import json
import math

import pytest
import torch
from captum.attr import LayerGradientXActivation

import llmasos_widgets as lw
from llmasos_widgets.analyses import neurons as nn_
from llmasos_widgets.analyses.neuron_index import NeuronIndex
from llmasos_widgets.core import files
from tests._numbers import assert_ranked

TEXT = "The quick brown fox jumps over the lazy dog while the cat sleeps"


@pytest.fixture(scope="module")
def llama():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def gpt2():
    return lw.load_model("tiny-gpt2")


def hf_mlp_hidden(model, layer, text):
    """The input of the MLP's down projection, taken with a plain forward pre-hook on the HF module."""
    hf = model.model
    module = hf.model.layers[layer].mlp.down_proj if hasattr(hf, "model") else hf.transformer.h[layer].mlp.c_proj
    kept = {}
    handle = module.register_forward_pre_hook(lambda m, args: kept.setdefault("x", args[0].detach()))
    try:
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hf(input_ids=ids)
    finally:
        handle.remove()
    return kept["x"][0]  # [pos, d_mlp]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_top_neurons_are_the_hooked_activations(name):
    model = lw.load_model(name)
    trace = model.trace(TEXT)
    for layer in range(model.n_layers):
        ref = hf_mlp_hidden(model, layer, TEXT)
        for pos in (0, 4, len(trace) - 1):
            top = nn_.top_neurons(trace, layer, pos, k=10)
            torch.testing.assert_close(top.activations, ref[pos][top.neurons], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(top.activations, torch.topk(ref[pos], 10).values, rtol=1e-5, atol=1e-6)


def test_contributions_equal_captum_gradient_times_activation(llama):
    trace = llama.trace(TEXT)
    pos, layer = 6, 1
    result = nn_.neuron_contributions(trace, layer, pos, k=llama_d_mlp(llama))
    target = result.target
    assert target == int(trace.logits_at(pos).argmax())

    hf = llama.model

    def logit(ids):
        return hf(input_ids=ids).logits[:, pos, target]

    attr = LayerGradientXActivation(logit, hf.model.layers[layer].mlp.down_proj)
    ids = torch.tensor([trace.token_ids])
    ref = attr.attribute(ids, attribute_to_layer_input=True)[0, pos]  # [d_mlp]
    full = torch.zeros_like(ref)
    full[result.neurons] = result.contributions
    torch.testing.assert_close(full, ref, rtol=1e-4, atol=1e-6)
    assert torch.all(result.contributions[:-1] >= result.contributions[1:])


def llama_d_mlp(model):
    return nn_.d_mlp(model)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_vocab_projection_is_the_direct_matrix_product(name):
    model = lw.load_model(name)
    hf = model.model
    if hasattr(hf, "model"):
        w_out = hf.model.layers[1].mlp.down_proj.weight[:, 7]
        gain = hf.model.norm.weight
    else:
        w_out = hf.transformer.h[1].mlp.c_proj.weight[7]  # Conv1D is [in, out]
        gain = hf.transformer.ln_f.weight
    direct = (hf.lm_head.weight @ (gain * w_out)).detach()
    torch.testing.assert_close(nn_.vocab_logits(model, 1, 7), direct)
    proj = nn_.vocab_projection(model, 1, 7, k=5)
    tol = 1e-5 * float(direct.abs().max())  # float32 products in another order: near-equal logits either way
    assert_ranked(proj.promoted, direct, k=5, tol=tol)
    assert_ranked(proj.suppressed, -direct, k=5, tol=tol)
    assert proj.promoted_tokens == [model.decode_token(i) for i in proj.promoted.tolist()]


def test_logit_lens_equals_a_direct_computation(llama):
    trace = llama.trace(TEXT)
    hf = llama.model
    ids = torch.tensor([trace.token_ids])
    with torch.no_grad():
        out = hf(input_ids=ids, output_hidden_states=True)
    n = llama.n_layers
    for layer in range(n):
        hidden = out.hidden_states[layer + 1][0]
        # HF applies the final norm to its last hidden state already.
        normed = hidden if layer == n - 1 else hf.model.norm(hidden)
        probs = torch.softmax(hf.lm_head(normed).detach(), -1)
        lens = lw.logit_lens(trace, layer, k=3)
        ref = torch.topk(probs, 3, -1)
        for pos in range(len(trace)):  # the top 3 of the model's own forward (near-equal ones either way)
            assert_ranked(lens.ids[pos], probs[pos], k=3, tol=1e-6)
        torch.testing.assert_close(lens.probs, ref.values, rtol=1e-4, atol=1e-6)
    for pos in range(len(trace)):  # the last layer's lens is the model's own prediction
        assert_ranked(lens.ids[pos, :1], out.logits[0, pos], k=1, tol=1e-5)


def test_index_top_examples_equal_a_brute_force_scan_on_long_texts():
    """Texts long enough that their peaks differ: the ranks of texts must match the scan's."""
    model = lw.load_model("tiny-gpt2")
    texts = [" ".join(lw.sample_texts()[i : i + 3]) for i in range(0, 60, 3)]
    _check_against_brute_force(model, texts)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_index_top_examples_equal_a_brute_force_scan(name):
    _check_against_brute_force(lw.load_model(name), lw.sample_texts()[:23])


def _check_against_brute_force(model, texts):
    index = NeuronIndex.build(model, texts, layers=[0, 1], top_k=5, window=3, batch_size=4, progress=False)
    traces = [model.trace(t) for t in texts]  # each text alone, no batching, no padding
    for layer in (0, 1):
        for neuron in (0, 17, 101):
            acts = [tr.mlp_post(layer)[:, neuron] for tr in traces]
            peaks = sorted(((float(a.max()), i) for i, a in enumerate(acts)), reverse=True)[:5]
            got = index.top_examples(layer, neuron)
            assert [e.activation for e in got] == pytest.approx([v for v, _ in peaks], abs=1e-4)
            assert len({e.text_index for e in got}) == 5  # five different texts
            # The five texts with the highest peaks, best first: the index ran them padded in batches, so
            # peaks within rounding of each other (a BOS token every text shares) may rank either way.
            assert_ranked([e.text_index for e in got], torch.tensor([a.max() for a in acts]), k=5, tol=1e-4)
            for e in got:
                a, ids = acts[e.text_index], traces[e.text_index].token_ids
                # A real peak of that text (ties, e.g. on a BOS token every text shares, may pick either).
                assert float(a[e.position]) == pytest.approx(float(a.max()), abs=1e-4)
                assert e.activation == pytest.approx(float(a.max()), abs=1e-4)
                lo = max(0, e.position - 3)
                assert e.tokens == [model.decode_token(t) for t in ids[lo : e.position + 4]]
                assert e.peak == e.position - lo
                assert e.activations == pytest.approx(a[lo : e.position + 4].tolist(), rel=2e-3, abs=2e-3)


def test_index_statistics_equal_a_direct_computation(llama):
    texts = lw.sample_texts()[:9]
    index = NeuronIndex.build(llama, texts, layers=[1], top_k=3, batch_size=4, progress=False)
    acts = torch.cat([llama.trace(t).mlp_post(1) for t in texts]).double()  # [all tokens, d_mlp]
    stats = index.stats(1, 5)
    assert stats["tokens"] == acts.shape[0] == index.counts["tokens"]
    assert stats["mean"] == pytest.approx(float(acts[:, 5].mean()), abs=1e-5)
    assert stats["std"] == pytest.approx(float(acts[:, 5].std(unbiased=False)), abs=1e-5)
    assert stats["max"] == pytest.approx(float(acts[:, 5].max()), abs=1e-5)
    # The share of positive activations; one within rounding of 0 (batched vs alone) may count either way.
    near_zero = int((acts[:, 5].abs() <= 1e-6).sum())
    assert stats["positive"] == pytest.approx(float((acts[:, 5] > 0).double().mean()), abs=near_zero / len(acts) + 1e-9)


def test_index_memory_does_not_grow_with_the_corpus(llama):
    small = NeuronIndex.build(llama, lw.sample_texts()[:10], layers=[0], top_k=4, progress=False)
    big = NeuronIndex.build(llama, lw.sample_texts()[:200], layers=[0], top_k=4, progress=False)
    assert {k: v.nbytes for k, v in small.tensors.items()} == {k: v.nbytes for k, v in big.tensors.items()}


def test_neurons_for_token_finds_neurons_peaking_there(gpt2):
    texts = lw.sample_texts()[:40]
    index = NeuronIndex.build(gpt2, texts, layers=[0, 1], top_k=5, progress=False)
    token = index.top_examples(1, 9)[0]
    token = token.tokens[token.peak]
    found = index.neurons_for_token(token, k=5)
    assert found and len(found) <= 5
    assert (1, 9) in [(layer, n) for layer, n, _, _ in index.neurons_for_token(token, k=10_000)]
    for layer, neuron, count, best in found:
        peaks = [e for e in index.top_examples(layer, neuron) if e.tokens[e.peak] == token]
        assert len(peaks) == count
        assert max(e.activation for e in peaks) == pytest.approx(best)
    counts = [c for _, _, c, _ in found]
    assert counts == sorted(counts, reverse=True)
    assert index.neurons_for_token("never-a-token-here") == []


def test_save_and_load_round_trip(tmp_path, gpt2):
    index = NeuronIndex.build(gpt2, lw.sample_texts()[:12], layers=[1], top_k=3, progress=False)
    path = index.save(tmp_path / "n.idx")
    assert [p.name for p in tmp_path.iterdir()] == ["n.idx"]  # no temporary left behind
    loaded = NeuronIndex.load(path, model=gpt2)
    assert loaded.meta == json.loads(json.dumps(index.meta))
    for name, tensor in index.tensors.items():
        assert torch.equal(loaded.tensors[name], tensor)
    assert loaded.top_examples(1, 4) == index.top_examples(1, 4)


def test_bad_input_is_a_clear_error(tmp_path, llama, gpt2):
    with pytest.raises(ValueError, match="corpus is empty"):
        NeuronIndex.build(llama, [], layers=[0])
    with pytest.raises(ValueError, match="all 2 texts are empty"):
        NeuronIndex.build(llama, ["", "  "], layers=[0], progress=False)
    with pytest.raises(ValueError, match="not a single str"):
        NeuronIndex.build(llama, "a text", layers=[0])
    with pytest.raises(ValueError, match=r"layer 7 is out of range: tiny-llama has layers 0\.\.1"):
        NeuronIndex.build(llama, ["hi"], layers=[7])
    index = NeuronIndex.build(llama, ["hello there", "", "general kenobi"], layers=[1], top_k=2, progress=False)
    assert index.counts["skipped"] == 1
    with pytest.raises(ValueError, match=r"layer 0 is not in this index: it holds layers \[1\]"):
        index.top_examples(0, 1)
    with pytest.raises(ValueError, match=r"neuron 9999 is out of range: tiny-llama has neurons 0\.\.127"):
        index.top_examples(1, 9999)
    trace = llama.trace(TEXT)
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        nn_.top_neurons(trace, 5, 0)
    with pytest.raises(ValueError, match=r"neuron -129 is out of range: tiny-llama has neurons 0\.\.127 \(or -128"):
        nn_.vocab_projection(llama, 0, -129)
    assert nn_.vocab_projection(llama, 0, -1).neuron == 127  # from the end, as everywhere
    with pytest.raises(ValueError, match=r"target token id 99999 is out of range"):
        nn_.neuron_contributions(trace, 0, 0, target=99999)


def test_long_texts_are_split_and_counted(llama):
    long = " ".join(lw.sample_texts()[:6])
    n_tokens = len(llama.tokenizer(long)["input_ids"])
    index = NeuronIndex.build(llama, [long, "short text"], layers=[0], top_k=2, max_tokens=16, progress=False)
    assert index.counts["split"] == 1
    assert index.counts["pieces"] == math.ceil(n_tokens / 16) + 1
    assert index.counts["tokens"] == n_tokens + len(llama.tokenizer("short text")["input_ids"])
    assert all(e.position < 16 for e in index.top_examples(0, 3))


def test_corrupt_foreign_or_mismatched_files_are_clear_errors(tmp_path, llama, gpt2):
    index = NeuronIndex.build(gpt2, ["a b c"], layers=[0], top_k=1, progress=False)
    path = index.save(tmp_path / "n.idx")
    with pytest.raises(ValueError, match=r"built on another model \(model: index 'tiny-gpt2' vs model 'tiny-llama'"):
        NeuronIndex.load(path, model=llama)
    corrupt = tmp_path / "corrupt.idx"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable neuron index"):
        NeuronIndex.load(corrupt)
    (tmp_path / "text.idx").write_text("hello")
    with pytest.raises(ValueError, match="not a readable neuron index"):
        NeuronIndex.load(tmp_path / "text.idx")
    with pytest.raises(ValueError, match="no neuron index at"):
        NeuronIndex.load(tmp_path / "missing.idx")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.idx"), metadata={"format": "something else"})
    with pytest.raises(ValueError, match="not a neuron index: its header names format 'something else'"):
        NeuronIndex.load(tmp_path / "other.idx")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "v9.idx"), metadata={"format": NeuronIndex.format, "version": "9"})
    with pytest.raises(ValueError, match="format version 9; this llmasos_widgets reads version 1"):
        NeuronIndex.load(tmp_path / "v9.idx")


def test_a_failed_save_leaves_nothing_half_written(tmp_path, gpt2, monkeypatch):
    index = NeuronIndex.build(gpt2, ["a b c"], layers=[0], top_k=1, progress=False)
    good = index.save(tmp_path / "n.idx")
    before = good.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(files, "save_file", broken)  # every result file is written by files.save
    with pytest.raises(OSError, match="disk full"):
        index.save(good)
    assert good.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["n.idx"]
