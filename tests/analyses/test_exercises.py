"""Each checker passes a correct solution (written here, independently of the package) and fails planted
mistakes with a message that names the mistake."""

import pytest
import torch

import llmasos_widgets as lw

TINY = ["tiny-llama"]


def verdict(name, fn, models=TINY):
    return lw.check(name, fn, models=models)


# -- solutions, written the way a student would ----------------------------------------------------------
def top_k(logits, k):
    probs = logits.softmax(-1)
    top = probs.topk(k)
    return top.indices, top.values


def attention(q, k, *, scale=True, causal=True, axis=-1, tile=False):
    group = q.shape[0] // k.shape[0]
    k = k.repeat(group, 1, 1) if tile else k.repeat_interleave(group, 0)
    scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5 if scale else 1)
    if causal:
        pos = q.shape[1]
        scores = scores.masked_fill(torch.ones(pos, pos).triu(1).bool(), float("-inf"))
    return scores.softmax(axis)


def lens(model, resid, norm=True):
    x = model.model.model.norm(resid) if norm else resid
    return model.model.lm_head(x)


def ablation(model, text, target, sign=1):
    ids = torch.tensor(model.tokenizer(text)["input_ids"])
    t = model.tokenizer(target, add_special_tokens=False)["input_ids"][0]

    def logp(x):
        with torch.no_grad():
            return model.model(x[None]).logits[0, -1].log_softmax(-1)[t]

    base = logp(ids)
    out = []
    for i in range(len(ids)):
        x = ids.clone()
        x[i] = model.pad_token_id
        out.append(sign * (base - logp(x)))
    return torch.stack(out)


def resid_patch(model, clean, corrupt, layer, pos, which="pre", base="corrupt"):
    tok = lambda s: torch.tensor([model.tokenizer(s)["input_ids"]])  # noqa: E731
    block = model.model.model.layers[layer]
    kept = {}
    register = block.register_forward_pre_hook if which == "pre" else block.register_forward_hook
    if which == "pre":
        h = block.register_forward_pre_hook(lambda m, a: kept.__setitem__("x", a[0].clone()))
    else:
        h = block.register_forward_hook(
            lambda m, a, o: kept.__setitem__("x", (o[0] if isinstance(o, tuple) else o).clone())
        )
    source, target = (clean, corrupt) if base == "corrupt" else (corrupt, clean)
    with torch.no_grad():
        model.model(tok(source))
    h.remove()

    def put(t):
        t = t.clone()
        t[0, pos] = kept["x"][0, pos]
        return t

    if which == "pre":
        h = register(lambda m, a: (put(a[0]), *a[1:]))
    else:
        h = register(lambda m, a, o: (put(o[0]), *o[1:]) if isinstance(o, tuple) else put(o))
    try:
        with torch.no_grad():
            return model.model(tok(target)).logits[0, -1]
    finally:
        h.remove()


def topk_encoder(sae, x, relu=True):
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = pre.topk(sae.k, dim=-1)
    values = top.values.clamp_min(0) if relu else top.values
    return torch.zeros_like(pre).scatter(-1, top.indices, values)


def dla(model, components, final, direction, norm=True):
    if not norm:
        return components @ direction
    fn = model.model.model.norm
    rms = (final.pow(2).mean() + fn.variance_epsilon).sqrt()
    return components / rms * fn.weight.detach() @ direction


def induction_score(pattern, seq_len, first, offset=1):
    q = torch.arange(first + seq_len, first + 2 * seq_len)
    return pattern[:, q, q - seq_len + offset].mean(-1)


def welch(scores, random_scores, n_tests, *, bonferroni=True, equal_var=False):
    from scipy import stats

    p = stats.ttest_ind(scores, random_scores, equal_var=equal_var).pvalue
    return min(1.0, p * n_tests) if bonferroni else p


def deletion_curve(model, token_ids, order, target_id, *, log=False, cumulative=True, points=None):
    curve = []
    for k in range(len(token_ids) + 1 if points is None else points):
        x = torch.tensor(token_ids)
        gone = order[:k] if cumulative else order[k - 1 : k]
        x[list(gone)] = model.pad_token_id
        with torch.no_grad():
            logits = model.model(x[None]).logits[0, -1].double()
        curve.append(logits.log_softmax(-1)[target_id] if log else logits.softmax(-1)[target_id])
    return torch.stack(curve)


# -- each checker: the solution passes, each planted mistake is named -----------------------------------
CASES = {
    "top_k": (
        top_k,
        [
            (lambda lg, k: (lg.topk(k).indices, lg.topk(k).values), "are logits"),
            (lambda lg, k: (lg.topk(k).indices.flip(0), lg.softmax(-1).topk(k).values.flip(0)), "increasing order"),
            (lambda lg, k: (lg.topk(k).indices, lg.topk(k).values.softmax(-1)), "over the k best logits only"),
        ],
    ),
    "attention_by_hand": (
        attention,
        [
            (lambda q, k: attention(q, k, scale=False), "not scaled"),
            (lambda q, k: attention(q, k, causal=False), "no causal mask"),
            (lambda q, k: attention(q, k, axis=-2), "wrong axis"),
            (lambda q, k: attention(q, k, tile=True), "h // group"),
            (lambda q, k: attention(q, k)[: k.shape[0]], "query heads share key/value heads"),
        ],
    ),
    "logit_lens": (lens, [(lambda m, r: lens(m, r, norm=False), "final norm")]),
    "token_ablation": (
        ablation,
        [
            (lambda m, t, tg: ablation(m, t, tg, sign=-1), "sign is flipped"),
            (lambda m, t, tg: ablation(m, t, tg)[1:], "shape"),
        ],
    ),
    "welch_bonferroni": (
        welch,
        [
            (lambda a, b, n: welch(a, b, n, bonferroni=False), "before the Bonferroni correction"),
            (lambda a, b, n: welch(a, b, n, equal_var=True), "Student's t-test"),
        ],
    ),
    "resid_patch": (
        resid_patch,
        [
            (lambda *a: resid_patch(*a, which="post"), "hook_resid_post"),
            (lambda *a: resid_patch(*a, base="clean"), "corrupt value into the clean run"),
        ],
    ),
    "topk_encoder": (
        topk_encoder,
        [
            (lambda s, x: topk_encoder(s, x, relu=False), "clamp"),
            (lambda s, x: ((x - s.b_dec) @ s.W_enc + s.b_enc).clamp_min(0), "active latents"),
        ],
    ),
    "direct_logit_attribution": (dla, [(lambda m, c, f, d: dla(m, c, f, d, norm=False), "final norm is missing")]),
    "deletion_curve": (
        deletion_curve,
        [
            (lambda m, i, o, t: deletion_curve(m, i, o, t, log=True), "log-probabilities"),
            (lambda m, i, o, t: deletion_curve(m, i, o[::-1], t), "lowest-ranked tokens first"),
            (lambda m, i, o, t: deletion_curve(m, i, o, t, cumulative=False), "only the k-th token"),
            (lambda m, i, o, t: deletion_curve(m, i, o, t, points=len(i)), "n + 1"),
        ],
    ),
    "induction_score": (induction_score, [(lambda p, n, f: induction_score(p, n, f, offset=0), "duplicate-token")]),
}


def test_every_exercise_has_a_case():
    assert set(CASES) == set(lw.exercises())


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_solution_passes_and_mistakes_are_named(name):
    solution, mistakes = CASES[name]
    ok = verdict(name, solution)
    assert ok.passed, ok.message
    for wrong, words in mistakes:
        v = verdict(name, wrong)
        assert not v.passed and words in v.message, v.message


def test_an_error_in_the_students_function_is_reported():
    v = verdict("top_k", lambda logits, k: logits.topk(k, dim=3))
    assert not v.passed and "your function raised IndexError" in v.message


def test_an_unknown_exercise_lists_the_known_ones():
    with pytest.raises(KeyError, match="attention_by_hand"):
        lw.check("attention", attention)


@pytest.mark.parametrize(
    "name", ["attention_by_hand", "top_k", "topk_encoder", "induction_score", "welch_bonferroni", "deletion_curve"]
)
def test_solutions_pass_on_smollm2(name, smollm2):
    v = lw.check(name, CASES[name][0])
    assert v.passed and "smollm2-135m" in v.message, v.message


def test_a_planted_gqa_mistake_on_smollm2_is_named(smollm2):
    v = lw.check("attention_by_hand", lambda q, k: attention(q, k, tile=True), models=[smollm2])
    assert not v.passed and "h // group" in v.message, v.message
