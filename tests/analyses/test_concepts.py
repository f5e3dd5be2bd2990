import sys
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

import llmasos_widgets as lw
from llmasos_widgets.analyses import concepts as C
from llmasos_widgets.analyses import concepts_captum
from llmasos_widgets.core import checks

SHOUT = [
    f"STOP {w.upper()} NOW!!! GET OUT!!!"
    for w in "apple bread chair door eagle fox goat hill iron jar kite lamp".split()
]
CALM = [
    f"please, the {w} is quite fine today."
    for w in "apple bread chair door eagle fox goat hill iron jar kite lamp".split()
]
INPUTS = ["The capital of France is", "I went to the", "She said that", "Hello, my name is", "The cat sat on"]


@pytest.fixture(scope="module")
def llama():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def shout():
    return lw.Concept("shout", SHOUT)


# -- bad input ---------------------------------------------------------------------------------------
def test_a_concept_needs_the_minimum_of_distinct_examples():
    with pytest.raises(ValueError, match=r"concept 'tiny' has 3 distinct examples; at least 10"):
        lw.Concept("tiny", ["a b", "c d", "e f"])
    with pytest.raises(ValueError, match="at least 10"):
        lw.Concept("dupes", ["same text"] * 20)
    with pytest.raises(ValueError, match="non-empty strings"):
        lw.Concept("bad", [*SHOUT, ""])
    with pytest.raises(ValueError, match="list of texts"):
        lw.Concept("str", "just one string")
    with pytest.raises(ValueError, match="non-empty name"):
        lw.Concept("", SHOUT)


def test_bad_tcav_arguments_name_what_is_wrong(llama, shout):
    with pytest.raises(ValueError, match=r"concept names must be unique; repeated: \['shout'\]"):
        lw.tcav(llama, INPUTS, 5, [shout, lw.Concept("shout", CALM)], [0], progress=False)
    with pytest.raises(ValueError, match=r"layer 7 is out of range: tiny-llama has layers 0..1"):
        lw.tcav(llama, INPUTS, 5, [shout], [0, 7], progress=False)
    with pytest.raises(ValueError, match=r"target ' Parisians forever' is \d+ tokens .* not one"):
        lw.tcav(llama, INPUTS, " Parisians forever", [shout], [0], progress=False)
    with pytest.raises(ValueError, match="target id 100000 is out of range"):
        lw.tcav(llama, INPUTS, 100000, [shout], [0], progress=False)
    with pytest.raises(ValueError, match=r"n_random \(10 or more for a meaningful test\) must be an int from 2 to"):
        lw.tcav(llama, INPUTS, 5, [shout], [0], n_random=1, progress=False)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        lw.tcav(llama, INPUTS, 5, [shout], [0], pooling="max", progress=False)
    with pytest.raises(ValueError, match="unknown CAV method 'svm'"):
        lw.train_cav(llama, shout, 0, method="svm")
    with pytest.raises(ValueError, match="an encoder"):
        lw.tcav(lw.load_model("tiny-bert"), INPUTS, 5, [shout], [0], n_random=2, progress=False)


# -- activations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_pooled_activations_equal_the_traces_residual_stream(name):
    model = lw.load_model(name)
    texts = ["A short one.", "A much longer text, padded against the short one in a batch.", "Mid length text."]
    for pooling in ("mean", "last"):
        got = C.activations(model, texts, [0, 1], pooling=pooling, batch_size=2)
        for i, text in enumerate(texts):
            trace = model.trace(text)
            for j, layer in enumerate([0, 1]):
                resid = trace.resid_pre(layer + 1)  # after block `layer`
                expected = resid.mean(0) if pooling == "mean" else resid[-1]
                torch.testing.assert_close(got[i, j], expected, atol=2e-5, rtol=1e-4)


def test_activations_are_cached_by_text_so_changed_examples_are_recomputed(llama, monkeypatch):
    C.activations(llama, ["first text here"], [1])
    calls = []
    base = llama.adapter.base()
    original = base.forward
    monkeypatch.setattr(base, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    C.activations(llama, ["first text here"], [1])
    assert calls == []  # cached
    C.activations(llama, ["first text here", "an edited text"], [1])
    assert len(calls) == 1  # only the new text ran


# -- CAVs --------------------------------------------------------------------------------------------
def test_cav_of_a_clearly_separable_concept_is_accurate_and_stable(llama, shout):
    cav = lw.train_cav(llama, shout, 1, against=lw.Concept("calm", CALM))
    assert cav.accuracy == 1.0 and cav.reliable
    assert cav.stability > 0.9
    assert float(cav.direction.norm()) == pytest.approx(1.0, abs=1e-5)
    # The direction points towards the concept: concept examples project higher than calm ones.
    acts = C.activations(llama, SHOUT + CALM, [1])[:, 0]
    proj = acts @ cav.direction
    assert proj[:12].min() > proj[12:].max()


def test_cav_on_a_random_split_is_near_chance_and_warns(llama):
    texts = lw.sample_texts()
    accs = []
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        pick = rng.choice(len(texts), 60, replace=False)
        fake = lw.Concept("random", [texts[i] for i in pick[:30]])
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            cav = lw.train_cav(llama, fake, 1, against=[texts[i] for i in pick[30:]], seed=seed)
        accs.append(cav.accuracy)
    assert 0.3 <= float(np.mean(accs)) <= 0.7
    rng = np.random.default_rng(7)
    pick = rng.choice(len(texts), 24, replace=False)
    with pytest.warns(UserWarning, match="does not separate it .* unreliable"):
        lw.train_cav(
            llama, lw.Concept("noise", [texts[i] for i in pick[:12]]), 1, against=[texts[i] for i in pick[12:]]
        )


def test_mean_difference_cav_is_the_normalized_difference_of_means(llama, shout):
    cav = lw.train_cav(llama, shout, 0, against=CALM, method="mean", test_size=0.25)
    # Recompute from the traces, on the same training split (the seeded split is reproducible).
    pos = torch.stack([llama.trace(t).resid_pre(1).mean(0) for t in SHOUT])
    neg = torch.stack([llama.trace(t).resid_pre(1).mean(0) for t in CALM])
    train, _ = C._split(12, 12, 0.25, np.random.default_rng(0))
    x = torch.cat([pos, neg])[train]
    y = torch.tensor([1] * 12 + [0] * 12)[train]
    d = x[y == 1].mean(0) - x[y == 0].mean(0)
    torch.testing.assert_close(cav.direction, d / d.norm(), atol=1e-4, rtol=1e-3)
    assert cav.accuracy == 1.0 and cav.method == "mean"


def test_relative_cav_and_reproducibility(llama, shout):
    calm = lw.Concept("calm", CALM)
    a = lw.train_cav(llama, shout, 1, against=calm, seed=3)
    b = lw.train_cav(llama, shout, 1, against=calm, seed=3)
    assert a.against == "calm" and torch.equal(a.direction, b.direction)
    reverse = lw.train_cav(llama, calm, 1, against=shout, seed=3)
    assert float(reverse.direction @ a.direction) < -0.9  # the opposite direction
    with pytest.raises(ValueError, match="two different concepts"):
        lw.train_cav(llama, shout, 1, against=shout)


# -- directional derivatives ---------------------------------------------------------------------------
def _logp_with_shift(model, text, layer, shift, target):
    """log p(target) after `text` with `shift` added to every token's output of block `layer`."""

    def hook(module, args, output):
        return (output[0] + shift,) + output[1:] if isinstance(output, tuple) else output + shift

    handle = model.adapter.blocks()[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
            return torch.log_softmax(model.model(ids).logits[0, -1].double(), -1)[target].item()
    finally:
        handle.remove()


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_gradients_are_directional_derivatives_by_finite_differences(llama, pooling):
    torch.manual_seed(0)
    v = torch.randn(llama.d_model)
    v /= v.norm()
    grads = C.gradients(llama, INPUTS[:2], [0, 1], 5, pooling=pooling)
    eps = 1e-3
    for i, text in enumerate(INPUTS[:2]):
        n = len(llama.tokenizer(text)["input_ids"])
        w = torch.full((n, 1), 1.0 / n) if pooling == "mean" else torch.eye(n)[:, -1:]
        w = w * n if pooling == "mean" else w  # the nudge is ε·v at every pooled position
        for j, layer in enumerate([0, 1]):
            up = _logp_with_shift(llama, text, layer, eps * w * v, 5)
            down = _logp_with_shift(llama, text, layer, -eps * w * v, 5)
            fd = (up - down) / (2 * eps)
            assert float(grads[i, j] @ v) == pytest.approx(fd, rel=2e-2, abs=2e-4)


def test_captum_layer_gradients_on_the_wrapper_equal_ours(llama):
    from captum.attr import LayerGradientXActivation

    wrapper = concepts_captum.CaptumWrapper(llama, [0, 1])
    inputs = wrapper.encode(INPUTS, "mean")
    lg = LayerGradientXActivation(wrapper, [wrapper.pooled["0"], wrapper.pooled["1"]], multiply_by_inputs=False)
    theirs = lg.attribute(inputs, target=5)
    ours = C.gradients(llama, INPUTS, [0, 1], 5)
    for j in range(2):
        torch.testing.assert_close(theirs[j], ours[:, j], atol=1e-5, rtol=1e-4)


# -- TCAV ----------------------------------------------------------------------------------------------
def assert_same_sign_counts(model, result, scores, random_scores):
    """``scores`` and ``random_scores`` (captum's) are the result's shares of positive directional derivatives.

    captum takes its own gradients (and, without the same CAVs, trains its own): a derivative within rounding
    of 0 may be counted positive by one and not the other, so each run may differ by that many inputs out
    of n. As a rule there is none, and the shares are equal.
    """
    grads = C.gradients(
        model, result.inputs, result.layers, checks.one_token(model, result.target)
    )  # [input, layer, d]
    tol = 1e-4 * float(grads.norm(dim=-1).max())  # |v| = 1: a derivative's rounding is far below this
    near = (torch.einsum("ijd,cjrd->cjri", grads, result.directions).abs() <= tol).sum(-1)
    near_random = (torch.einsum("ijd,jrd->jri", grads, result.random_directions).abs() <= tol).sum(-1)
    n = len(result.inputs)
    assert ((scores - result.scores).abs() * n <= near + 1e-6).all(), (scores, result.scores, near)
    assert ((random_scores - result.random_scores).abs() * n <= near_random + 1e-6).all()


@pytest.fixture(scope="module")
def result(llama, shout):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lw.tcav(llama, INPUTS, 5, [shout], [0, 1], n_random=4, progress=False)


@pytest.mark.parametrize("same_cavs", [True, False])
def test_tcav_scores_equal_captums_sign_count(llama, shout, result, tmp_path, same_cavs):
    scores, random_scores = concepts_captum.captum_tcav(llama, result, [shout], str(tmp_path), same_cavs=same_cavs)
    assert scores.shape == result.scores.shape == (1, 2, 4)
    assert_same_sign_counts(llama, result, scores, random_scores)


def test_scores_are_the_share_of_positive_directional_derivatives(llama, result):
    grads = C.gradients(llama, INPUTS, [0, 1], 5)
    for j in range(2):
        for r in range(4):
            expected = float((grads[:, j] @ result.directions[0, j, r] > 0).float().mean())
            assert result.scores[0, j, r].item() == pytest.approx(expected)


def test_p_values_are_the_t_test_with_bonferroni(result):
    for j in range(2):
        a, b = result.scores[0, j].numpy(), result.random_scores[j].numpy()
        if np.ptp(a) == 0 and np.ptp(b) == 0:
            expected = 1.0 if a[0] == b[0] else 2 / 70  # 4 runs against 4, perfectly separated
        else:
            expected = stats.ttest_ind(a, b, equal_var=False).pvalue
        assert result.p_values[0, j].item() == pytest.approx(expected, rel=1e-5)
        assert result.p_adjusted[0, j].item() == pytest.approx(min(1.0, 2 * expected), rel=1e-5)
    assert torch.equal(result.significant, (result.p_adjusted < 0.05) & result.reliable)
    row = result.rows()[1]
    assert row["layer"] == 1 and row["score"] == pytest.approx(float(result.scores[0, 1].mean()))


def test_t_test_edge_cases():
    assert C._t_test(np.full(3, 0.6), np.full(3, 0.6)) == 1.0
    assert C._t_test(np.full(3, 0.6), np.full(3, 0.8)) == pytest.approx(0.1)  # 2 / C(6, 3)
    assert C._t_test(np.full(10, 1.0), np.zeros(10)) == pytest.approx(2 / 184756)
    a, b = np.array([0.2, 0.4, 0.6]), np.array([0.8, 0.8, 1.0])
    assert C._t_test(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_random_sets_are_disjoint_seeded_and_exclude_the_concept(shout):
    a = C.draw_random_sets([shout], 10, seed=1)
    b = C.draw_random_sets([shout], 10, seed=1)
    c = C.draw_random_sets([shout], 10, seed=2)
    assert a == b and a != c
    flat = [t for s in a for t in s]
    assert len(flat) == len(set(flat)) == 11 * 12
    assert not set(flat) & set(SHOUT)


def test_tcav_is_reproducible(llama, shout, result):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = lw.tcav(llama, INPUTS, 5, [shout], [0, 1], n_random=4, progress=False)
    assert torch.equal(again.scores, result.scores) and torch.equal(again.p_values, result.p_values)


def test_a_random_concept_is_not_significant_across_seeds(llama):
    texts = lw.sample_texts()
    prompts = [t.rsplit(" ", 1)[0] for t in texts[-30:]]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        fake = lw.Concept("meaningless", [texts[i] for i in rng.choice(1500, 15, replace=False)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lw.tcav(llama, prompts, 5, [fake], [0, 1], n_random=10, seed=seed, progress=False)
        assert not res.significant.any(), res.rows()


def test_unreliable_cavs_warn_and_are_never_significant(llama, monkeypatch):
    # "shout" is significant at both layers with 10 random sets; with the accuracy bar raised past
    # what any CAV reaches, the same p-values must no longer count as significant.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lw.tcav(llama, INPUTS, 5, [lw.Concept("shout", SHOUT)], [0, 1], n_random=10, progress=False)
    assert (res.p_adjusted < res.alpha).all() and res.significant.all() and res.reliable.all()
    monkeypatch.setattr(C, "MIN_ACCURACY", 1.01)
    with pytest.warns(UserWarning, match="marked unreliable"):
        strict = lw.tcav(llama, INPUTS, 5, [lw.Concept("shout", SHOUT)], [0, 1], n_random=10, progress=False)
    assert torch.equal(strict.p_adjusted, res.p_adjusted)
    assert not strict.reliable.any() and not strict.significant.any()
    assert not any(row["significant"] for row in strict.rows())


def test_table_is_a_list_of_rows_without_pandas(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    assert result.table() == result.rows()


def test_contrast_target_scores_the_log_probability_difference(llama):
    g_target = C.gradients(llama, INPUTS[:2], [1], 5)
    g_other = C.gradients(llama, INPUTS[:2], [1], 9)
    g_contrast = C.gradients(llama, INPUTS[:2], [1], 5, contrast=9)
    torch.testing.assert_close(g_contrast, g_target - g_other, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="different token"):
        lw.tcav(llama, INPUTS, 5, [lw.Concept("shout", SHOUT)], [1], contrast=5, progress=False)


def test_projection_is_the_cosine_with_the_cav(llama, result):
    trace = llama.trace("STOP THAT NOW!!! please")
    cos = C.projection(result, trace, "shout", 1)
    d = result.direction("shout", 1)
    resid = trace.resid_pre(2)
    expected = (resid @ d) / resid.norm(dim=-1) / d.norm()
    torch.testing.assert_close(cos, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"layer 5 is not in this result: its layers are \[0, 1\]"):
        C.projection(result, trace, "shout", 5)
    with pytest.raises(ValueError, match=r"unknown concept 'nope': this result has \['shout'\]"):
        C.projection(result, trace, "nope", 1)


# -- on the bundled model ----------------------------------------------------------------------------
PLACES = [
    "Paris is the capital of France.", "The Nile flows north into the Mediterranean.",
    "Lisbon is a port on the Atlantic coast.", "Rome is built on seven hills.",
    "The Danube runs through Vienna and Budapest.", "Tokyo is the capital of Japan.",
    "Cairo sits on the banks of the Nile.", "Madrid is in the centre of Spain.",
    "Lake Baikal is in Siberia.", "Buenos Aires is the capital of Argentina.",
    "Berlin lies on the river Spree.", "Istanbul spans Europe and Asia.",
]  # fmt: skip


@pytest.mark.slow
def test_smollm2_geography_cav_and_captum_agree(smollm2, tmp_path):
    geo = lw.Concept("geography", PLACES)
    cav = lw.train_cav(smollm2, geo, 12, against=lw.sample_texts()[:12])
    assert cav.accuracy >= 0.75 and cav.reliable
    prompts = ["The capital of France is", "The Eiffel Tower is in", "The Seine flows through", "I flew to"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lw.tcav(smollm2, prompts, " Paris", [geo], [6, 12], n_random=2, progress=False)
    scores, random_scores = concepts_captum.captum_tcav(smollm2, res, [geo], str(tmp_path), same_cavs=False)
    assert_same_sign_counts(smollm2, res, scores, random_scores)
