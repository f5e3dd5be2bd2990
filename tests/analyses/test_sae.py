import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import llmasos_widgets as lw
from llmasos_widgets.analyses import sae as sae_mod
from llmasos_widgets.analyses.sae import SAE, TopK, load_sae, train_sae
from llmasos_widgets.analyses.sae import cache as sae_cache
from llmasos_widgets.analyses.sae import training as sae_training
from tests._numbers import topk_relu, undecided_topk

TEXTS = lw.sample_texts()[:300]


@pytest.fixture(scope="module")
def llama():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def gpt2():
    return lw.load_model("tiny-gpt2")


def random_sae(d_model=64, n_latents=128, k=8, layer=1, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return SAE(
        torch.randn(d_model, n_latents, generator=g) / math.sqrt(d_model),
        torch.randn(n_latents, generator=g) * 0.1,
        torch.nn.functional.normalize(torch.randn(n_latents, d_model, generator=g), dim=1),
        torch.randn(d_model, generator=g) * 0.1,
        layer,
        k,
        **kw,
    )


def topk_by_hand(x, W_enc, b_enc, b_dec, k):  # noqa: N803
    """TopK(ReLU((x − b_dec) W_enc + b_enc)), one row at a time in numpy."""
    x, W_enc, b_enc, b_dec = (t.double().numpy() for t in (x, W_enc, b_enc, b_dec))  # noqa: N806
    out = np.zeros((x.shape[0], W_enc.shape[1]))
    for i, row in enumerate(x):
        pre = np.maximum((row - b_dec) @ W_enc + b_enc, 0)
        keep = np.argsort(-pre)[:k]
        out[i, keep] = pre[keep]
    return torch.from_numpy(out)


def codes_by_hand(sae, x, got, atol=1e-5):
    """The by-hand TopK code of ``x`` checked against ``got`` (the SAE's own, dense) and returned (float64).

    A pre-activation within rounding of its row's k-th largest, or of 0, is kept or not as ``got`` has it: the
    float32 encoder and the float64 sum here may break such a near-tie either way (tests/_numbers.py, topk_relu).
    """
    pre = (x.double() - sae.b_dec.double()) @ sae.W_enc.double() + sae.b_enc.double()
    return topk_relu(pre, sae.k, got, tol=1e-5 * max(1.0, float(pre.abs().max())), atol=atol)


def inputs(n, d=64, seed=0):
    """Activations to encode: seeded, so a test sees the same numbers whichever tests ran before it."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


# -- the maths ----------------------------------------------------------------------------------
def test_encode_is_topk_of_relu_computed_by_hand():
    sae = random_sae()
    x = inputs(20)
    dense = sae.encode(x)
    codes_by_hand(sae, x, dense)  # TopK(ReLU) in float64, up to near-ties at the k-th largest
    assert ((dense > 0).sum(-1) <= sae.k).all()
    codes = sae.encode(x, sparse=True)
    assert isinstance(codes, TopK) and codes.values.shape == (20, sae.k)
    assert torch.allclose(torch.zeros(20, 128).scatter(-1, codes.indices, codes.values), dense)


def test_decode_and_error_term_by_formula():
    sae = random_sae()
    x = inputs(7, seed=1)
    r = sae.reconstruct(x)
    acts = codes_by_hand(sae, x, r.acts).float()  # r.acts is TopK(ReLU) by hand, near-ties aside
    by_hand = acts @ sae.W_dec + sae.b_dec
    assert torch.allclose(r.reconstruction, by_hand, atol=1e-5)
    assert torch.allclose(sae.decode(acts), by_hand, atol=1e-5)
    # error = x - reconstruction in float32: adding it back gives x up to one rounding per element.
    torch.testing.assert_close(r.reconstruction + r.error, x, rtol=0, atol=1e-6)


def test_relu_and_jumprelu_activations():
    sae = random_sae(k=None, activation="relu")
    x = inputs(5, seed=2)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    assert torch.allclose(sae.encode(x), pre.clamp_min(0), atol=1e-6)
    threshold = torch.full((128,), 0.3)
    jump = random_sae(k=None, activation="jumprelu", threshold=threshold)
    # A pre-activation within rounding of the threshold may pass it or not (this product and the SAE's own may
    # round differently): there the code is 0 or the pre-activation; everywhere else it is decided.
    near = (pre - 0.3).abs() <= 1e-5
    got = jump.encode(x)
    assert torch.allclose(got[~near], (pre * (pre > 0.3))[~near], atol=1e-6)
    assert ((got[near] == 0) | ((got[near] - pre[near]).abs() <= 1e-6)).all()
    codes = jump.encode(x, sparse=True)
    assert torch.allclose(jump.decode(codes), jump.decode(jump.encode(x)), atol=1e-5)


def test_a_trace_is_encoded_at_the_sae_layer(llama):
    trace = llama.trace("The capital of France is Paris.")
    sae = random_sae(layer=0)
    assert sae.hook_name == "blocks.0.hook_resid_post"
    assert torch.equal(sae.encode(trace), sae.encode(trace["blocks.0.hook_resid_post"]))
    with pytest.raises(ValueError, match="reads 32-wide activations but tiny-llama's residual stream is 64 wide"):
        random_sae(d_model=32).encode(trace)


# -- quality ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_quality_matches_fvu_and_hf_loss_computed_by_hand(name):
    model = lw.load_model(name)
    texts = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France.", "Hello there"]
    sae = random_sae(layer=0, seed=3)
    q = sae.evaluate(model, texts)
    # The figures below count codes (L0, dead latents) and sum errors by hand, exactly as TopK decides them. The
    # maths decides every code here: no pre-activation is within rounding of its token's k-th largest, and none
    # of the k largest is within rounding of 0 (if one were, evaluate, which runs the texts in its own batches,
    # could keep it or not).
    for text in texts:
        x = model.trace(text).resid_pre(1)
        pre = (x.double() - sae.b_dec.double()) @ sae.W_enc.double() + sae.b_enc.double()
        assert not undecided_topk(pre, sae.k, tol=1e-4).any(), "a code on the edge: choose another seed"
    xs, errs, ce_clean, ce_sae, n_pred, fired, l0 = [], [], 0.0, 0.0, 0, set(), 0
    hf = model.model
    for text in texts:
        trace = model.trace(text)
        x = trace.resid_pre(1)  # after block 0
        acts = topk_by_hand(x, sae.W_enc, sae.b_enc, sae.b_dec, sae.k).float()
        recon = acts @ sae.W_dec + sae.b_dec
        xs.append(x)
        errs.append(x - recon)
        fired |= set(acts.nonzero()[:, 1].tolist())
        l0 += int((acts > 0).sum())
        ids = torch.tensor([trace.token_ids])
        with torch.no_grad():
            ce_clean += float(hf(ids, labels=ids).loss) * (len(ids[0]) - 1)

            def swap(module, args, output, recon=recon):
                if isinstance(output, tuple):
                    return (recon[None], *output[1:])
                return recon[None]

            handle = lw_block(model, 0).register_forward_hook(swap)
            try:
                ce_sae += float(hf(ids, labels=ids).loss) * (len(ids[0]) - 1)
            finally:
                handle.remove()
        n_pred += len(ids[0]) - 1
    x, e = torch.cat(xs).double(), torch.cat(errs).double()
    fvu = float(e.pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert q.fvu == pytest.approx(fvu, rel=1e-4)
    assert q.variance_explained == pytest.approx(1 - fvu, rel=1e-4)
    assert q.tokens == x.shape[0] and q.mean_l0 == pytest.approx(l0 / x.shape[0])
    assert q.n_dead == 128 - len(fired) and q.dead_share == pytest.approx(q.n_dead / 128)
    assert q.ce_clean == pytest.approx(ce_clean / n_pred, rel=1e-4)
    assert q.ce_sae == pytest.approx(ce_sae / n_pred, rel=1e-4)
    assert q.ce_increase == pytest.approx((ce_sae - ce_clean) / n_pred, abs=1e-4)
    assert sae.quality is q and "variance explained" in str(q)


def lw_block(model, layer):
    return model.adapter.blocks()[layer]


def test_skip_first_leaves_the_first_position_out(llama):
    sae = random_sae(layer=0, skip_first=1)
    texts = ["one two three four", "five six seven"]
    q = sae.evaluate(llama, texts)
    n = sum(len(llama.trace(t)) - 1 for t in texts)
    assert q.tokens == n


# -- training -----------------------------------------------------------------------------------
def test_training_recovers_a_planted_dictionary():
    # Activations made of 3 atoms of a known dictionary each: a TopK SAE should find the atoms.
    g = torch.Generator().manual_seed(0)
    d, n_true, k = 16, 24, 3
    atoms = torch.nn.functional.normalize(torch.randn(n_true, d, generator=g), dim=1)
    n = 30000
    which = torch.stack([torch.randperm(n_true, generator=g)[:k] for _ in range(n)])
    coefs = torch.rand(n, k, generator=g) * 2 + 0.5
    data = (coefs[..., None] * atoms[which]).sum(1) + 3.0  # an offset for b_dec to find
    s = sae_training._Settings(0, 48, k, 0, 1, 3e-3, 50, 256, n, 2000, "mean", 0, None)
    trainer = sae_training._Trainer(s, d, torch.device("cpu"), total_steps=4 * (n // 256))
    trainer.init_b_dec(data)
    for epoch in range(4):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for m in range(n // 256):
            fvu, _ = trainer.train_step(data[perm[m * 256 : (m + 1) * 256]])
    learned = trainer.sae({}, None).W_dec
    cos = (atoms @ learned.T).max(1).values
    # 48 random unit vectors in 16 dimensions come within about 0.7 of an atom; training, within 0.85 of all.
    assert cos.min() > 0.85 and cos.median() > 0.95, cos
    assert fvu < 0.15  # an untrained SAE of this shape leaves about 0.9


def test_train_sae_is_seeded_and_reports_quality(llama):
    kw = dict(n_latents=128, k=8, batch_tokens=256, epochs=2, progress=False)
    a = train_sae(llama, TEXTS, layer=1, seed=1, **kw)
    b = train_sae(llama, TEXTS, layer=-1, seed=1, **kw)
    c = train_sae(llama, TEXTS, layer=1, seed=2, **kw)
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, c.W_dec)
    assert a.layer == 1 and a.k == 8 and a.skip_first == 0
    assert torch.allclose(a.W_dec.norm(dim=1), torch.ones(128), atol=1e-5)  # unit decoder rows
    assert a.quality.variance_explained > 0.5 and a.quality.mean_l0 <= 8
    train = a.meta["train"]
    assert train["finished"] and train["steps"] == train["total_steps"] > 0
    assert train["tokens_per_second"] > 0 and a.meta["fingerprint"]["model"] == "tiny-llama"


def test_training_resumes_from_its_checkpoint_exactly(llama, tmp_path):
    kw = dict(n_latents=64, k=4, batch_tokens=256, buffer_tokens=2000, epochs=2, progress=False)
    straight = train_sae(llama, TEXTS, layer=0, **kw)
    ckpt = tmp_path / "run.ckpt"
    part = train_sae(llama, TEXTS, layer=0, checkpoint=ckpt, max_steps=7, **kw)
    assert part.meta["train"]["steps"] == 7 and not part.meta["train"]["finished"]
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # no temporary file left
    resumed = train_sae(llama, TEXTS, layer=0, checkpoint=ckpt, **kw)
    assert resumed.meta["train"]["finished"]
    assert torch.allclose(resumed.W_dec, straight.W_dec, atol=1e-6)
    assert torch.allclose(resumed.b_enc, straight.b_enc, atol=1e-6)
    again = train_sae(llama, TEXTS, layer=0, checkpoint=ckpt, **kw)  # finished: returns at once
    assert torch.equal(again.W_dec, resumed.W_dec)
    with pytest.raises(ValueError, match="written by another training run .*k: checkpoint 4 vs now 8"):
        train_sae(llama, TEXTS, layer=0, checkpoint=ckpt, **{**kw, "k": 8})


def test_bad_training_input_is_a_clear_error(llama):
    with pytest.raises(ValueError, match="layer 5 is out of range: tiny-llama has layers 0..1"):
        train_sae(llama, TEXTS, layer=5, progress=False)
    with pytest.raises(ValueError, match="the corpus is empty"):
        train_sae(llama, [], layer=0, progress=False)
    with pytest.raises(ValueError, match="not a single str"):
        train_sae(llama, "one text", layer=0, progress=False)
    with pytest.raises(ValueError, match="all 2 texts are empty"):
        train_sae(llama, ["", "  "], layer=0, progress=False)
    with pytest.raises(ValueError, match="too small to train an SAE: .* give at least 1024"):
        train_sae(llama, TEXTS[:10], layer=0, progress=False)
    with pytest.raises(ValueError, match="k must be an int from 1 to 64"):
        train_sae(llama, TEXTS, layer=0, n_latents=64, k=100, progress=False)


def test_massive_tokens_are_left_out_of_training_and_of_the_quality_figures(llama):
    # Tiny-llama has no massive activations; a ratio just above 1 makes about half its tokens "massive".
    kw = dict(n_latents=64, k=4, batch_tokens=256, epochs=1, progress=False)
    sae = train_sae(llama, TEXTS, layer=1, massive_ratio=1.05, **kw)
    x = torch.cat([llama.trace(t).resid_pre(2) for t in TEXTS[:20]])
    norms = x.norm(dim=-1)
    share = float((norms > sae.max_norm).float().mean())
    assert 0.1 < share < 0.9, share
    assert sae.meta["train"]["massive_left_out"] > 0
    q = sae.evaluate(llama, TEXTS[:20])
    # evaluate computes the norms in its own batches: a norm within rounding of max_norm may count either way.
    on_edge = int(((norms - sae.max_norm).abs() <= 1e-5 * sae.max_norm).sum())
    assert abs(q.massive - int((norms > sae.max_norm).sum())) <= on_edge and q.tokens + q.massive == len(norms)
    # The same figure by hand over the tokens it reads only.
    read = x[norms <= sae.max_norm]
    err = sae.reconstruct(read).error
    if not on_edge:  # (with a token on the edge the figure is over a set of tokens the maths leaves open)
        assert q.fvu == pytest.approx(float(err.pow(2).sum() / (read - read.mean(0)).pow(2).sum()), rel=1e-4)
    assert "massive ones left out" in str(q)
    keep_all = train_sae(llama, TEXTS, layer=1, massive_ratio=None, **kw)
    assert keep_all.max_norm is None and keep_all.evaluate(llama, TEXTS[:20]).massive == 0
    with pytest.raises(ValueError, match="massive_ratio must be a number above 1"):
        train_sae(llama, TEXTS, layer=1, massive_ratio=0.5, **kw)


def test_reads_combines_skip_first_and_max_norm_and_survives_a_file(tmp_path):
    sae = random_sae(d_model=4, n_latents=8, k=2, skip_first=1, max_norm=5.0)
    x = torch.tensor([[[1.0, 0, 0, 0], [9, 0, 0, 0], [1, 1, 0, 0]], [[0, 0, 0, 1], [0, 0, 2, 0], [0, 6, 0, 0]]])
    assert sae.reads(x).tolist() == [[False, False, True], [False, True, False]]
    back = SAE.load(sae.save(tmp_path / "s.sae"))
    assert back.max_norm == 5.0 and back.reads(x).tolist() == sae.reads(x).tolist()


def test_the_first_position_is_skipped_only_where_it_is_massive(llama):
    assert not sae_mod.massive_first_position(llama)


# -- files --------------------------------------------------------------------------------------
def test_save_and_load_round_trip_with_quality_and_fingerprint(llama, gpt2, tmp_path):
    sae = train_sae(llama, TEXTS, layer=1, n_latents=64, k=4, batch_tokens=256, progress=False)
    path = sae.save(tmp_path / "s.sae")
    back = load_sae(path, model=llama)
    assert torch.equal(back.W_enc, sae.W_enc) and back.quality == sae.quality
    assert back.meta["fingerprint"] == sae.meta["fingerprint"]
    half = SAE.load(sae.save(tmp_path / "h.sae", dtype=torch.float16))
    assert half.dtype == torch.float16 and (tmp_path / "h.sae").stat().st_size < path.stat().st_size * 0.6
    x = inputs(3, seed=5)
    assert torch.allclose(half.reconstruct(x).reconstruction.float(), sae.reconstruct(x).reconstruction, atol=0.05)
    with pytest.raises(ValueError, match="made for another model"):
        SAE.load(path, model=lw.load_model("tiny-bert"))  # same width, other vocabulary


def test_truncated_corrupt_and_unknown_files_are_clear_errors(llama, tmp_path):
    path = random_sae().save(tmp_path / "s.sae")
    data = path.read_bytes()
    (tmp_path / "cut.sae").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.sae is not a readable sparse autoencoder"):
        load_sae(tmp_path / "cut.sae")
    (tmp_path / "text.sae").write_text("hello")
    with pytest.raises(ValueError, match="not an SAE this package reads .*sparsify folder.*SAELens folder"):
        load_sae(tmp_path / "text.sae")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="a safetensors file of another format"):
        load_sae(tmp_path / "other.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no SAE"):
        load_sae(tmp_path / "empty")
    with pytest.raises(ValueError, match="no SAE at 'nowhere.sae'"):
        load_sae("nowhere.sae")
    with pytest.raises(ValueError, match="reads 32-wide activations"):
        load_sae(random_sae(d_model=32).save(tmp_path / "w.sae"), model=llama)
    with pytest.raises(ValueError, match="layer 7 is out of range: tiny-llama has layers 0..1"):
        load_sae(random_sae(layer=7).save(tmp_path / "l.sae"), model=llama)


def test_offline_hub_id_and_missing_shipped_sae_are_clear_errors(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="could not download the SAE 'EleutherAI/sae-SmolLM2-135M-64x'.*Offline"):
        load_sae("EleutherAI/sae-SmolLM2-135M-64x", layer=12)
    with pytest.raises(ValueError, match="no shipped SAE for 'smollm2-135m' at layer 99"):
        load_sae("smollm2-135m", layer=99)


def sparsify_folder(root, sae, layer, **cfg):
    folder = root / f"layers.{layer}"
    folder.mkdir(parents=True)
    tensors = {
        "encoder.weight": sae.W_enc.T.contiguous(),
        "encoder.bias": sae.b_enc,
        "W_dec": sae.W_dec,
        "b_dec": sae.b_dec,
    }
    save_file(tensors, str(folder / "sae.safetensors"))
    config = {"activation": "topk", "expansion_factor": 2, "normalize_decoder": True, "num_latents": 0, "k": sae.k}
    config.update(d_in=sae.d_model, **cfg)
    (folder / "cfg.json").write_text(json.dumps(config))
    return folder


def test_sparsify_layout_written_here_loads_back(llama, tmp_path):
    ref = random_sae(d_model=64, n_latents=128, k=8, layer=0)
    sparsify_folder(tmp_path / "repo", ref, 0)
    sparsify_folder(tmp_path / "repo", random_sae(layer=1, seed=5), 1)
    x = inputs(6, seed=3)
    for sae in (
        load_sae(tmp_path / "repo", layer=0, model=llama),
        load_sae(tmp_path / "repo", hookpoint="layers.0"),
        load_sae(tmp_path / "repo/layers.0"),
        load_sae(tmp_path / "repo/layers.0/sae.safetensors"),
    ):
        assert sae.layer == 0 and sae.k == 8 and sae.n_latents == 128
        codes_by_hand(ref, x, sae.encode(x))  # the weights written, read back: the written SAE's codes
    with pytest.raises(
        ValueError, match=r"several hookpoints \(layers.0, layers.1\): pass layer=, hook_name= or hookpoint="
    ):
        load_sae(tmp_path / "repo")
    with pytest.raises(ValueError, match="no SAE for layer 5; it has layers.0, layers.1"):
        load_sae(tmp_path / "repo", layer=5)
    # A truncated weights file, a transcoder, and a config that disagrees with the weights.
    bad = sparsify_folder(tmp_path / "bad", ref, 0)
    data = (bad / "sae.safetensors").read_bytes()
    (bad / "sae.safetensors").write_bytes(data[:100])
    with pytest.raises(ValueError, match="not a readable sparsify weights file"):
        load_sae(bad)
    tc = sparsify_folder(tmp_path / "tc", ref, 0, transcode=True)
    with pytest.raises(ValueError, match="transcoder"):
        load_sae(tc)
    wide = sparsify_folder(tmp_path / "wide", ref, 0, num_latents=256)
    with pytest.raises(ValueError, match=r"encoder.weight is \[128, 64\] but cfg.json says \[256, 64\]"):
        load_sae(wide)


def saelens_folder(folder, sae, cfg):
    folder.mkdir(parents=True)
    tensors = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    if sae.threshold is not None:
        tensors["threshold"] = sae.threshold
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"d_in": sae.d_model, "d_sae": sae.n_latents, **cfg}))
    return folder


def test_saelens_layouts_written_here_load_back(llama, tmp_path):
    ref = random_sae(layer=1)
    x = inputs(6, seed=4)
    v6 = {"architecture": "topk", "k": 8, "apply_b_dec_to_input": True, "dtype": "float32"}
    v6["metadata"] = {"hook_name": "blocks.1.hook_resid_post", "model_name": "tiny-llama"}
    sae = load_sae(saelens_folder(tmp_path / "v6", ref, v6), model=llama)
    assert sae.layer == 1 and sae.k == 8
    codes_by_hand(ref, x, sae.encode(x))  # the weights written, read back: the written SAE's codes
    old = {"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 8}}
    old["hook_name"] = "blocks.2.hook_resid_pre"  # the same tensor as blocks.1.hook_resid_post
    sae = load_sae(saelens_folder(tmp_path / "old", ref, old))
    assert sae.layer == 1
    codes_by_hand(ref, x, sae.encode(x))
    relu = {"architecture": "standard", "hook_name": "blocks.0.hook_resid_post", "apply_b_dec_to_input": False}
    sae = load_sae(saelens_folder(tmp_path / "relu", random_sae(k=None, activation="relu"), relu))
    pre = x @ sae.W_enc + sae.b_enc  # no b_dec subtracted
    assert sae.activation == "relu" and torch.allclose(sae.encode(x), pre.clamp_min(0), atol=1e-5)
    jump = random_sae(k=None, activation="jumprelu", threshold=torch.full((128,), 0.2))
    sae = load_sae(
        saelens_folder(tmp_path / "jump", jump, {"architecture": "jumprelu", "hook_name": "blocks.1.hook_resid_post"})
    )
    assert torch.allclose(sae.encode(x), jump.encode(x))
    for cfg, message in (
        (
            {"architecture": "gated", "hook_name": "blocks.1.hook_resid_post"},
            "supported architectures are standard, topk",
        ),
        ({"architecture": "topk", "hook_name": "blocks.1.hook_resid_post"}, "gives no k"),
        ({"architecture": "topk", "k": 8, "hook_name": "blocks.0.hook_resid_pre"}, "supported sites are"),
        (
            {
                "architecture": "topk",
                "k": 8,
                "hook_name": "blocks.1.hook_resid_post",
                "normalize_activations": "layer_norm",
            },
            "normalize_activations='layer_norm': not supported",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            load_sae(saelens_folder(tmp_path / f"bad{len(list(tmp_path.iterdir()))}", ref, cfg))
    wrong_width = saelens_folder(tmp_path / "w32", random_sae(d_model=32), v6)
    with pytest.raises(ValueError, match="reads 32-wide activations but tiny-llama's residual stream is 64 wide"):
        load_sae(wrong_width, model=llama)


# -- activation caches --------------------------------------------------------------------------
def test_the_cache_equals_the_hooked_activations_of_every_layer(llama, tmp_path):
    texts = [*TEXTS[:12], "word " * 40]
    cache = sae_mod.cache_activations(llama, texts, [1, 0], tmp_path / "c", max_tokens=32, batch_size=5,
                                      dtype=torch.float32, progress=False)  # fmt: skip
    assert cache.layers == [0, 1] and cache.complete
    assert cache.n_tokens == sum(len(p) for _, p in cache.pieces)
    assert [len(p) for t, p in cache.pieces if t == 12] == [32, 32, 18]  # split as train_sae splits it
    half = sae_mod.cache_activations(llama, texts, [0, 1], tmp_path / "h", max_tokens=32, progress=False)
    whole = [t for t in range(len(texts)) if sum(u == t for u, _ in cache.pieces) == 1]
    assert whole  # texts of one piece compare with the model's own trace
    for i, (t, ids) in enumerate(cache.pieces):
        trace = llama.trace(texts[t]) if t in whole else None
        for layer in (0, 1):
            # A text's trace, or for a piece of a split text a forward of that piece alone.
            want = (
                trace.resid_pre(layer + 1)
                if trace
                else sae_mod.quality.layer_activations(llama, layer, [(t, ids)], 0)[0][0]
            )
            assert torch.allclose(cache.piece(layer, i), want, atol=1e-5)
            assert torch.allclose(half.piece(layer, i), want.half().float(), atol=1e-3 * float(want.abs().max()))
    assert (tmp_path / "h" / "layer0.bin").stat().st_size == half.n_tokens * 64 * 2  # float16 on disk
    with pytest.raises(ValueError, match="holds layers \\[0, 1\\], not layer 5"):
        cache.piece(5, 0)


def test_training_from_the_cache_gives_the_same_sae_as_from_texts(llama, tmp_path):
    kw = dict(n_latents=64, k=4, batch_tokens=256, buffer_tokens=2000, epochs=2, seed=3, batch_size=1, progress=False)
    from_texts = train_sae(llama, TEXTS, layer=1, **kw)
    # One forward pass per batch fills both layers; batch_size=1 makes the forward passes the same ones.
    cache = sae_mod.cache_activations(llama, TEXTS, [0, 1], tmp_path / "c", batch_size=1, dtype=torch.float32,
                                      progress=False)  # fmt: skip
    from_cache = train_sae(llama, cache, layer=1, **kw)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(from_cache, name), getattr(from_texts, name)), name
    assert from_cache.quality == from_texts.quality
    assert from_cache.meta["train"]["activations"].startswith("cache ")
    # float16 storage (the default) rounds the activations: nearly the same SAE, the same quality.
    half = sae_mod.cache_activations(llama, TEXTS, [1], tmp_path / "h", progress=False)
    rounded = train_sae(llama, half, layer=1, **kw)
    assert abs(rounded.quality.variance_explained - from_texts.quality.variance_explained) < 0.01
    assert float((rounded.W_dec * from_texts.W_dec).sum(1).median()) > 0.99


def test_a_cache_fill_resumes_and_refuses_other_settings(llama, tmp_path, monkeypatch):
    folder = tmp_path / "c"
    straight = sae_mod.cache_activations(llama, TEXTS[:40], [0], tmp_path / "s", batch_size=4, progress=False)
    calls = {"n": 0}
    real = sae_cache.forward_to

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sae_cache, "forward_to", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sae_mod.cache_activations(llama, TEXTS[:40], [0], folder, batch_size=4, flush_every=3, progress=False)
    part = sae_mod.ActivationCache(folder)
    assert part.done_batches == 6 and not part.complete
    with pytest.raises(ValueError, match="incomplete .*6 of 10 batches"):
        train_sae(llama, part, layer=0, progress=False)
    monkeypatch.setattr(sae_cache, "forward_to", real)
    calls["n"] = 0
    done = sae_mod.cache_activations(llama, TEXTS[:40], [0], folder, batch_size=4, flush_every=3, progress=False)
    assert done.complete
    assert all(torch.equal(done.piece(0, i), straight.piece(0, i)) for i in range(len(done.pieces)))
    assert sorted(p.name for p in folder.iterdir()) == ["index.safetensors", "layer0.bin"]  # no temporary file
    with pytest.raises(ValueError, match="made from other settings .*layers: cache \\[0\\] vs now \\[1\\]"):
        sae_mod.cache_activations(llama, TEXTS[:40], [1], folder, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="made from other settings"):
        sae_mod.cache_activations(llama, TEXTS[1:41], [0], folder, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="made by another model"):
        train_sae(lw.load_model("tiny-gpt2"), done, layer=0, progress=False)
    with pytest.raises(ValueError, match="holds layers \\[0\\], not layer 1"):
        train_sae(llama, done, layer=1, progress=False)
    with pytest.raises(ValueError, match="is not an activation cache"):
        sae_mod.ActivationCache(tmp_path)


def test_massive_first_position_honours_its_ratio_on_every_call(llama):
    # It cached the first call's answer on the model, so a later ratio was ignored; and its default
    # (20) was not the one rule for massive activations (MASSIVE_RATIO, 10).
    import inspect

    assert inspect.signature(sae_mod.massive_first_position).parameters["ratio"].default == sae_mod.MASSIVE_RATIO
    assert not sae_mod.massive_first_position(llama)
    assert sae_mod.massive_first_position(llama, ratio=1e-3)  # any first position is above a tiny ratio
    assert not sae_mod.massive_first_position(llama)
    with pytest.raises(ValueError, match="ratio must be a positive number"):
        sae_mod.massive_first_position(llama, ratio=0)
