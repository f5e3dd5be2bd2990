"""lw.evaluate against independent references: ferret's evaluators, plain loops over the model, scipy.

ferret-xai 0.4.2 pins transformers < 5, so it is installed without its dependencies
(``pip install --no-deps ferret-xai==0.4.2``); its evaluators need only numpy, scipy, torch and a
tokenizer, but its package ``__init__`` imports every explainer (lime, shap, datasets), so the test
loads ``ferret.evaluators`` without running that ``__init__``. ferret's code itself runs unchanged.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
import types

import numpy as np
import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.evaluation import ERASER_BINS, bin_sizes, evaluate
from llmasos_widgets.analyses.evaluation_stats import bootstrap_mean, paired_test

PROMPT = "The Eiffel Tower is a famous landmark in the city of"
TARGET = " Paris"
METHODS = ["input_x_gradient", "feature_ablation", "attention_last", "random"]


@pytest.fixture(scope="module")
def evaluation(smollm2):
    return evaluate(smollm2, [PROMPT], [TARGET], methods=METHODS, infidelity_samples=16, progress=False)


def _ferret():
    spec = importlib.util.find_spec("ferret")
    if spec is None:
        pytest.skip("ferret-xai is not installed (pip install --no-deps ferret-xai==0.4.2)")
    if "ferret" not in sys.modules:
        package = types.ModuleType("ferret")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["ferret"] = package
    from ferret.evaluators.faithfulness_measures import (
        AOPC_Comprehensiveness_Evaluation,
        AOPC_Sufficiency_Evaluation,
    )
    from ferret.explainers.explanation import Explanation

    return AOPC_Comprehensiveness_Evaluation, AOPC_Sufficiency_Evaluation, Explanation


class _NextTokenClassifier(torch.nn.Module):
    """A causal LM as ferret's classifier: the classes are the vocabulary, read at each row's last real token.

    Each row runs alone, without its padding (a padded causal batch would shift rotary positions).
    """

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    @property
    def device(self):
        return self.hf.device

    def forward(self, input_ids, attention_mask, **_):
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            rows.append(self.hf(ids[mask.bool()][None]).logits[0, -1])
        return types.SimpleNamespace(logits=torch.stack(rows))


def test_comprehensiveness_and_sufficiency_match_ferret(smollm2, evaluation):
    comp_cls, suff_cls, explanation = _ferret()
    tok = copy.deepcopy(smollm2.tokenizer)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    res = evaluation.prompts[0]
    assert tok(PROMPT)["input_ids"] == res.token_ids  # ferret re-tokenizes the text
    args = dict(
        remove_first_last=False,
        only_pos=True,  # ferret 0.4.2's only_pos=False fails under numpy 2 (`array == []`): see below
        removal_args={"remove_tokens": True, "based_on": "perc", "thresholds": list(ERASER_BINS)},
    )
    wrapper = _NextTokenClassifier(smollm2.model)
    n = len(res.token_ids)
    ks = bin_sizes(n, list(ERASER_BINS))
    assert len(ks) >= 3  # the test covers several bins
    for method in METHODS:
        scores = res.scores[method].double().numpy()
        order = np.argsort(-scores)
        for k in ks:  # decoding what ferret keeps or drops gives back the same tokens
            for ids in (np.delete(res.token_ids, order[:k]), np.array(res.token_ids)[np.sort(order[:k])]):
                assert tok(tok.decode(ids))["input_ids"] == ids.tolist()
        # The metrics depend only on the order of the scores: shifted to be positive, every top-k token
        # passes ferret's only_pos filter, which is then the plain top k that evaluate uses.
        e = explanation(PROMPT, res.tokens, scores - scores.min() + 1.0, method, res.target_id)
        with torch.no_grad():
            comp = comp_cls(wrapper, tok).compute_evaluation(e, target=res.target_id, **args).score
            suff = suff_cls(wrapper, tok).compute_evaluation(e, target=res.target_id, **args).score
        assert abs(comp - res.metrics["comprehensiveness"][method]) < 1e-5, method
        assert abs(suff - res.metrics["sufficiency"][method]) < 1e-5, method


def _p(hf, ids, target):
    with torch.no_grad():
        return float(torch.softmax(hf(torch.tensor([ids])).logits[0, -1].double(), -1)[target])


def test_curves_match_a_plain_loop(smollm2, evaluation):
    res = evaluation.prompts[0]
    hf, ids, pad, t = smollm2.model, res.token_ids, smollm2.pad_token_id, res.target_id
    n = len(ids)
    assert abs(_p(hf, ids, t) - res.p_target) < 1e-5
    for method in ["input_x_gradient", "random"]:
        s = res.scores[method].tolist()
        order = sorted(range(n), key=lambda i: -s[i])
        deletion, insertion, dropped, kept = [], [], [], []
        for k in range(n + 1):  # one forward per step, the plain way
            top = order[:k]
            deletion.append(_p(hf, [pad if i in top else x for i, x in enumerate(ids)], t))
            insertion.append(_p(hf, [x if i in top else pad for i, x in enumerate(ids)], t))
            if k < n:
                dropped.append(_p(hf, [x for i, x in enumerate(ids) if i not in top], t))
            if k > 0:
                kept.append(_p(hf, [x for i, x in enumerate(ids) if i in top], t))
        for name, loop in [("deletion", deletion), ("insertion", insertion), ("deletion_drop", dropped),
                           ("insertion_drop", kept)]:  # fmt: skip
            assert torch.allclose(res.curves[name][method], torch.tensor(loop, dtype=torch.float64), atol=1e-5), name
            area = float(np.trapezoid(loop, dx=1 / (len(loop) - 1)))
            assert abs(res.metrics[name][method] - area) < 1e-5, name


def test_leave_one_out_tau_matches_a_plain_loop(smollm2, evaluation):
    from scipy.stats import kendalltau

    res = evaluation.prompts[0]
    ids, pad = res.token_ids, smollm2.pad_token_id
    loo = [res.p_target - _p(smollm2.model, ids[:i] + [pad] + ids[i + 1 :], res.target_id) for i in range(len(ids))]
    for method in METHODS:
        tau = kendalltau(res.scores[method].double().numpy(), np.array(loo)).statistic
        assert abs(tau - res.metrics["loo_tau"][method]) < 1e-6
    # Feature ablation with the same baseline token is leave-one-out on log p: same order as on p.
    assert res.metrics["loo_tau"]["feature_ablation"] > 0.99


def test_infidelity_is_captums_definition(smollm2, evaluation):
    """captum's normalized infidelity, written out: E[(beta a.I - (f(x) - f(x - I)))^2], beta fitted."""
    res = evaluation.prompts[0]
    ids, n_samples, drop = res.token_ids, 16, 0.25
    torch.manual_seed(evaluation.settings["seed"])
    removed = (torch.rand(n_samples, len(ids)) < drop).double()  # the draws of captum's one batch
    embed = smollm2.model.get_input_embeddings().weight.detach()
    x, b = embed[ids], embed[smollm2.pad_token_id]

    def logp(mask):
        e = mask[:, :, None].float() * x + (1 - mask[:, :, None].float()) * b
        with torch.no_grad():
            logits = smollm2.model(inputs_embeds=e).logits[:, -1].double()
        return torch.log_softmax(logits, -1)[:, res.target_id]

    diff = logp(torch.ones(1, len(ids))) - logp(1 - removed)
    for method in METHODS:
        a_dot_i = (removed * res.scores[method].double()).sum(1)
        beta = (a_dot_i * diff).sum() / (a_dot_i**2).sum()
        expected = float(((beta * a_dot_i - diff) ** 2).mean())
        assert math.isclose(res.metrics["infidelity"][method], expected, rel_tol=1e-4, abs_tol=1e-6), method


def test_sensitivity_is_captums_sensitivity_max_on_captums_own_attributions():
    """captum's sensitivity_max called directly on captum's Saliency and InputXGradient of the embeddings."""
    from captum.attr import InputXGradient, Saliency
    from captum.metrics import sensitivity_max

    model = lw.load_model("tiny-llama")
    methods = ["saliency", "input_x_gradient", "attention_last", "random"]
    ev = evaluate(model, ["Le café ☕ est très"], methods=methods, infidelity_samples=0, sensitivity_samples=3,
                  progress=False)  # fmt: skip
    res = ev.prompts[0]
    assert "sensitivity" in ev.metrics and ev.settings["sensitivity_radius"] == 0.1
    embed = model.model.get_input_embeddings().weight.detach()
    x = embed[res.token_ids][None]

    def logp(embeds):
        logits = model.model(inputs_embeds=embeds).logits[:, -1].float()
        return torch.log_softmax(logits, -1)[:, res.target_id]

    references = {
        "saliency": lambda e: Saliency(logp).attribute(e, abs=True),
        "input_x_gradient": InputXGradient(logp).attribute,
    }
    for method, attribution in references.items():

        def explain(inputs, attribution=attribution):
            return tuple(attribution(inp.float().requires_grad_()).sum(-1).double() for inp in inputs)

        torch.manual_seed(ev.settings["seed"])
        expected = float(sensitivity_max(explain, x.double(), perturb_radius=0.1 * float(embed.std()),
                                         n_perturb_samples=3, max_examples_per_batch=3)[0])  # fmt: skip
        assert expected > 0 and math.isclose(res.metrics["sensitivity"][method], expected, rel_tol=1e-4), method
    assert res.metrics["sensitivity"]["random"] == 0.0  # scores that ignore the input never move
    assert res.metrics["sensitivity"]["attention_last"] > 0
    with pytest.raises(ValueError, match="sensitivity_radius must be a positive number"):
        evaluate(model, ["The cat"], methods=["random"], sensitivity_radius=0, progress=False)


def test_statistics_against_scipy():
    from scipy.stats import permutation_test

    a = torch.tensor([0.31, 0.12, 0.55, 0.40, 0.22, 0.61, 0.18], dtype=torch.float64)
    b = torch.tensor([0.20, 0.15, 0.35, 0.30, 0.25, 0.41, 0.05], dtype=torch.float64)
    ours = paired_test(a, b)
    ref = permutation_test(
        ((a - b).numpy(),), lambda d: d.mean(), permutation_type="samples", n_resamples=math.inf
    )  # one sample of differences: sign flips
    assert abs(ours["p_value"] - ref.pvalue) < 1e-9
    assert abs(ours["mean_diff"] - float((a - b).mean())) < 1e-12
    iv = bootstrap_mean(a, n_boot=4000)
    assert iv.low < float(a.mean()) < iv.high and iv.n == 7


def test_summary_ranking_and_compare(evaluation):
    s = evaluation.summary("comprehensiveness")
    assert set(s) == set(METHODS) and all(v.low <= v.mean <= v.high for v in s.values())
    means = {m: evaluation.values("comprehensiveness")[0, j] for j, m in enumerate(METHODS)}
    ranked = evaluation.ranking("comprehensiveness")
    assert all(means[ranked[i]] >= means[ranked[i + 1]] for i in range(len(ranked) - 1))
    assert evaluation.compare("deletion", "feature_ablation", "random")["n"] == 1


def test_bad_input_is_named():
    model = lw.load_model("tiny-llama")
    with pytest.raises(ValueError, match="one of"):
        evaluate(model, ["The cat"], methods=["grad"], progress=False)
    with pytest.raises(ValueError, match="one target per prompt"):
        evaluate(model, ["The cat", "A dog"], [" sat"], methods=["random"], progress=False)
    with pytest.raises(ValueError, match="baseline must be 'pad' or a token id"):
        evaluate(model, ["The cat"], methods=["random"], baseline="mean", progress=False)
    with pytest.raises(ValueError, match="bins must be"):
        evaluate(model, ["The cat"], methods=["random"], bins=[0, 2], progress=False)
    with pytest.raises(ValueError, match="encoder"):
        evaluate(lw.load_model("tiny-bert"), ["The cat"], methods=["random"], progress=False)


def test_the_table_never_prints_a_negative_zero(evaluation, monkeypatch):
    # A random method's comprehensiveness can round to zero from below: its table cell must read 0.000.
    from llmasos_widgets.analyses.evaluation_stats import Interval  # noqa: PLC0415

    tiny = Interval(-0.0004, -0.0002, 0.0001, 0.95, 3)
    monkeypatch.setattr(type(evaluation), "summary", lambda self, metric, **kw: dict.fromkeys(self.methods, tiny))
    table = evaluation.table()
    assert "0.000 [0.000, 0.000]" in table and "-0.000" not in table
