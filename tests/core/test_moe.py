"""Mixtures of experts (core/adapters/moe.py) on their tiny random models, against Hugging Face's own numbers.

The router against the model's ``output_router_logits`` (softmax, top-k, the family's renormalisation); the
expert units against the fused expert weights applied to what HF's experts module received, and against the
MLP's own output (the units through the down projections, weighted by the router, give it back); attention,
activations, patching, attribution, steering and the neuron analyses against the references the dense
families use.
"""

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses import neurons
from llmasos_widgets.analyses.neuron_index import NeuronIndex
from llmasos_widgets.core.tiny import MOE_NAMES
from tests._numbers import assert_greedy, assert_ranked
from tests.analyses.test_attribution import captum_ig, close
from tests.analyses.test_causal import reference_grid
from tests.conftest import eager_outputs

TEXT = "The capital of France is Paris. 大型语言模型 🤖🧠 naïve café"


@pytest.fixture(scope="module", params=MOE_NAMES)
def model(request):
    return lw.load_model(request.param)


@pytest.fixture(scope="module")
def trace(model):
    return model.trace(TEXT)


def hf_moe_inputs(model, ids):
    """What each HF experts module received (input rows, top-k ids and weights), and each MoE block's output."""
    seen, handles = {}, []
    for layer, block in enumerate(model.adapter.blocks()):
        handles.append(
            block.mlp.experts.register_forward_pre_hook(
                lambda m, args, kwargs, i=layer: seen.__setitem__(("in", i), [a.detach().clone() for a in args]),
                with_kwargs=True,
            )
        )
        handles.append(block.mlp.register_forward_hook(lambda m, a, out, i=layer: seen.__setitem__(("out", i), out[0])))
    try:
        with torch.no_grad():
            model.model(torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    return seen


# -- the router and the units ---------------------------------------------------------------------
def test_the_router_equals_hf_router_logits_softmax_top_k(model, trace):
    with torch.no_grad():
        out = model.model(torch.tensor([trace.token_ids]), output_router_logits=True)
    config, k = model.model.config, model.adapter.top_k
    renormalise = getattr(config, "norm_topk_prob", True)  # Mixtral always renormalises
    for layer in range(model.n_layers):
        probs = torch.softmax(out.router_logits[layer].float(), dim=-1)  # [pos, n_experts]
        routing = trace.router(layer)
        assert routing.experts.shape == (len(trace), k) and routing.n_experts == 4
        for pos in range(len(trace)):
            assert_ranked(routing.experts[pos].tolist(), probs[pos], tol=1e-6, k=k)
        chosen = probs.gather(1, routing.experts)
        expected = chosen / chosen.sum(-1, keepdim=True) if renormalise else chosen
        assert torch.allclose(routing.weights, expected, atol=1e-6)
        dense = routing.dense
        assert torch.allclose(dense.gather(1, routing.experts), routing.weights) and (dense > 0).sum(-1).eq(k).all()


def test_mixtral_and_qwen3_weights_sum_to_one_olmoe_and_qwen2_do_not(model, trace):
    sums = trace.router(0).weights.sum(-1)
    if model.name in ("tiny-mixtral", "tiny-qwen3-moe"):
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
    else:
        assert (sums < 1 - 1e-3).all()


def test_units_are_the_experts_hidden_values_recomputed_from_hf_weights(model, trace):
    seen = hf_moe_inputs(model, trace.token_ids)
    a = model.adapter
    E, d_e, d_s = a.n_experts, a.d_expert, a.d_shared
    for layer in range(model.n_layers):
        x, top_k_index, top_k_weights = seen[("in", layer)]  # what HF's experts module got: [pos, d], [pos, k] x 2
        mlp = a.blocks()[layer].mlp
        units = trace[f"blocks.{layer}.mlp.hook_post"]
        assert units.shape == (len(trace), E * d_e + d_s)
        # HF routed these tokens to these experts: the trace's routing is the one the forward pass used.
        assert torch.equal(trace.router(layer).experts, top_k_index)
        ref = torch.zeros(len(trace), E, d_e)
        for pos in range(len(trace)):
            for e in top_k_index[pos].tolist():
                gate_up = mlp.experts.gate_up_proj[e] @ x[pos]  # [2 d_expert]
                ref[pos, e] = torch.nn.functional.silu(gate_up[:d_e]) * gate_up[d_e:]
        assert torch.allclose(units[:, : E * d_e].view(len(trace), E, d_e), ref, atol=1e-6)
        # Units of experts a token was not sent to are exactly 0.
        sent = torch.zeros(len(trace), E, dtype=torch.bool).scatter_(1, top_k_index, True)
        assert units[:, : E * d_e].view(len(trace), E, d_e)[~sent].eq(0).all()
        # Through the down projections, weighted by the router (and the shared gate), they give the MLP's output.
        rows = neurons.neuron_output_weights(model, layer)  # [width, d_model]
        scale = torch.cat([trace.router(layer).dense.repeat_interleave(d_e, dim=1), torch.ones(len(trace), d_s)], 1)
        if d_s:
            scale[:, E * d_e :] = trace.router(layer).shared_gate[:, None]
        rebuilt = (units * scale) @ rows
        assert torch.allclose(rebuilt, seen[("out", layer)], atol=1e-5)


def test_the_shared_expert_is_qwen2_moes_own():
    model = lw.load_model("tiny-qwen2-moe")
    trace = model.trace(TEXT)
    shared = model.adapter.blocks()[1].mlp.shared_expert
    gate = model.adapter.blocks()[1].mlp.shared_expert_gate
    kept = {}
    h = shared.down_proj.register_forward_pre_hook(lambda m, args: kept.__setitem__("u", args[0]))
    g = gate.register_forward_hook(lambda m, args, out: kept.__setitem__("g", out))
    try:
        with torch.no_grad():
            model.model(torch.tensor([trace.token_ids]))
    finally:
        h.remove()
        g.remove()
    assert model.adapter.d_shared == 48
    assert torch.allclose(trace.mlp_post(1)[:, 4 * 32 :], kept["u"].view(len(trace), -1), atol=1e-6)
    assert torch.allclose(trace.router(1).shared_gate, torch.sigmoid(kept["g"]).view(-1), atol=1e-6)
    assert model.adapter.describe_neuron(4 * 32 + 5) == (-1, 5)


# -- the parts every family has -----------------------------------------------------------------------
def test_attention_and_activations_equal_hf_eager(model, trace):
    out = eager_outputs(model, trace.token_ids)
    for layer in range(model.n_layers):
        assert torch.allclose(trace.attention(layer), out.attentions[layer][0], atol=1e-5)
        assert torch.allclose(trace[f"blocks.{layer}.hook_resid_pre"], out.hidden_states[layer][0], atol=1e-5)
    last = model.adapter.final_norm()(trace[f"blocks.{model.n_layers - 1}.hook_resid_post"])
    assert torch.allclose(last, out.hidden_states[-1][0], atol=1e-5)
    assert torch.allclose(trace.logits, out.logits[0], atol=1e-4)


def test_olmoe_queries_and_keys_are_normed_over_the_whole_projection_and_clipped():
    model = lw.load_model("tiny-olmoe")
    config = model.model.config
    config.clip_qkv = 0.5  # a clip that bites on these random weights: the pattern must change and still match
    try:
        trace = model.trace(TEXT)
        out = eager_outputs(model, trace.token_ids)
        for layer in range(model.n_layers):
            assert torch.allclose(trace.attention(layer), out.attentions[layer][0], atol=1e-5)
        unclipped = lw.load_model("tiny-olmoe")
        assert not torch.allclose(trace.attention(1), unclipped.trace(TEXT).attention(1), atol=1e-3)
    finally:
        config.clip_qkv = None


def test_patching_equals_a_plain_hook_loop(model):
    metric = lw.logit_diff(" cat", " the")
    for over in ("resid", "mlp", "heads"):
        res = lw.patch(model, "The cat is in the", "The dog is in the", metric=metric, over=over, progress=False)
        ref, _, _ = reference_grid(model, "The cat is in the", "The dog is in the", metric, over)
        assert (res.values - ref).abs().max() <= 1e-4, over


@pytest.mark.filterwarnings("ignore:integrated gradients' completeness gap")  # 16 steps: as captum's, unconverged
def test_integrated_gradients_equal_captum(model):
    res = lw.attribute(model, "The capital of France is", target=" Paris", n_steps=16, progress=False)
    close(res.scores, captum_ig(model, model.tokenizer.encode("The capital of France is"), " Paris", 16))


def test_steering_at_zero_is_the_plain_generation(model):
    res = lw.steer(model, "The cat", torch.ones(model.d_model), 0.0, layer=1, max_new_tokens=6)
    assert res.steered_ids == res.baseline_ids and len(res.baseline_ids) == 6
    assert_greedy(model, model.tokenizer("The cat")["input_ids"], res.baseline_ids)


# -- neurons ---------------------------------------------------------------------------------------------
def test_a_neuron_writes_its_experts_down_projection_row(model):
    a = model.adapter
    e, i = 2, 7
    neuron = e * a.d_expert + i
    assert a.describe_neuron(neuron) == (e, i)
    row = a.blocks()[1].mlp.experts.down_proj[e][:, i]  # [d_model]: expert e's down projection, column i
    w_u, gain = neurons.unembedding(model)
    assert torch.allclose(neurons.vocab_logits(model, 1, neuron), w_u @ (gain * row), atol=1e-6)
    assert neurons.d_mlp(model) == a.n_experts * a.d_expert + a.d_shared


def test_top_neurons_are_units_of_the_tokens_experts(model, trace):
    top = neurons.top_neurons(trace, 1, 3, k=5)
    units = trace.mlp_post(1)[3]
    assert_ranked(top.neurons.tolist(), units, tol=1e-6, k=5)
    sent = set(trace.router(1).experts[3].tolist())
    for n in top.neurons.tolist():
        expert, _ = model.adapter.describe_neuron(n)
        assert expert in sent or expert == -1


def test_contributions_equal_the_chain_rule_through_the_router(model, trace):
    """activation × d logit / d unit, the gradient by hand: the routing weight times the down row · d logit / d out."""
    pos, layer = 4, 0
    c = neurons.neuron_contributions(trace, layer, pos, k=10)
    ids = torch.tensor([trace.token_ids[: pos + 1]])
    kept = {}

    def keep(m, args, out):
        out.retain_grad()
        kept["out"] = out

    h = model.adapter.blocks()[layer].mlp.register_forward_hook(keep)
    try:
        logit = model.model(ids).logits[0, pos, c.target]
        logit.backward()
    finally:
        h.remove()
        model.model.zero_grad()
    g = kept["out"].grad[0, pos]  # d logit / d MLP output [d_model]
    a = model.adapter
    routing = trace.router(layer)
    scale = routing.dense[pos].repeat_interleave(a.d_expert)
    if a.d_shared:
        scale = torch.cat([scale, routing.shared_gate[pos].expand(a.d_shared)])
    grad = scale * (neurons.neuron_output_weights(model, layer) @ g)
    ref = trace.mlp_post(layer)[pos] * grad
    assert_ranked(c.neurons.tolist(), ref, tol=1e-5 * float(ref.abs().max()), k=10)
    assert torch.allclose(c.contributions, ref[c.neurons], atol=1e-5 * float(ref.abs().max()))


def test_a_neuron_index_reads_the_units_a_trace_reads(model, trace):
    index = NeuronIndex.build(model, [TEXT, "The quick brown fox"], layers=[1], top_k=4, progress=False)
    neuron = int(trace.mlp_post(1).amax(0).argmax())
    best = index.top_examples(1, neuron)[0]
    assert best.text_index == 0
    assert best.activation == pytest.approx(float(trace.mlp_post(1)[:, neuron].max()), rel=1e-4)


def test_a_dense_model_has_no_router():
    trace = lw.load_model("tiny-llama").trace("Hello")
    with pytest.raises(ValueError, match="not a mixture of experts"):
        trace.router(0)
    with pytest.raises(ValueError, match="exists in mixtures of experts only"):
        lw.core.hooks.site(trace.model, "blocks.0.mlp.hook_expert_weights")
    with pytest.raises(ValueError, match="no mlp.hook_shared_gate"):
        lw.core.hooks.site(lw.load_model("tiny-mixtral"), "blocks.0.mlp.hook_shared_gate")


def test_a_model_mixing_dense_and_moe_layers_is_refused_naming_them():
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    tiny = lw.load_model("tiny-qwen3-moe")
    config = Qwen3MoeConfig(**{**tiny.model.config.to_dict(), "mlp_only_layers": [0], "intermediate_size": 64})
    with pytest.raises(ValueError, match=r"dense MLP layers \(0\) among its mixture-of-experts layers"):
        lw.LanguageModel("mixed", Qwen3MoeForCausalLM(config), tiny.tokenizer)
