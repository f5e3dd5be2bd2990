"""circuits.py against independent references: the model's own forward with plain torch hooks, and the
TransformerLens definitions written out here."""

import pytest
import torch

import llmasos_widgets as lw
from tests.conftest import eager_outputs

TEXT = "The capital of France is"
IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


@pytest.fixture(scope="module", params=("tiny-llama", "tiny-gpt2"))
def model(request):
    return lw.load_model(request.param)


def ids_of(model, text):
    return model.tokenizer(text)["input_ids"]


def hf_logits(model, ids, hooks=()):
    """Last-position logits of the model's own forward with (module, kind, fn) torch hooks placed."""
    handles = [
        m.register_forward_pre_hook(fn) if kind == "pre" else m.register_forward_hook(fn) for m, kind, fn in hooks
    ]
    try:
        with torch.no_grad():
            return model.model(torch.tensor([ids])).logits[0, -1].float()
    finally:
        for h in handles:
            h.remove()


def w_o(model, layer):
    proj = model.adapter.attn_out_proj(layer)
    return (proj.weight if type(proj).__name__ == "Conv1D" else proj.weight.T).detach().float()


# -- decomposition ---------------------------------------------------------------------------------------
def test_components_sum_to_the_final_stream(model):
    parts = lw.decompose(model, TEXT)
    trace = model.trace(TEXT)
    assert torch.allclose(parts.final, trace.resid_pre(model.n_layers).float(), atol=1e-5)
    assert torch.allclose(parts.stack.sum(0), parts.final, atol=1e-4)
    assert torch.allclose(parts.stack[parts.index("embed")], trace.resid_pre(0).float(), atol=1e-6)


def test_a_head_is_what_zeroing_it_removes_from_attn_out(model):
    """Zeroing head h's slice of o_proj's input lowers o_proj's output (hook_attn_out) by exactly its term."""
    parts, ids = lw.decompose(model, TEXT), ids_of(model, TEXT)
    for layer in range(model.n_layers):
        proj, seen = model.adapter.attn_out_proj(layer), {}
        d = w_o(model, layer).shape[0] // model.n_heads
        keep = (proj, "post", lambda m, a, out, seen=seen: seen.__setitem__(len(seen), out[0].float()))
        hf_logits(model, ids, [keep])
        for h in range(model.n_heads):

            def zero(m, args, h=h, d=d):
                z = args[0].clone()
                z[..., h * d : (h + 1) * d] = 0
                return (z, *args[1:])

            hf_logits(model, ids, [(proj, "pre", zero), keep])
            assert torch.allclose(seen[0] - seen[h + 1], parts.stack[parts.index(f"L{layer}H{h}")], atol=1e-5)


def test_mlp_terms_are_the_mlp_outputs(model):
    parts, ids, seen = lw.decompose(model, TEXT), ids_of(model, TEXT), {}
    hooks = [
        (model.adapter.mlp(layer), "post", lambda m, a, out, layer=layer: seen.__setitem__(layer, out[0].float()))
        for layer in range(model.n_layers)
    ]
    hf_logits(model, ids, hooks)
    for layer in range(model.n_layers):
        assert torch.allclose(parts.stack[parts.index(f"L{layer} MLP")], seen[layer], atol=1e-6)


def test_models_with_post_norms_are_refused():
    with pytest.raises(ValueError, match="normalises attention's output"):
        lw.decompose(lw.load_model("tiny-gemma2"), TEXT)


# -- direct logit attribution -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ("tiny-llama", "tiny-gpt2", "tiny-gemma"))
def test_attributions_add_up_to_the_models_logit_difference(name):
    model = lw.load_model(name)
    dla = lw.direct_logit_attribution(model, TEXT, " Paris", " Rome")
    logits = hf_logits(model, ids_of(model, TEXT))
    a, b = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Paris", " Rome"))
    assert abs(dla.logit - float(logits[a] - logits[b])) < 1e-4
    assert abs(float(dla.values.sum()) + dla.constant - dla.logit) < 1e-3


def test_each_attribution_is_the_transformerlens_formula_on_llama():
    """apply_ln_to_stack on an RMS norm: component / rms(final stream) * norm weight, dotted with W_U[t] - W_U[b]."""
    model = lw.load_model("tiny-llama")
    dla = lw.direct_logit_attribution(model, TEXT, " Paris", " Rome")
    parts = lw.decompose(model, TEXT)
    norm = model.model.model.norm
    final = parts.final[-1]
    rms = (final.pow(2).mean() + norm.variance_epsilon).sqrt()
    w_u = model.model.lm_head.weight.detach().float()
    a, b = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Paris", " Rome"))
    expected = (parts.stack[:, -1] / rms * norm.weight.detach().float()) @ (w_u[a] - w_u[b])
    assert torch.allclose(dla.values, expected, atol=1e-5)
    assert dla.heads.shape == (2, 4) and dla.mlps.shape == (2,)
    assert dla.constant == 0.0


def test_attributions_on_smollm2_add_up(smollm2):
    dla = lw.direct_logit_attribution(smollm2, IOI_CLEAN, " Mary", " John")
    assert abs(float(dla.values.sum()) - dla.logit) < 2e-3 * max(1.0, abs(dla.logit))
    assert abs(dla.logit - 6.12) < 0.05  # notes: the clean logit difference of this pair


# -- induction ------------------------------------------------------------------------------------------------
def test_induction_loss_and_scores_equal_the_eager_forward():
    model = lw.load_model("tiny-llama")
    n = 6
    result = lw.induction(model, seq_len=n, batch=2, seed=3)
    losses, scores = [], torch.zeros(model.n_layers, model.n_heads)
    for row in result.tokens:
        out = eager_outputs(model, row.tolist())
        losses.append(torch.nn.functional.cross_entropy(out.logits[0, :-1], row[1:], reduction="none"))
        for layer, pattern in enumerate(out.attentions):  # TransformerLens: the stripe at offset -(n - 1)
            stripe = pattern[0].diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[:, -n:]
            scores[layer] += stripe.mean(-1) / len(result.tokens)
    assert torch.allclose(result.loss, torch.stack(losses).mean(0), atol=1e-5)
    assert torch.allclose(result.scores, scores, atol=1e-5)
    first = result.first
    assert torch.equal(result.tokens[:, first : first + n], result.tokens[:, first + n :])


def test_smollm2_does_induction(smollm2):
    result = lw.induction(smollm2, seq_len=20, batch=2)
    # random tokens: worse than uniform (ln 49152 = 10.8) on the first copy; copied on the second
    assert result.loss_first > 12 and result.loss_second < 7, (result.loss_first, result.loss_second)
    assert float(result.scores.max()) > 0.7 and result.scores.argmax() == 18 * 9 + 6  # head 18.6


# -- ablation --------------------------------------------------------------------------------------------------
def test_zero_ablation_equals_a_hook_loop(model):
    metric = lw.logit_diff(" Paris", " the")
    ids, d = ids_of(model, TEXT), w_o(model, 0).shape[0] // model.n_heads
    grid = lw.ablate_heads(model, TEXT, metric)
    bound = metric.bind(model)
    clean = hf_logits(model, ids)
    for layer in range(model.n_layers):
        for h in range(model.n_heads):

            def zero(m, args, h=h):
                z = args[0].clone()
                z[..., h * d : (h + 1) * d] = 0
                return (z, *args[1:])

            out = hf_logits(model, ids, [(model.adapter.attn_out_proj(layer), "pre", zero)])
            assert abs(float(grid[layer, h]) - float(bound(out[None], clean)[0])) < 1e-4
    together = lw.ablate(model, TEXT, metric, heads=[(0, 1), (1, 0)], mlps=[0])
    assert abs(together.clean - float(bound(clean[None], clean)[0])) < 1e-5

    def zero_mlp(m, a, out):
        return torch.zeros_like(out)

    def zero_heads(layer):
        def fn(m, args):
            z = args[0].clone()
            h = 1 if layer == 0 else 0
            z[..., h * d : (h + 1) * d] = 0
            return (z, *args[1:])

        return fn

    out = hf_logits(
        model,
        ids,
        [
            (model.adapter.attn_out_proj(0), "pre", zero_heads(0)),
            (model.adapter.attn_out_proj(1), "pre", zero_heads(1)),
            (model.adapter.mlp(0), "post", zero_mlp),
        ],
    )
    assert abs(together.ablated - float(bound(out[None], clean)[0])) < 1e-4


def test_mean_ablation_uses_the_mean_over_reference_tokens(model):
    metric, reference = lw.logit_diff(" Paris", " the"), ["The cat sat.", "Rome is in Italy and so on."]
    d = w_o(model, 1).shape[0] // model.n_heads
    zs = []
    for text in reference:
        hf_logits(
            model, ids_of(model, text), [(model.adapter.attn_out_proj(1), "pre", lambda m, a: zs.append(a[0][0]))]
        )
    mean = torch.cat(zs).mean(0)

    def to_mean(m, args):
        z = args[0].clone()
        z[..., 2 * d : 3 * d] = mean[2 * d : 3 * d]
        return (z, *args[1:])

    ids = ids_of(model, TEXT)
    bound, clean = metric.bind(model), hf_logits(model, ids)
    out = hf_logits(model, ids, [(model.adapter.attn_out_proj(1), "pre", to_mean)])
    result = lw.ablate(model, TEXT, metric, heads=[(1, 2)], how="mean", reference=reference)
    assert abs(result.ablated - float(bound(out[None], clean)[0])) < 1e-4
    grid = lw.ablate_heads(model, TEXT, metric, how="mean", reference=reference)
    assert abs(float(grid[1, 2]) - result.ablated) < 1e-4
    with pytest.raises(ValueError, match="reference texts"):
        lw.ablate(model, TEXT, metric, heads=[(1, 2)], how="mean")


# -- path patching -------------------------------------------------------------------------------------------
def reference_path_patch(model, clean, corrupt, metric, sender, receivers, to):
    """Wang et al.'s three runs with plain hooks on the Hugging Face modules."""
    blocks = model.model.model.layers
    d = blocks[0].self_attn.head_dim
    group = model.n_heads // model.model.config.num_key_value_heads
    ids_c, ids_x = ids_of(model, clean), ids_of(model, corrupt)
    z = {"c": {}, "x": {}}
    for key, ids in (("c", ids_c), ("x", ids_x)):
        hf_logits(
            model,
            ids,
            [
                (b.self_attn.o_proj, "pre", lambda m, a, i=i, key=key: z[key].__setitem__(i, a[0].clone()))
                for i, b in enumerate(blocks)
            ],
        )
    s_layer, s_head = sender

    def frozen(m, args, i):
        out = z["c"][i].clone()
        if i == s_layer:
            out[..., s_head * d : (s_head + 1) * d] = z["x"][i][..., s_head * d : (s_head + 1) * d]
        return (out, *args[1:])

    kept = {}
    proj = lambda i: getattr(blocks[i].self_attn, f"{to}_proj")  # noqa: E731
    layers = sorted({r for r, _ in receivers})
    hf_logits(
        model,
        ids_c,
        [(b.self_attn.o_proj, "pre", lambda m, a, i=i: frozen(m, a, i)) for i, b in enumerate(blocks)]
        + [(proj(i), "post", lambda m, a, o, i=i: kept.__setitem__(i, o.clone())) for i in layers],
    )

    def patched(m, a, o, i):
        o = o.clone()
        for r, h in receivers:
            if r == i:
                slot = h if to == "q" else h // group
                o[..., slot * d : (slot + 1) * d] = kept[i][..., slot * d : (slot + 1) * d]
        return o

    clean_logits = hf_logits(model, ids_c)
    out = hf_logits(model, ids_c, [(proj(i), "post", lambda m, a, o, i=i: patched(m, a, o, i)) for i in layers])
    return float(metric.bind(model)(out[None], clean_logits)[0])


@pytest.mark.parametrize("to", ("q", "k", "v"))
def test_path_patching_equals_three_hooked_runs_on_tiny_llama(to):
    model = lw.load_model("tiny-llama")
    metric, receivers = lw.logit_diff(" Paris", " Rome"), [(1, 1), (1, 3)]
    result = lw.path_patch(model, TEXT, "The capital of Italy is", metric, receivers, to=to)
    assert result.values[1].isnan().all()
    for h in range(model.n_heads):
        ref = reference_path_patch(model, TEXT, "The capital of Italy is", metric, (0, h), receivers, to)
        assert abs(float(result.values[0, h]) - ref) < 1e-4


def test_path_patching_on_the_ioi_prompts(smollm2):
    metric = lw.logit_diff(" Mary", " John")
    senders, receivers = [(8, 0), (10, 7)], [(14, 4), (15, 1)]
    result = lw.path_patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric, receivers, to="q", senders=senders)
    for sender in senders:
        ref = reference_path_patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric, sender, receivers, "q")
        assert abs(float(result.values[sender]) - ref) < 1e-3
    assert abs(result.clean - 6.12) < 0.05 and abs(result.corrupt + 5.49) < 0.05


def test_path_patching_refuses_a_sender_above_a_receiver():
    model = lw.load_model("tiny-llama")
    with pytest.raises(ValueError, match="below every receiver"):
        lw.path_patch(
            model, TEXT, "The capital of Italy is", lw.logit_diff(" Paris", " Rome"), [(0, 1)], senders=[(1, 0)]
        )
