"""SAE files read exactly as SAELens, sparsify and GemmaScope write them, and written so that they read ours.

Every file here is written by the library's own code (SAELens's ``save_model``, sparsify's ``save_to_disk``,
numpy's ``savez`` for GemmaScope's ``params.npz``) and every reference number is the library's own ``encode``
and ``decode``: the libraries are test dependencies (pyproject.toml, ``test`` extras), never skipped.
"""

import json
import warnings

import numpy as np
import pytest
import torch
from sae_lens import SAE as LensSAE
from sae_lens import (
    GatedSAE,
    GatedSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
)
from sae_lens.saes.sae import SAEMetadata
from sparsify import Sae as SparsifySae
from sparsify import SaeConfig as SparsifyConfig

import llmasos_widgets as lw
from llmasos_widgets.analyses.sae import SAE, load_sae, train_sae

TOL = 1e-4  # the agreement asked of every reading: float32 sums in another order, nothing more
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "大型语言模型的可解释性：理解其工作原理。",
    "Les élèves naïfs mangent une crème brûlée au café 🤖🧠.",
    "Emoji 🎉🚀 and numbers 3.14159 in one line.",
]


@pytest.fixture(scope="module")
def llama():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def acts(llama):
    """Real activations: tiny-llama's residual stream after block 1 on multilingual text, [tokens, 64]."""
    return torch.cat([llama.trace(t).resid_pre(2) for t in TEXTS]).float()


def fill(sae, seed, *, dec_norms=(1.0, 1.0), threshold=None):
    """Seeded weights for a library's SAE module: decoder rows of norm within ``dec_norms``, nonzero biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim == 2 else 0.1))
        W_dec = sae.W_dec  # noqa: N806
        lo, hi = dec_norms
        norms = lo + (hi - lo) * torch.rand(W_dec.shape[0], generator=g)
        W_dec.copy_(torch.nn.functional.normalize(W_dec, dim=1) * norms[:, None])
        if threshold is not None:
            sae.threshold.copy_(
                threshold[0] + (threshold[1] - threshold[0]) * torch.rand(sae.threshold.shape, generator=g)
            )
    return sae


def meta(hook="blocks.1.hook_resid_post"):
    return SAEMetadata(hook_name=hook, model_name="tiny-llama")


def decided_rows(pre, k):
    """Rows whose TopK code is decided: the k-th and (k+1)-th largest ReLU(pre) are ``tol`` apart, or both 0.

    Elsewhere two float32 sums in another order may keep either latent (tests/_numbers.py).
    """
    top = pre.clamp_min(0).topk(k + 1, dim=-1).values
    tol = 1e-5 * max(1e-2, float(pre.abs().max()))  # float32 rounding of a 64-term sum, with room
    return ((top[:, k - 1] - top[:, k]) > tol) | (top[:, k - 1] <= 0)


def agreement(ours, theirs_acts, theirs_decode, x, rows=None):
    """Max |our encode − theirs| and |our decode − theirs| over ``rows`` of ``x``."""
    rows = torch.ones(x.shape[0], dtype=torch.bool) if rows is None else rows
    enc = (ours.encode(x) - theirs_acts)[rows].abs().max().item()
    dec = (ours.decode(ours.encode(x)) - theirs_decode)[rows].abs().max().item()
    return enc, dec


# -- SAELens -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rescale", [True, False])
def test_saelens_topk_with_unnormalised_decoder_agrees_with_saelens(acts, tmp_path, rescale):
    cfg = TopKSAEConfig(d_in=64, d_sae=256, k=8, rescale_acts_by_decoder_norm=rescale, metadata=meta())
    ref = fill(TopKSAE(cfg), seed=1, dec_norms=(0.1, 3.0))  # SAELens's TopK training leaves norms free
    ref.save_model(tmp_path / "topk")
    ours = load_sae(tmp_path / "topk")
    assert (ours.layer, ours.site, ours.k, ours.activation) == (1, "hook_resid_post", 8, "topk")
    with torch.no_grad():
        theirs = ref.encode(acts)
        pre = ref.hook_sae_acts_pre(ref.process_sae_in(acts) @ ref.W_enc + ref.b_enc)
        pre = pre * ref.W_dec.norm(dim=-1) if rescale else pre
        rows = decided_rows(pre, 8)
        assert rows.float().mean() > 0.9
        enc, dec = agreement(ours, theirs, ref.decode(theirs), acts, rows)
    assert enc < TOL * max(1.0, float(theirs.abs().max())) and dec < TOL * max(1.0, float(acts.abs().max()))
    assert ours.meta.get("folded") == ("rescale_acts_by_decoder_norm" if rescale else None)


def test_saelens_jumprelu_with_negative_thresholds_agrees_with_saelens(acts, tmp_path):
    ref = fill(JumpReLUSAE(JumpReLUSAEConfig(d_in=64, d_sae=256, metadata=meta())), seed=2, threshold=(-0.5, 0.5))
    assert (ref.threshold < 0).any()
    ref.save_model(tmp_path / "jump")
    ours = load_sae(tmp_path / "jump")
    with torch.no_grad():
        theirs = ref.encode(acts)
        enc, dec = agreement(ours, theirs, ref.decode(theirs), acts)
    assert float(ours.encode(acts).min()) >= 0  # ReLU first: a negative threshold lets nothing negative through
    assert enc < TOL and dec < TOL * float(acts.abs().max())


@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_saelens_standard_agrees_with_saelens(acts, tmp_path, apply_b_dec):
    cfg = StandardSAEConfig(
        d_in=64, d_sae=256, apply_b_dec_to_input=apply_b_dec, metadata=meta("blocks.2.hook_resid_pre")
    )
    ref = fill(StandardSAE(cfg), seed=3, dec_norms=(0.5, 2.0))
    ref.save_model(tmp_path / "std")
    ours = load_sae(tmp_path / "std")
    assert (ours.layer, ours.activation, ours.apply_b_dec_to_input) == (1, "relu", apply_b_dec)
    with torch.no_grad():
        theirs = ref.encode(acts)
        enc, dec = agreement(ours, theirs, ref.decode(theirs), acts)
    assert enc < TOL * max(1.0, float(theirs.abs().max())) and dec < TOL * float(acts.abs().max())


def test_saelens_mlp_out_sae_reads_the_mlp_site(llama, tmp_path):
    cfg = TopKSAEConfig(d_in=64, d_sae=128, k=4, metadata=meta("blocks.1.hook_mlp_out"))
    fill(TopKSAE(cfg), seed=4).save_model(tmp_path / "mlp")
    sae = load_sae(tmp_path / "mlp", model=llama)
    assert (sae.layer, sae.site, sae.hook_name) == (1, "hook_mlp_out", "blocks.1.hook_mlp_out")
    with pytest.raises(
        ValueError, match="FeatureIndex reads the residual stream, but this SAE reads blocks.1.hook_mlp_out"
    ):
        lw.FeatureIndex.build(llama, sae, TEXTS)
    with pytest.raises(ValueError, match="reads blocks.1.hook_mlp_out .*not layer 2"):
        load_sae(tmp_path / "mlp", layer=2)  # the file says its site: a caller's other layer is refused


def test_saelens_settings_without_an_exact_reading_are_refused_by_name(tmp_path):
    for i, (sae, message) in enumerate(
        [
            (
                StandardSAE(StandardSAEConfig(d_in=8, d_sae=16, normalize_activations="layer_norm", metadata=meta())),
                "normalize_activations='layer_norm'",
            ),
            (
                StandardSAE(
                    StandardSAEConfig(d_in=8, d_sae=16, normalize_activations="constant_norm_rescale", metadata=meta())
                ),
                "normalize_activations='constant_norm_rescale'",
            ),
            (
                TopKSAE(
                    TopKSAEConfig(
                        d_in=8, d_sae=16, k=2, normalize_activations="expected_average_only_in", metadata=meta()
                    )
                ),
                "normalize_activations='expected_average_only_in'.*release list",
            ),
            (GatedSAE(GatedSAEConfig(d_in=8, d_sae=16, metadata=meta())), "'gated' SAE: supported architectures"),
            (
                StandardSAE(StandardSAEConfig(d_in=8, d_sae=16, metadata=meta("blocks.1.attn.hook_z"))),
                "reads 'blocks.1.attn.hook_z'; supported sites",
            ),
        ]
    ):
        sae.save_model(tmp_path / str(i))
        with pytest.raises(ValueError, match=message):
            load_sae(tmp_path / str(i))


# -- sparsify ----------------------------------------------------------------------------------
def sparsify_sae(seed, d_in=64, n=256, k=8):
    torch.manual_seed(seed)  # sparsify initialises from the global generator
    sae = SparsifySae(d_in, SparsifyConfig(k=k, num_latents=n))
    with torch.no_grad():
        sae.encoder.bias.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return sae


def test_sparsify_seeds_and_mlp_hookpoints_are_found_and_agree(acts, tmp_path):
    root = tmp_path / "repo"
    refs = {
        name: sparsify_sae(i) for i, name in enumerate(["layers.1/seed0", "layers.1/seed1", "layers.1.mlp", "layers.0"])
    }
    for name, ref in refs.items():
        ref.save_to_disk(root / name)
    for sae, name in [
        (load_sae(root, hookpoint="layers.1/seed1"), "layers.1/seed1"),
        (load_sae(root / "layers.1/seed0"), "layers.1/seed0"),
        (load_sae(root, hook_name="blocks.1.hook_mlp_out"), "layers.1.mlp"),
        (load_sae(root, layer=0), "layers.0"),
    ]:
        ref = refs[name]
        assert sae.hook_name == (
            "blocks.1.hook_mlp_out" if name.endswith("mlp") else f"blocks.{name[7]}.hook_resid_post"
        )
        with torch.no_grad():
            out = ref.encode(acts)
            theirs = torch.zeros(acts.shape[0], 256).scatter(-1, out.top_indices, out.top_acts)
            rows = decided_rows(out.pre_acts, 8)
            enc = (sae.encode(acts) - theirs)[rows].abs().max().item()
            dec = (sae.decode(sae.encode(acts)) - ref.decode(out.top_acts, out.top_indices))[rows].abs().max().item()
        assert rows.float().mean() > 0.9 and enc < TOL and dec < TOL * float(acts.abs().max()), name
    with pytest.raises(ValueError, match=r"several seeds \(seed0, seed1\): pass hookpoint='layers.1/seed0'"):
        load_sae(root / "layers.1")
    with pytest.raises(ValueError, match=r"several SAEs at layer 1 \(layers.1, layers.1.mlp\)"):
        load_sae(root, layer=1)
    with pytest.raises(ValueError, match="reads blocks.1.hook_mlp_out .*not hook_name='blocks.1.hook_resid_post'"):
        load_sae(root / "layers.1.mlp", hook_name="blocks.1.hook_resid_post")
    sparsify_sae(9).save_to_disk(tmp_path / "attn" / "layers.1.self_attn")
    with pytest.raises(ValueError, match="module 'layers.1.self_attn': supported hookpoints are layers.L"):
        load_sae(tmp_path / "attn" / "layers.1.self_attn")
    sparsify_sae(9).save_to_disk(tmp_path / "mine")  # a name that says nothing: the caller says where
    with pytest.raises(ValueError, match="does not say where it reads .*pass layer= or hook_name="):
        load_sae(tmp_path / "mine")
    assert load_sae(tmp_path / "mine", hook_name="blocks.0.hook_mlp_out").site == "hook_mlp_out"


# -- GemmaScope --------------------------------------------------------------------------------
def gemmascope_params(folder, seed, d=64, n=256):
    g = torch.Generator().manual_seed(seed)
    w = {
        "W_enc": torch.randn(d, n, generator=g) * 0.3,
        "W_dec": torch.randn(n, d, generator=g) * 0.3,
        "b_enc": torch.randn(n, generator=g) * 0.1,
        "b_dec": torch.randn(d, generator=g) * 0.1,
        "threshold": torch.rand(n, generator=g) - 0.5,  # some negative
    }
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **{k: v.numpy() for k, v in w.items()})
    return w


def test_gemmascope_params_agree_with_saelens_jumprelu(acts, tmp_path):
    w = gemmascope_params(tmp_path / "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_71", seed=5)
    sae = load_sae(tmp_path / "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_71/params.npz")
    assert (sae.layer, sae.site, sae.apply_b_dec_to_input) == (1, "hook_resid_post", False)
    # SAELens's GemmaScope loader: a JumpReLU SAE that does not subtract b_dec from its input.
    ref = JumpReLUSAE(JumpReLUSAEConfig(d_in=64, d_sae=256, apply_b_dec_to_input=False))
    ref.load_state_dict(w)
    with torch.no_grad():
        theirs = ref.encode(acts)
        enc, dec = agreement(sae, theirs, ref.decode(theirs), acts)
    pre = acts @ w["W_enc"] + w["b_enc"]  # GemmaScope's tutorial formula
    assert torch.allclose(theirs, torch.relu(pre) * (pre > w["threshold"]), atol=1e-5)
    assert enc < TOL and dec < TOL * float(acts.abs().max())
    gemmascope_params(tmp_path / "gemma-scope-9b-pt-mlp/layer_3/width_16k/average_l0_20", seed=6)
    mlp = load_sae(tmp_path / "gemma-scope-9b-pt-mlp/layer_3/width_16k/average_l0_20")
    assert mlp.hook_name == "blocks.3.hook_mlp_out"
    gemmascope_params(tmp_path / "gemma-scope-2b-pt-att/layer_3/width_16k/average_l0_20", seed=6)
    with pytest.raises(ValueError, match="GemmaScope att SAE"):
        load_sae(tmp_path / "gemma-scope-2b-pt-att/layer_3/width_16k/average_l0_20")
    gemmascope_params(tmp_path / "loose", seed=7)
    with pytest.raises(ValueError, match="does not say where it reads"):
        load_sae(tmp_path / "loose/params.npz")
    assert load_sae(tmp_path / "loose/params.npz", layer=1).hook_name == "blocks.1.hook_resid_post"


# -- the other direction -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(llama):
    texts = lw.sample_texts()[:60]
    return train_sae(llama, texts, layer=1, n_latents=128, k=8, batch_tokens=256, progress=False)


def test_an_sae_trained_here_exports_to_both_libraries(trained, acts, tmp_path):
    assert trained.max_norm is not None  # a setting neither library has
    ours = trained.encode(acts)
    with pytest.warns(UserWarning, match="SAELens has no setting for max_norm="):
        folder = trained.save(tmp_path / "lens", format="saelens")
    lens = LensSAE.load_from_disk(folder)
    with pytest.warns(UserWarning, match="sparsify has no setting for max_norm="):
        folder = trained.save(tmp_path / "sp", format="sparsify")
    assert folder.name == "layers.1"
    sp = SparsifySae.load_from_disk(folder)
    with torch.no_grad():
        pre = trained.pre_acts(acts)
        rows = decided_rows(pre, 8)
        out = sp.encode(acts)
        sp_dense = torch.zeros_like(ours).scatter(-1, out.top_indices, out.top_acts)
        assert rows.float().mean() > 0.9
        assert (lens.encode(acts) - ours)[rows].abs().max() < TOL
        assert (sp_dense - ours)[rows].abs().max() < TOL
        assert (lens.decode(ours) - trained.decode(ours)).abs().max() < TOL
    for back in (load_sae(tmp_path / "lens"), load_sae(tmp_path / "sp")):  # and ours reads them, settings too
        assert (back.layer, back.k, back.max_norm, back.skip_first) == (1, 8, trained.max_norm, trained.skip_first)
        assert torch.allclose(back.encode(acts), ours, atol=1e-5)


def test_export_keeps_the_maths_where_the_library_lacks_a_setting(acts, tmp_path):
    sae = SAE.random(64, 128, 8, layer=0)
    sae.b_dec = torch.randn(64, generator=torch.Generator().manual_seed(1)) * 0.5
    sae.apply_b_dec_to_input = False  # sparsify always subtracts b_dec: the encoder bias carries it instead
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no setting is lost: no warning
        sp = SparsifySae.load_from_disk(sae.save(tmp_path / "sp", format="sparsify"))
    with torch.no_grad():
        out = sp.encode(acts)
        rows = decided_rows(sae.pre_acts(acts), 8)
        dense = torch.zeros(acts.shape[0], 128).scatter(-1, out.top_indices, out.top_acts)
    assert (dense - sae.encode(acts))[rows].abs().max() < TOL
    jump = SAE(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 1, activation="jumprelu", threshold=torch.full((128,), -0.1))
    lens = LensSAE.load_from_disk(jump.save(tmp_path / "jump", format="saelens"))
    with torch.no_grad():
        assert (lens.encode(acts) - jump.encode(acts)).abs().max() < TOL
    assert json.loads((tmp_path / "jump/cfg.json").read_text())["architecture"] == "jumprelu"
    with pytest.raises(ValueError, match="sparsify has TopK SAEs only, and this one is jumprelu"):
        jump.save(tmp_path / "j2", format="sparsify")
    with pytest.raises(
        ValueError, match="unknown SAE file format 'gguf': use one of llmasos_widgets, saelens, sparsify"
    ):
        jump.save(tmp_path / "j3", format="gguf")


def test_an_mlp_out_sae_is_measured_at_the_mlp_output(llama):
    from llmasos_widgets.core.corpus import text_corpus
    from llmasos_widgets.core.hooks import read

    sae = SAE.random(64, 128, 8, layer=1, site="hook_mlp_out")
    q = sae.evaluate(llama, TEXTS)
    # By hand: each piece alone, the MLP's output read by a plain hook, the fraction of variance explained.
    pieces, _, _ = text_corpus(llama, TEXTS, 16, 256, "measure")
    with torch.no_grad():
        x = torch.cat(
            [
                read(llama, ["blocks.1.hook_mlp_out"], input_ids=torch.tensor([ids]))["blocks.1.hook_mlp_out"][0]
                for _, ids in pieces
            ]
        ).double()
        err = x - sae.reconstruct(x.float()).reconstruction.double()
    assert q.tokens == x.shape[0]
    assert abs(q.variance_explained - (1 - err.pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()) < 1e-4
