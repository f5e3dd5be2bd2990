"""causal.py against independent references: the model's own forward with one hook per patched run."""

import math

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses import causal
from tests._numbers import assert_greedy

CLEAN, CORRUPT = "The cat is in the", "The dog is in the"
CAUSAL = ("tiny-llama", "tiny-gpt2")


@pytest.fixture(scope="module", params=CAUSAL)
def model(request):
    return lw.load_model(request.param)


def metric_of(model):
    return lw.logit_diff(" cat", " the")


# -- the reference: the model's own forward, one run per cell, the activation replaced by a hook --------
def site_module(model, site, layer):
    a = model.adapter
    return {
        "resid": a.blocks()[layer],
        "attn": a.attn_out_proj(layer),
        "mlp": a.mlp(layer),
        "heads": a.attn_out_proj(layer),
    }[site]


def hf_run(model, ids, *, replace=None, keep=None, noise=None):
    """Last-position logits of the model's own forward; ``replace``: (site, layer, fn(tensor) -> tensor).

    ``keep`` collects every site's activation; ``noise`` [pos, d] is added to the token embeddings.
    """
    handles = []

    def as_pre(fn):
        def hook(module, args, kwargs):
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        return hook

    try:
        if replace is not None:
            site, layer, fn = replace
            module = site_module(model, site, layer)
            if site in ("resid", "heads"):
                handles.append(module.register_forward_pre_hook(as_pre(fn), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(lambda m, args, out: fn(out)))
        if keep is not None:
            for layer in range(model.n_layers):
                for site in ("resid", "heads"):
                    handles.append(
                        site_module(model, site, layer).register_forward_pre_hook(
                            lambda m, args, kwargs, s=site, i=layer: keep.__setitem__(
                                (s, i), (args[0] if args else kwargs["hidden_states"])[0].clone()
                            ),
                            with_kwargs=True,
                        )
                    )
                for site in ("attn", "mlp"):
                    handles.append(
                        site_module(model, site, layer).register_forward_hook(
                            lambda m, args, out, s=site, i=layer: keep.__setitem__((s, i), out[0].clone())
                        )
                    )
        if noise is not None:
            handles.append(model.model.get_input_embeddings().register_forward_hook(lambda m, a, out: out + noise))
        with torch.no_grad():
            return model.model(torch.tensor([ids])).logits[0, -1]
    finally:
        for h in handles:
            h.remove()


def reference_grid(model, clean, corrupt, metric, over, direction="denoise"):
    """A plain loop: one full forward per cell of the base prompt, the source's activation hooked in."""
    ids = {name: model.tokenizer(text)["input_ids"] for name, text in (("clean", clean), ("corrupt", corrupt))}
    acts = {name: {} for name in ids}
    logits = {name: hf_run(model, ids[name], keep=acts[name]) for name in ids}
    base, source = ("corrupt", "clean") if direction == "denoise" else ("clean", "corrupt")
    bound = metric.bind(model)
    T, L, H = len(ids["clean"]), model.n_layers, model.n_heads
    grid = torch.zeros(L, H if over == "heads" else T)
    for layer in range(L):
        for index in range(grid.shape[1]):
            src = acts[source][(over, layer)]
            if over == "heads":
                d = src.shape[-1] // H
                sl = slice(index * d, (index + 1) * d)

                def fn(t, sl=sl, src=src):
                    t = t.clone()
                    t[0, :, sl] = src[:, sl]
                    return t
            else:

                def fn(t, p=index, src=src):
                    t = t.clone()
                    t[0, p] = src[p]
                    return t

            out = hf_run(model, ids[base], replace=(over, layer, fn))
            grid[layer, index] = bound(out[None], logits["clean"])[0]
    return (
        grid,
        float(bound(logits["clean"][None], logits["clean"])[0]),
        float(bound(logits["corrupt"][None], logits["clean"])[0]),
    )


@pytest.mark.parametrize("over", causal.SITES)
def test_exact_patching_equals_a_plain_hook_loop(model, over):
    res = lw.patch(model, CLEAN, CORRUPT, metric=metric_of(model), over=over, progress=False)
    ref, clean_m, corrupt_m = reference_grid(model, CLEAN, CORRUPT, metric_of(model), over)
    assert (res.values - ref).abs().max() <= 1e-4
    assert res.clean_metric == pytest.approx(clean_m, abs=1e-5) and res.corrupt_metric == pytest.approx(
        corrupt_m, abs=1e-5
    )


def test_noising_equals_a_plain_hook_loop(model):
    res = lw.patch(model, CLEAN, CORRUPT, metric=metric_of(model), direction="noise", progress=False)
    ref, _, _ = reference_grid(model, CLEAN, CORRUPT, metric_of(model), "resid", direction="noise")
    assert (res.values - ref).abs().max() <= 1e-4
    assert (res.scores[:, 0] == 1).all()  # before the prompts differ the clean run is untouched: 1


def test_kl_and_a_user_metric_equal_the_loop(model):
    kl = lw.kl_to_clean()
    res = lw.patch(model, CLEAN, CORRUPT, metric=kl, progress=False)
    ref, clean_m, _ = reference_grid(model, CLEAN, CORRUPT, kl, "resid")
    assert (res.values - ref).abs().max() <= 1e-4 and clean_m == pytest.approx(0, abs=1e-6)
    cat = model.tokenizer.encode(" cat", add_special_tokens=False)[0]
    mine = lw.patch(model, CLEAN, CORRUPT, metric=lambda logits: logits[:, cat], over="mlp", progress=False)
    ref, _, _ = reference_grid(model, CLEAN, CORRUPT, lw.Metric.of(lambda logits: logits[:, cat]), "mlp")
    assert (mine.values - ref).abs().max() <= 1e-4


def test_endpoints_are_exactly_zero_and_one(model):
    p = lw.Patching(model, CLEAN, CORRUPT, metric_of(model))
    res = p.exact(progress=False)
    assert p.normalise(torch.tensor([p.clean_metric, p.corrupt_metric])).tolist() == [1.0, 0.0]
    assert p.first_difference == 1 and (res.scores[:, 0] == 0).all()  # before the difference: the corrupt run
    # The one differing token patched where it enters the model: the clean run, whole.
    assert res.scores[0, 1].item() == pytest.approx(1.0, abs=1e-4)
    top = res.top_cells(1)[0]
    assert abs(res.scores[top[0], top[1]].item()) == res.scores.abs().max().item()


def test_a_position_subset_sweeps_only_those_columns(model):
    res = lw.patch(model, CLEAN, CORRUPT, metric=metric_of(model), positions=[1, -1], progress=False)
    full = lw.patch(model, CLEAN, CORRUPT, metric=metric_of(model), progress=False)
    assert res.scores[:, [1, 4]].isfinite().all() and res.scores[:, [0, 2, 3]].isnan().all()
    assert torch.allclose(res.values[:, [1, 4]], full.values[:, [1, 4]], atol=1e-5)


@pytest.mark.parametrize("over", causal.SITES)
def test_attribution_patching_equals_the_gradient_formula(model, over):
    p = lw.Patching(model, CLEAN, CORRUPT, metric_of(model), over=over)
    approx = p.attribution()
    # By hand: the corrupt run with each site a leaf, d metric / d site, times (clean - corrupt).
    ids = model.tokenizer(CORRUPT)["input_ids"]
    clean_acts = {}
    clean_logits = hf_run(model, model.tokenizer(CLEAN)["input_ids"], keep=clean_acts)
    corrupt_acts = {}
    hf_run(model, ids, keep=corrupt_acts)
    for layer in range(model.n_layers):
        leaf = corrupt_acts[(over, layer)].clone().requires_grad_(True)
        module = site_module(model, over, layer)
        if over in ("resid", "heads"):
            handle = module.register_forward_pre_hook(
                lambda m, args, kwargs, leaf=leaf: (
                    ((leaf[None], *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": leaf[None]})
                ),
                with_kwargs=True,
            )
        else:
            handle = module.register_forward_hook(lambda m, args, out, leaf=leaf: leaf[None])
        try:
            out = model.model(torch.tensor([ids])).logits[0, -1]
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(metric_of(model).bind(model)(out[None], clean_logits)[0], leaf)
        contrib = (clean_acts[(over, layer)] - corrupt_acts[(over, layer)]) * grad
        if over == "heads":
            expected = contrib.view(len(ids), model.n_heads, -1).sum(dim=(0, 2))
        else:
            expected = contrib.sum(-1)
        assert torch.allclose(approx.values[layer] - p.corrupt_metric, expected, atol=1e-5)


def test_causal_trace_equals_a_plain_loop_and_restores_the_clean_run(model):
    ct = lw.causal_trace(
        model, CLEAN, "The cat", " cat", kinds=("resid", "mlp"), samples=3, window=2, seed=1, progress=False
    )
    ids = model.tokenizer(CLEAN)["input_ids"]
    cat = model.tokenizer.encode(" cat", add_special_tokens=False)[0]
    assert ct.subject == (0, 2) and ct.target == " cat"
    # The same noise, drawn as documented: seeded normal draws on the subject's embeddings.
    g = torch.Generator().manual_seed(1)
    noises = torch.zeros(3, len(ids), model.d_model)
    noises[:, 0:2] = torch.randn(3, 2, model.d_model, generator=g) * ct.noise
    assert ct.noise == pytest.approx(3 * model.model.get_input_embeddings().weight.std().item(), rel=1e-6)
    clean_acts = {}
    clean_p = hf_run(model, ids, keep=clean_acts).softmax(-1)[cat].item()
    assert ct.clean_prob == pytest.approx(clean_p, abs=1e-6)
    corrupt_p = sum(hf_run(model, ids, noise=n).softmax(-1)[cat].item() for n in noises) / 3
    assert ct.corrupt_prob == pytest.approx(corrupt_p, abs=1e-6)
    for layer in range(model.n_layers):
        for p in range(len(ids)):

            def fn(t, p=p, layer=layer):
                t = t.clone()
                t[0, p] = clean_acts[("resid", layer)][p]
                return t

            expected = (
                sum(hf_run(model, ids, noise=n, replace=("resid", layer, fn)).softmax(-1)[cat].item() for n in noises)
                / 3
            )
            assert ct.probs["resid"][layer, p].item() == pytest.approx(expected, abs=1e-5)
    # Every subject state restored at the first layer: the clean probability, exactly.
    engine = causal.Engine(model)
    clean, _ = engine.capture(ids)
    corrupted, _ = engine.capture(ids, noise=noises)
    cells = [causal.Cell([causal.Edit(0, "resid", [0, 1], clean.resid[0][0, :2])], base=n) for n in range(3)]
    restored = engine.run(corrupted, cells).softmax(-1)[:, cat]
    assert torch.allclose(restored, torch.full((3,), clean_p), atol=1e-5)
    assert ct.scores("resid").shape == (model.n_layers, len(ids))


def test_steering_at_zero_is_the_plain_generation(model):
    res = lw.steer(model, "The cat", torch.ones(model.d_model), 0.0, layer=1, max_new_tokens=6)
    ids = model.tokenizer("The cat")["input_ids"]
    # Adding 0 leaves every number as it was: the steered run is the baseline run, exactly.
    assert res.steered_ids == res.baseline_ids and len(res.baseline_ids) == 6
    # ... and that is the model's own greedy generation (checked against its full forward, step by step).
    assert_greedy(model, ids, res.baseline_ids)
    assert res.no_effect and res.kl_mean == pytest.approx(0, abs=1e-7) and not any(res.changed)


def test_steering_equals_a_hand_written_hook_and_greedy_loop(model):
    torch.manual_seed(0)
    v = torch.randn(model.d_model)
    res = lw.steer(model, "The cat", lw.Direction(v, 1), 4.0, max_new_tokens=5)
    ids = model.tokenizer("The cat")["input_ids"]

    def add(m, args, kwargs):  # 4 v added to the stream entering block 1, at every position
        if args:
            return (args[0] + 4.0 * v, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + 4.0 * v}

    # Each steered token is the greedy choice of the model's own forward under that hook (a hand-written
    # greedy loop compared token for token would also need near-equal logits to break the same way).
    assert len(res.steered_ids) == 5
    assert_greedy(model, ids, res.steered_ids, hook=(model.adapter.blocks()[1], add))
    assert res.changed == [a != b for a, b in zip(res.steered_ids, res.baseline_ids, strict=True)]
    assert "".join(res.steered) == model.tokenizer.decode(res.steered_ids)
    assert res.kl_next >= 0 and math.isfinite(res.kl_mean)


def test_steering_only_the_prompt_or_sampled_is_reproducible(model):
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(3))
    a = lw.steer(model, "The cat", v, 3.0, layer=2, positions="prompt", sample=True, seed=5, max_new_tokens=4)
    b = lw.steer(model, "The cat", v, 3.0, layer=2, positions="prompt", sample=True, seed=5, max_new_tokens=4)
    assert a.steered_ids == b.steered_ids and a.baseline_ids == b.baseline_ids
    assert a.layer == 2  # layer n_layers: the final residual stream


def test_directions_from_cav_neuron_means_and_patching(model):
    d = lw.Direction.neuron(model, 0, 3)
    assert torch.equal(d.vector, lw.analyses.neurons.neuron_output_weights(model, 0)[3].float()) and d.layer == 1
    m = lw.Direction.mean_difference(model, ["I love it"], ["I hate it"], layer=1)
    traces = [model.trace(t) for t in ("I love it", "I hate it")]
    assert torch.allclose(m.vector, traces[0]._resid[1].mean(0) - traces[1]._resid[1].mean(0), atol=1e-6)
    res = lw.patch(model, CLEAN, CORRUPT, metric=metric_of(model), progress=False)
    pd = res.direction_at(1, 1)
    assert torch.allclose(pd.vector, model.trace(CLEAN)._resid[1][1] - model.trace(CORRUPT)._resid[1][1], atol=1e-5)


def test_cell_predictions_are_that_runs_top_tokens(model):
    p = lw.Patching(model, CLEAN, CORRUPT, metric_of(model))
    value, top = p.cell_predictions(1, 1, k=3)
    ref, _, _ = reference_grid(model, CLEAN, CORRUPT, metric_of(model), "resid")
    assert value == pytest.approx(ref[1, 1].item(), abs=1e-4)
    probs = p.cell_logits(1, 1).softmax(-1)
    assert [t.id for t in top] == probs.topk(3).indices.tolist()
    assert p.cell_predictions(1, 0)[0] == pytest.approx(p.corrupt_metric)  # before the difference: the corrupt run


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: lw.patch(m, CLEAN, "The dog is in the big", metric=lw.logit_diff(" cat", " the")),
            "same number of tokens",
        ),
        (lambda m: lw.patch(m, CLEAN, CORRUPT, metric=lw.logit_diff(" sat", " the")), "is 2 tokens"),
        (lambda m: lw.patch(m, CLEAN, CLEAN, metric=lw.logit_diff(" cat", " the")), "same tokens"),
        (
            lambda m: lw.patch(m, CLEAN, CORRUPT, metric=lw.logit_diff(" cat", " the"), over="neurons"),
            "over must be one of",
        ),
        (
            lambda m: lw.patch(m, CLEAN, CORRUPT, metric=lw.logit_diff(" cat", " the"), positions=[9]),
            "position 9 is out of range",
        ),
        (lambda m: lw.patch(m, CLEAN, CORRUPT, metric=lw.logit_diff(" cat", " the"), method="fast"), "method must be"),
        (lambda m: lw.patch(m, CLEAN, CORRUPT, metric="logit_diff"), "metric must be"),
        (lambda m: lw.patch(m, CLEAN, CORRUPT, metric=lambda lg: lg.sum()), "one number per run"),
        (
            lambda m: lw.Patching(m, CLEAN, CORRUPT, lw.logit_diff(" cat", " the")).cell_predictions(5, 0),
            "layer 5 is out of range",
        ),
        (lambda m: lw.causal_trace(m, CLEAN, ""), "subject is empty"),
        (lambda m: lw.causal_trace(m, CLEAN, "The bird"), "not in the prompt"),
        (lambda m: lw.steer(m, "The cat", torch.ones(7), 1.0, layer=1), "has 7 values"),
        (lambda m: lw.steer(m, "The cat", torch.zeros(m.d_model), 1.0, layer=1), "all zeros"),
        (lambda m: lw.steer(m, "The cat", torch.ones(m.d_model), 1.0), "needs layer="),
        (lambda m: lw.steer(m, "The cat", torch.ones(m.d_model), 1.0, layer=9), "layer 9 is out of range"),
        (
            lambda m: lw.steer(m, "The cat", torch.ones(m.d_model), float("nan"), layer=1),
            "alpha must be a finite number",
        ),
        (lambda m: lw.steer(m, "The cat", torch.ones(m.d_model), 1e39, layer=1), "non-finite"),
    ],
)
def test_bad_input_is_named(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)


def test_the_length_error_shows_both_tokenisations():
    model = lw.load_model("tiny-llama")
    longer = "The dog is in the big"
    with pytest.raises(ValueError) as err:
        lw.patch(model, CLEAN, longer, metric=lw.logit_diff(" cat", " the"))
    # Each prompt's tokens as the model splits them (tiny-llama splits " big" into " b", "i", "g").
    clean, corrupt = model.trace(CLEAN).tokens, model.trace(longer).tokens
    assert f"clean is {len(clean)} tokens {clean}" in str(err.value)
    assert f"corrupt is {len(corrupt)} tokens {corrupt}" in str(err.value)


def test_an_encoder_is_refused():
    with pytest.raises(ValueError, match="encoder"):
        lw.patch(lw.load_model("tiny-bert"), CLEAN, CORRUPT, metric=lw.kl_to_clean())


def test_unicode_prompts_patch_and_report_their_tokens():
    model = lw.load_model("tiny-gpt2")
    res = lw.patch(model, "Le café 東京 🤖 is", "Le cafè 東京 🤖 is", metric=lw.kl_to_clean(), progress=False)
    assert "".join(res.tokens) == "Le café 東京 🤖 is" and "".join(res.corrupt_tokens) == "Le cafè 東京 🤖 is"
    assert res.scores.isfinite().all()


def test_steer_positions_are_checked_and_negative_ones_count_from_the_end():
    model = lw.load_model("tiny-llama")
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    n = len(model.trace("The cat").tokens) + 4  # the prompt and 4 generated tokens
    with pytest.raises(ValueError, match=f"position {n} is out of range: the prompt and its generation have positions"):
        lw.steer(model, "The cat", v, 5.0, layer=1, positions=[n], max_new_tokens=4)
    with pytest.raises(ValueError, match="positions is empty"):
        lw.steer(model, "The cat", v, 5.0, layer=1, positions=[], max_new_tokens=4)
    last = lw.steer(model, "The cat", v, 5.0, layer=1, positions=[-1], max_new_tokens=4)
    same = lw.steer(model, "The cat", v, 5.0, layer=1, positions=[n - 1], max_new_tokens=4)
    assert last.steered_ids == same.steered_ids and last.kl_mean == pytest.approx(same.kl_mean, abs=1e-6)


def test_a_steering_experiment_keeps_its_baseline():
    model = lw.load_model("tiny-llama")
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(2))
    experiment = lw.Steering(model, "The cat is", max_new_tokens=4)
    for alpha in (-3.0, 0.0, 3.0):
        got, want = (
            experiment.run(v, alpha, layer=1),
            lw.steer(model, "The cat is", v, alpha, layer=1, max_new_tokens=4),
        )
        assert (got.baseline_ids, got.steered_ids) == (want.baseline_ids, want.steered_ids)
        assert got.kl_mean == pytest.approx(want.kl_mean, abs=1e-6)
