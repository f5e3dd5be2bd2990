"""attribute(): equal to captum called directly, IG completeness, generation matrices, bad input."""

import warnings

import pytest
import torch
from captum.attr import (
    FeatureAblation,
    InputXGradient,
    IntegratedGradients,
    LayerIntegratedGradients,
    LLMAttribution,
    LLMGradientAttribution,
    Saliency,
    ShapleyValueSampling,
    TextTokenInput,
)

import llmasos_widgets as lw
from llmasos_widgets.analyses.attribution import attribute
from tests._numbers import assert_ranked

TEXT = "The capital of France is"


@pytest.fixture(scope="module")
def llama():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def gpt2():
    return lw.load_model("tiny-gpt2")


def token_input(model, ids):
    """captum's TextTokenInput over exact ids (re-tokenizing decoded text could change them)."""
    inp = TextTokenInput("x", model.tokenizer, baselines=model.tokenizer.eos_token_id)
    inp.inp_tensor = inp.itp_tensor = torch.tensor([ids])
    inp.values = [model.decode_token(i) for i in ids]
    inp.n_itp_features = len(ids)
    return inp


def captum_ig(model, ids, target, n_steps, layer=None):
    module = model.model.get_input_embeddings() if layer is None else model.adapter.blocks()[layer]
    llm = LLMGradientAttribution(LayerIntegratedGradients(model.model, module), model.tokenizer)
    return llm.attribute(token_input(model, ids), target=target, n_steps=n_steps).token_attr


def captum_layer_ig(model, ids, target_id, n_steps):
    """captum's LayerIntegratedGradients on the embedding layer, with a plain forward function."""

    def forward(input_ids):
        return torch.log_softmax(model.model(input_ids).logits[:, -1], -1)[:, target_id]

    lig = LayerIntegratedGradients(forward, model.model.get_input_embeddings())
    base = torch.full((1, len(ids)), model.tokenizer.eos_token_id)
    return lig.attribute(torch.tensor([ids]), base, n_steps=n_steps)[0].sum(-1)


def close(ours, ref, rel=1e-4):
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= rel * max(ref.abs().max(), 1e-6), (ours, ref)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_integrated_gradients_equal_captum_llm_gradient_attribution(name):
    model = lw.load_model(name)
    res = attribute(model, TEXT, target=" Paris", n_steps=16, progress=False)
    ids = model.tokenizer.encode(TEXT)
    close(res.scores, captum_ig(model, ids, " Paris", 16))
    assert res.tokens == [model.decode_token(i) for i in ids] and res.target_tokens == [" Paris"]


def test_multi_token_target_has_one_row_per_token_like_captum(llama):
    target = " Paris and Rome"
    res = attribute(llama, TEXT, target=target, n_steps=8, progress=False)
    assert res.scores.shape[0] == len(llama.tokenizer.encode(target)) > 1
    close(res.scores, captum_ig(llama, llama.tokenizer.encode(TEXT), target, 8))


def test_layer_integrated_gradients_equal_captum_at_a_block(llama):
    res = attribute(
        llama, TEXT, target=" Paris and", method="layer_integrated_gradients", layer=0, n_steps=8, progress=False
    )
    close(res.scores, captum_ig(llama, llama.tokenizer.encode(TEXT), " Paris and", 8, layer=0))


def embeds_forward(model, target_id, contrast_id=None):
    def forward(embeds):
        logits = model.model(inputs_embeds=embeds).logits[:, -1]
        logp = torch.log_softmax(logits, -1)
        out = logp[:, target_id]
        return out - logp[:, contrast_id] if contrast_id is not None else out

    return forward


def test_saliency_and_input_x_gradient_equal_captum(gpt2):
    ids = gpt2.tokenizer.encode(TEXT)
    x = gpt2.model.get_input_embeddings()(torch.tensor([ids])).detach()
    target = gpt2.tokenizer.encode(" Paris")[0]
    f = embeds_forward(gpt2, target)
    sal = attribute(gpt2, TEXT, target=" Paris", method="saliency", progress=False)
    close(sal.scores, Saliency(f).attribute(x, abs=True).sum(-1))
    ixg = attribute(gpt2, TEXT, target=" Paris", method="input_x_gradient", progress=False)
    close(ixg.scores, InputXGradient(f).attribute(x).sum(-1))


def test_contrast_equals_captum_ig_on_the_logit_difference(llama):
    he, nurse = (llama.tokenizer.encode(t)[0] for t in (" he", " nurse"))
    text = "The doctor said that"
    res = attribute(llama, text, target=" nurse", contrast=" he", baseline="mean", n_steps=16, progress=False)
    ids = llama.tokenizer.encode(text)
    emb = llama.model.get_input_embeddings()
    x = emb(torch.tensor([ids])).detach()
    base = emb.weight.detach().mean(0).expand_as(x)
    ref = IntegratedGradients(embeds_forward(llama, nurse, he)).attribute(x, base, n_steps=16).sum(-1)
    close(res.scores, ref)
    assert res.contrast_tokens == [" he"] and res.target_tokens == [" nurse"]


def test_default_target_is_the_models_own_next_token(llama):
    trace = llama.trace(TEXT)
    res = attribute(llama, TEXT, method="saliency", progress=False)  # from its own forward pass, not the trace's
    (target,) = res.target_ids
    assert_ranked([target], trace.logits_at(-1), k=1, tol=1e-5)  # the top logit (a near-tie may go either way)


def test_ig_completeness_on_a_tiny_model(llama):
    # Scores sum to f(x) - f(baseline). (tiny-llama's pad token is its zero padding row: on that
    # baseline RMSNorm's gradient explodes near alpha = 0 and IG needs ~1000 steps; the mean does not.)
    res = attribute(llama, TEXT, target=" Paris", baseline="mean", n_steps=64, progress=False)
    gap = float(res.objective[0] - res.baseline_objective[0])
    assert abs(gap) > 1e-2
    assert abs(float(res.scores.sum()) - gap) <= 1e-3 * abs(gap)
    assert res.convergence_delta.abs().item() == pytest.approx(abs(float(res.scores.sum()) - gap), abs=1e-5)


def test_too_few_steps_warn_with_advice(llama):
    with pytest.warns(RuntimeWarning, match="raise n_steps"):
        attribute(llama, TEXT, target=" Paris", n_steps=1, progress=False)


def dense_trapezoid(model, text, target, n=65537, **kwargs):
    """A dense uniform trapezoid reference (captum's rule weighs by 1/n; the trapezoid's is 1/(n-1))."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = attribute(model, text, target=target, n_steps=n, ig_rule="riemann_trapezoid", progress=False, **kwargs)
    scores = res.scores * n / (n - 1)
    f_diff = res.objective - res.baseline_objective
    assert (scores.sum(-1) - f_diff).abs().max() < 0.02 * f_diff.abs().max(), "the reference itself is not converged"
    return scores


def test_default_ig_refines_until_complete_and_matches_a_dense_reference(llama):
    # tiny-llama's pad baseline is its zero padding row: the integrand explodes near alpha = 0, which
    # a uniform 32-step grid gets badly wrong. The default refines there until the gap is under 5 %.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default must not warn
        res = attribute(llama, TEXT, target=" Paris", progress=False)
    assert float(res.completeness_gap[0]) < 0.05
    assert 33 < res.ig_steps[0] <= res.settings["max_steps"] == 1025
    ref = dense_trapezoid(llama, TEXT, " Paris")
    assert (res.scores - ref).abs().max() <= 0.05 * ref.abs().max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uniform = attribute(llama, TEXT, target=" Paris", n_steps=4097, ig_rule="riemann_trapezoid", progress=False)
    assert float(uniform.completeness_gap[0]) > 0.5  # a uniform grid 40 times denser is still far off


def test_the_adaptive_cap_is_reported_loudly_when_reached(llama):
    with pytest.warns(RuntimeWarning, match=r"stopped at its cap of max_steps=33 points.*raise max_steps"):
        res = attribute(llama, TEXT, target=" Paris", max_steps=33, progress=False)
    assert res.ig_steps == [33] and float(res.completeness_gap[0]) > 0.05
    with pytest.raises(ValueError, match="max_steps must be an int from 33 to"):
        attribute(llama, TEXT, target=" Paris", max_steps=8, progress=False)


def test_default_ig_refines_each_row_of_a_generation_matrix_on_its_own(llama):
    gen = llama.generate_trace("The capital of", max_new_tokens=3)
    res = attribute(llama, gen, progress=False)
    assert len(res.ig_steps) == 3 and (res.completeness_gap < 0.05).all()


def test_adaptive_layer_ig_meets_completeness(llama):
    res = attribute(llama, TEXT, target=" Paris", method="layer_integrated_gradients", layer=-1, progress=False)
    assert res.settings["layer"] == 1 and float(res.completeness_gap[0]) < 0.05


def test_fixed_steps_need_no_rule_and_a_rule_needs_fixed_steps(llama):
    res = attribute(llama, TEXT, target=" Paris", n_steps=8, progress=False)
    assert res.ig_steps == [8] and res.settings["ig_rule"] == "gausslegendre"
    with pytest.raises(ValueError, match="needs a fixed n_steps"):
        attribute(llama, TEXT, target=" Paris", ig_rule="riemann_left", progress=False)


def test_generation_matrix_equals_per_token_captum(llama):
    gen = llama.generate_trace("The capital of", max_new_tokens=4)
    res = attribute(llama, gen, n_steps=8, progress=False)
    n_prompt = gen.generated.index(True)
    assert res.scores.shape == (4, len(gen) - 1) and res.is_matrix
    for j in range(4):
        prefix = gen.token_ids[: n_prompt + j]
        ref = captum_layer_ig(llama, prefix, gen.token_ids[n_prompt + j], 8)
        close(res.scores[j, : len(prefix)], ref)
        assert res.mask[j].sum() == len(prefix) and (res.scores[j, len(prefix) :] == 0).all()


def test_feature_ablation_equals_captum_llm_attribution_and_a_brute_force_scan(gpt2):
    ids = gpt2.tokenizer.encode(TEXT)
    res = attribute(gpt2, TEXT, target=" Paris", method="feature_ablation", progress=False)
    llm = LLMAttribution(FeatureAblation(gpt2.model), gpt2.tokenizer)
    ref = llm.attribute(token_input(gpt2, ids), target=" Paris").token_attr
    close(res.scores, ref)
    # Brute force: replace each token by the baseline (EOS) and read the drop in log p(" Paris").
    target = gpt2.tokenizer.encode(" Paris")[0]
    with torch.no_grad():

        def logp(seq):
            return torch.log_softmax(gpt2.model(torch.tensor([seq])).logits[0, -1], -1)[target]

        full = logp(ids)
        scan = [full - logp(ids[:i] + [gpt2.tokenizer.eos_token_id] + ids[i + 1 :]) for i in range(len(ids))]
    close(res.scores[0], torch.stack(scan))


def test_shapley_equals_captum_and_is_efficient(gpt2):
    ids = gpt2.tokenizer.encode(TEXT)
    res = attribute(gpt2, TEXT, target=" Paris", method="shapley", n_samples=5, progress=False)
    torch.manual_seed(0)
    llm = LLMAttribution(ShapleyValueSampling(gpt2.model), gpt2.tokenizer)
    ref = llm.attribute(token_input(gpt2, ids), target=" Paris", n_samples=5).token_attr
    close(res.scores, ref)
    # Efficiency: the values sum to f(x) - f(every token replaced).
    eos = gpt2.tokenizer.eos_token_id
    with torch.no_grad():
        empty = torch.log_softmax(gpt2.model(torch.tensor([[eos] * len(ids)])).logits[0, -1], -1)
    target = gpt2.tokenizer.encode(" Paris")[0]
    assert float(res.scores.sum()) == pytest.approx(float(res.objective[0] - empty[target]), abs=1e-4)


def test_encoder_attributes_cosine_similarity_with_a_reference():
    bert = lw.load_model("tiny-bert")
    res = attribute(bert, "the cat sat on the mat", reference="a dog", n_steps=64, progress=False)
    assert res.target_tokens == ["cosine with 'a dog'"]
    with torch.no_grad():

        def pooled(t):
            return bert.adapter.base()(**bert.tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(0)

        cos = torch.nn.functional.cosine_similarity(pooled("the cat sat on the mat"), pooled("a dog"), dim=0)
    assert float(res.objective[0]) == pytest.approx(float(cos), abs=1e-5)
    assert abs(float(res.convergence_delta[0])) < 0.05 * abs(float(res.objective[0] - res.baseline_objective[0]))


def test_zero_baseline_nan_is_reported_not_hidden():
    # An all-zero embedding has zero variance: RMSNorm's rsqrt(0 + eps) is finite, but a model
    # without eps would not be; here we check the result flags any non-finite score it holds.
    model = lw.load_model("tiny-llama")
    res = attribute(model, TEXT, target=" Paris", baseline="zero", n_steps=4, progress=False)
    assert res.n_nonfinite == int((~torch.isfinite(res.scores)).sum())
    res.scores[0, 0] = float("nan")
    assert "1 scores not finite" in repr(res)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": ""}, "target is empty"),
        ({"target": " Paris and", "contrast": " he"}, "target ' Paris and' is 2 tokens"),
        ({"target": " Paris", "contrast": " Paris"}, "contrast ' Paris' is the target itself"),
        ({"target": " Paris", "contrast": " he and"}, "contrast ' he and' is 2 tokens"),
        ({"method": "lime"}, "unknown method 'lime': choose one of integrated_gradients"),
        ({"n_steps": 0}, "n_steps .or None for adaptive steps. must be an int from 1 to"),
        ({"baseline": "unk"}, "baseline 'unk' is not one of pad, mean, zero"),
        ({"method": "layer_integrated_gradients", "layer": 5}, "layer 5 is out of range"),
        ({"reference": "x"}, "reference is for encoders"),
    ],
)
def test_bad_input_raises_clear_errors(llama, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        attribute(llama, TEXT, progress=False, **kwargs)


def test_methods_that_do_not_apply_raise(llama):
    gen = llama.generate_trace("The capital", max_new_tokens=2)
    with pytest.raises(ValueError, match="does not apply to a generation matrix"):
        attribute(llama, gen, method="shapley")
    with pytest.raises(ValueError, match="is an encoder"):
        attribute(lw.load_model("tiny-bert"), "a cat", target=" dog")


def test_progress_callback_counts_to_the_total(llama):
    seen = []
    attribute(
        llama, TEXT, target=" Paris and", n_steps=8, internal_batch_size=4, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1][0] == seen[-1][1] == 4  # 2 step batches x 2 rows


def test_sanity_check_identity_and_randomisation(llama):
    res = attribute(llama, TEXT, target=" Paris", n_steps=8, progress=False)
    check = res.sanity_check(layers=2)
    assert check.layers == [0, 1] and check.scores.shape == res.scores.shape
    assert not torch.allclose(check.scores, res.scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert res.recompute(n_steps=8).scores.equal(res.scores)


@pytest.mark.slow
def test_smollm2_integrated_gradients_equal_captum(smollm2):
    res = attribute(smollm2, TEXT, target=" Paris", n_steps=32, progress=False)
    close(res.scores, captum_ig(smollm2, smollm2.tokenizer.encode(TEXT), " Paris", 32))


@pytest.mark.slow
def test_smollm2_zero_embedding_gradient_is_nan_and_flagged(smollm2):
    # riemann_left evaluates the gradient at alpha = 0, the all-zero embedding itself.
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        res = attribute(
            smollm2, TEXT, target=" Paris", baseline="zero", ig_rule="riemann_left", n_steps=4, progress=False
        )
    assert res.n_nonfinite > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default baseline stays finite
        ok = attribute(smollm2, TEXT, target=" Paris", method="saliency", progress=False)
    assert ok.n_nonfinite == 0


@pytest.mark.slow
def test_smollm2_sanity_check_separates_trained_from_randomised(smollm2):
    # Saliency is exact (no integral), so only the model changes between the two runs. One top block
    # re-initialised keeps most of the explanation; every block re-initialised should not.
    text = "When Mary and John went to the store, John gave a drink to"
    res = attribute(smollm2, text, target=" Mary", method="saliency", progress=False)
    top = res.sanity_check(layers=1).rank_correlation
    every = res.sanity_check(layers=30).rank_correlation
    assert top > 0.9 and every < top - 0.3, (top, every)


@pytest.mark.slow
def test_smollm2_ig_needs_many_steps_and_says_so(smollm2):
    # On SmolLM2 the straight path from the baseline crosses steep regions (RMSNorm of small
    # interpolated embeddings): 32 steps leave a large completeness gap, which must be reported.
    with pytest.warns(RuntimeWarning, match="raise n_steps"):
        res = attribute(smollm2, TEXT, target=" Paris", baseline="mean", n_steps=32, progress=False)
    gap = (res.objective - res.baseline_objective).abs()
    assert float(res.convergence_delta.abs()) > 0.05 * float(gap)


def test_a_trace_without_generation_is_attributed_like_its_text(llama):
    from_trace = attribute(llama, llama.trace(TEXT), target=" Paris", method="saliency", progress=False)
    from_text = attribute(llama, TEXT, target=" Paris", method="saliency", progress=False)
    assert not from_trace.is_matrix and from_trace.scores.equal(from_text.scores)
    assert not lw.SaliencyView(from_trace).is_matrix
