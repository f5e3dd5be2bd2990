"""Every supported causal family against Hugging Face's own computation: one file, one line per family.

Each family is a tiny random model built from its HF config (core/tiny.py). The references are HF's eager
forward (``output_attentions`` / ``output_hidden_states``) and plain hooks on the modules named in ``FAMILIES``
below: written here from each family's modeling code, never read from our adapter, so an adapter that names the
wrong module fails. Captum is called directly for attribution. Adding a family: its tiny model and one line.

Each ``measure_*`` returns the largest absolute difference from its reference per quantity (the tests bound them;
``bench/families.py`` prints them as a family x analysis table).
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient

import llmasos_widgets as lw
from llmasos_widgets.analyses import causal
from llmasos_widgets.analyses.neurons import neuron_contributions, top_neurons
from llmasos_widgets.core.adapters import adapter_class
from llmasos_widgets.core.hooks import read
from tests._numbers import assert_greedy
from tests.analyses.test_attribution import captum_ig, embeds_forward

# Where HF keeps each site, {l} the layer: the block, the module whose output is what attention adds
# (hook_attn_out: after a post-attention norm where the family has one), the output projection (its input is
# attn.hook_z), what the MLP adds (hook_mlp_out) and the MLP's down projection (its input is mlp.hook_post).
_LLAMA = ("model.layers.{l}", "self_attn.o_proj", "self_attn.o_proj", "mlp", "mlp.down_proj")
_MOE = ("model.layers.{l}", "self_attn.o_proj", "self_attn.o_proj", "mlp", None)
_POST_NORMS = (
    "model.layers.{l}",
    "post_attention_layernorm",
    "self_attn.o_proj",
    "post_feedforward_layernorm",
    "mlp.down_proj",
)
FAMILIES = {
    "tiny-llama": _LLAMA,
    "tiny-gpt2": ("transformer.h.{l}", "attn.c_proj", "attn.c_proj", "mlp", "mlp.c_proj"),
    "tiny-gemma": _LLAMA,
    "tiny-gemma2": _POST_NORMS,
    "tiny-gemma3": _POST_NORMS,
    "tiny-neox": ("gpt_neox.layers.{l}", "attention.dense", "attention.dense", "mlp", "mlp.dense_4h_to_h"),
    "tiny-phi3": _LLAMA,
    "tiny-olmo2": _POST_NORMS,
    # Mixtures of experts: their units have no module (fused 3-D expert weights), so "post" is None here and
    # tests/core/test_moe.py checks mlp.hook_post against HF's expert weights and router.
    "tiny-mixtral": _MOE,
    "tiny-qwen2-moe": _MOE,
    "tiny-qwen3-moe": _MOE,
    "tiny-olmoe": _MOE,
}
TEXT = "The café in Paris is naïve: 大型语言模型 🤖 reads the cat on the mat."
CLEAN, CORRUPT = "The cat sat on the warm mat in the", "The dog sat on the warm mat in the"


@pytest.fixture(scope="module", params=list(FAMILIES))
def model(request):
    return lw.load_model(request.param)


def module(model, what, layer):
    """The HF module of ``what`` ("block", "attn", "z", "mlp", "post") at ``layer``, by its path in FAMILIES."""
    block, *parts = FAMILIES[model.name]
    path = block.format(l=layer)
    if what != "block":
        path += "." + parts[("attn", "z", "mlp", "post").index(what)]
    return model.model.get_submodule(path)


def hf_forward(model, ids, *, replace=None, keep=None, eager=False):
    """HF's own forward on ``ids``; ``keep[(what, layer)]`` collects every site; ``replace``: (what, layer, fn)."""
    handles, previous = [], model.model.config._attn_implementation

    def reader(what, layer, on_input):
        if on_input:
            return lambda m, args, kwargs: keep.__setitem__(
                (what, layer), (args[0] if args else kwargs["hidden_states"])[0]
            )
        return lambda m, args, out: keep.__setitem__((what, layer), (out[0] if isinstance(out, tuple) else out)[0])

    try:
        if eager:
            model.model.set_attn_implementation("eager")
        for layer in range(model.n_layers) if keep is not None else ():
            for what in ("block", "attn", "z", "mlp", "post")[: 4 if FAMILIES[model.name][4] is None else 5]:
                m, on_input = module(model, what, layer), what in ("z", "post")
                if on_input:
                    handles.append(m.register_forward_pre_hook(reader(what, layer, True), with_kwargs=True))
                else:
                    handles.append(m.register_forward_hook(reader(what, layer, False)))
            handles.append(
                module(model, "block", layer).register_forward_pre_hook(reader("resid", layer, True), with_kwargs=True)
            )
        if replace is not None:
            what, layer, fn = replace
            m = module(model, "block" if what == "resid" else what, layer)
            if what in ("resid", "z"):
                handles.append(
                    m.register_forward_pre_hook(
                        lambda _, args, kwargs: (
                            ((fn(args[0]), *args[1:]), kwargs)
                            if args
                            else (args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])})
                        ),
                        with_kwargs=True,
                    )
                )
            else:
                handles.append(m.register_forward_hook(lambda _, args, out: fn(out)))
        with torch.no_grad():
            return model.model(
                torch.tensor([ids]), output_attentions=eager, output_hidden_states=eager, use_cache=False
            )
    finally:
        model.model.set_attn_implementation(previous)
        for h in handles:
            h.remove()


def gap(ours, ref) -> float:
    """The largest absolute difference of two tensors of one shape."""
    ours, ref = torch.as_tensor(ours).double(), torch.as_tensor(ref).double()
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float((ours - ref).abs().max())


# -- (1) attention patterns and TransformerLens-named activations ----------------------------------------
def measure_trace(model) -> dict[str, float]:
    trace = model.trace(TEXT)
    ids = trace.token_ids
    keep: dict = {}
    ref = hf_forward(model, ids, keep=keep, eager=True)
    window = max((model.adapter.window(layer) or 0) for layer in range(model.n_layers))
    assert len(ids) > 2 * window  # the text is longer than any sliding window, so windows show
    sites = {"hook_resid_pre": "resid", "hook_resid_post": "block", "hook_attn_out": "attn", "hook_mlp_out": "mlp",
             "attn.hook_z": "z", "mlp.hook_post": "post"}  # fmt: skip
    names = [f"blocks.{layer}.{site}" for layer in range(model.n_layers) for site in sites]
    with torch.no_grad():
        acts = {k: v[0] for k, v in read(model, names, input_ids=torch.tensor([ids])).items()}
    patterns = torch.stack([ref.attentions[layer][0] for layer in range(model.n_layers)])
    out = {"attention": gap(torch.stack([trace.attention(layer) for layer in range(model.n_layers)]), patterns)}
    out["activations"] = max(
        [gap(trace[f"blocks.{layer}.hook_resid_pre"], ref.hidden_states[layer][0]) for layer in range(model.n_layers)]
        + [
            gap(trace[f"blocks.{layer}.mlp.hook_post"], keep[("post", layer)])
            for layer in range(model.n_layers)
            if ("post", layer) in keep
        ]
        + [
            gap(acts[f"blocks.{layer}.{site}"], keep[(what, layer)])
            for layer in range(model.n_layers)
            for site, what in sites.items()
            if (what, layer) in keep
        ]  # fmt: skip
    )
    # TransformerLens's meaning: the block adds exactly hook_attn_out and hook_mlp_out to the stream.
    out["resid_post = pre + attn + mlp"] = max(
        gap(
            acts[f"blocks.{layer}.hook_resid_pre"]
            + acts[f"blocks.{layer}.hook_attn_out"]
            + acts[f"blocks.{layer}.hook_mlp_out"],
            keep[("block", layer)],
        )  # fmt: skip
        for layer in range(model.n_layers)
    )
    out["logits"] = gap(trace.logits_at(-1), ref.logits[0, -1])  # the final norm, and soft-cap
    # The attention view's index: a token's row and column in every layer and head, and the overview's pooling.
    index, pos = lw.AttentionIndex(trace), len(ids) // 2
    out["attention index"] = max(
        gap(index.rows(pos), patterns[:, :, pos]),
        gap(index.columns(pos), patterns[..., pos]),
        gap(index.overview(0, size=len(ids)).thumbs, patterns[0]),
    )
    return out


def test_attention_and_activations_equal_hf_eager(model):
    found = measure_trace(model)
    assert found["attention"] <= 1e-5 and found["attention index"] <= 1e-5, found
    assert max(found["activations"], found["resid_post = pre + attn + mlp"], found["logits"]) <= 1e-4, found


# -- (2) activation patching against a plain hook loop ------------------------------------------------------
def measure_patching(model, over) -> float:
    metric = lw.logit_diff(" cat", " the")
    res = lw.patch(model, CLEAN, CORRUPT, metric=metric, over=over, progress=False)
    ids = {name: model.tokenizer(text)["input_ids"] for name, text in (("clean", CLEAN), ("corrupt", CORRUPT))}
    windows = [model.adapter.window(i) or 0 for i in range(model.n_layers)]
    assert len(ids["clean"]) == len(ids["corrupt"]) > max(windows)  # past the window: it shows
    clean: dict = {}
    clean_logits = hf_forward(model, ids["clean"], keep=clean).logits[0, -1]
    bound = metric.bind(model)
    what = {"resid": "resid", "attn": "attn", "mlp": "mlp", "heads": "z"}[over]
    H, T = model.n_heads, len(ids["clean"])
    ref = torch.zeros(model.n_layers, H if over == "heads" else T)
    for layer in range(model.n_layers):
        src = clean[(what, layer)]
        for index in range(ref.shape[1]):

            def fn(t, index=index, src=src):
                t = t.clone()
                if over == "heads":
                    d = src.shape[-1] // H
                    t[0, :, index * d : (index + 1) * d] = src[:, index * d : (index + 1) * d]
                else:
                    t[0, index] = src[index]
                return t

            out = hf_forward(model, ids["corrupt"], replace=(what, layer, fn)).logits[0, -1]
            ref[layer, index] = bound(out[None], clean_logits)[0]
    return gap(res.values, ref)


@pytest.mark.parametrize("over", causal.SITES)
def test_patching_equals_a_plain_hook_loop(model, over):
    assert measure_patching(model, over) <= 1e-4


# -- (3) attribution against captum called directly ---------------------------------------------------------
def measure_attribution(model, reference=None) -> dict[str, float]:
    """Differences relative to the largest captum score (as tests/analyses/test_attribution.py's ``close``).

    Captum runs on ``reference`` (default: the model itself), a model of the same weights where captum cannot
    run ``model`` (it puts inputs on the first weight's device: ``meta`` for a model offloaded whole).
    """
    text, reference = "The capital of France is", reference or model
    ids = model.tokenizer.encode(text)
    ig = lw.attribute(model, text, target=" Paris", n_steps=8, progress=False).scores
    ig_ref = captum_ig(reference, ids, " Paris", 8)
    x = reference.model.get_input_embeddings()(torch.tensor([ids])).detach()  # Gemma's embedding scales by sqrt(d)
    ixg = lw.attribute(model, text, target=" Paris", method="input_x_gradient", progress=False).scores
    forward = embeds_forward(reference, model.tokenizer.encode(" Paris")[0])
    ixg_ref = InputXGradient(forward).attribute(x).sum(-1)
    return {
        "integrated gradients": gap(ig, ig_ref) / max(float(ig_ref.abs().max()), 1e-6),
        "input x gradient": gap(ixg, ixg_ref) / max(float(ixg_ref.abs().max()), 1e-6),
    }


@pytest.mark.filterwarnings("ignore:integrated gradients' completeness gap")
def test_attribution_equals_captum(model):
    found = measure_attribution(model)
    assert max(found.values()) <= 1e-4, found


# -- (4) steering --------------------------------------------------------------------------------------------
def measure_steering(model) -> dict[str, float]:
    """Tokens of the alpha = 0 run that differ from ``generate``; the greedy slack of a steered run under a hook."""
    ids = model.tokenizer.encode("The cat")
    res = lw.steer(model, "The cat", torch.ones(model.d_model), 0.0, layer=1, max_new_tokens=5)
    with torch.no_grad():
        generated = model.model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)[0, len(ids) :]
    differ = sum(a != b for a, b in zip(res.steered_ids, generated.tolist(), strict=True))
    differ += sum(a != b for a, b in zip(res.baseline_ids, res.steered_ids, strict=True))
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    res = lw.steer(model, "The cat", lw.Direction(v, 1), 4.0, max_new_tokens=5)
    hook = (module(model, "block", 1), lambda m, args, kwargs: ((args[0] + 4.0 * v, *args[1:]), kwargs) if args
            else (args, {**kwargs, "hidden_states": kwargs["hidden_states"] + 4.0 * v}))  # fmt: skip
    assert_greedy(model, ids, res.steered_ids, hook=hook)
    return {"steering at 0: tokens unlike generate": float(differ)}


def test_steering_at_zero_is_generate_and_steering_is_a_hook(model):
    assert measure_steering(model)["steering at 0: tokens unlike generate"] == 0


# -- (5) a sparse autoencoder trains on the family and reads its traces ----------------------------------------
def measure_sae(model) -> float:
    sae = lw.train_sae(model, lw.sample_texts()[:40], layer=-1, n_latents=64, k=4, batch_tokens=128, progress=False)
    assert sae.layer == model.n_layers - 1 and sae.quality.tokens > 0 and 0 < sae.quality.mean_l0 <= 4
    assert torch.isfinite(torch.tensor([sae.quality.fvu, sae.quality.ce_sae])).all()
    trace, keep = model.trace(TEXT), {}
    hf_forward(model, trace.token_ids, keep=keep)
    return gap(sae.encode(trace), sae.encode(keep[("block", model.n_layers - 1)]))


def test_an_sae_trains_and_reads_the_family(model):
    assert measure_sae(model) <= 1e-4


# -- (6) neurons: the MLP's hidden layer is the down projection's input -----------------------------------------
def measure_neurons(model) -> float:
    if FAMILIES[model.name][4] is None:
        pytest.skip("a mixture's expert units have no module: tests/core/test_moe.py checks them against HF's experts")
    trace = model.trace(TEXT)
    keep: dict = {}
    hf_forward(model, trace.token_ids, keep=keep)
    layer, pos = model.n_layers - 1, 5
    post = keep[("post", layer)]
    width = model.model.config.to_dict().get("intermediate_size") or 4 * model.d_model  # GPT-2: n_inner None
    assert trace.mlp_post(layer).shape == post.shape == (len(trace), width)
    top = top_neurons(trace, layer, pos, k=3)
    # activation x gradient of the logit, by hand: the down projection's input a leaf in HF's own forward.
    target = int(trace.logits_at(pos).argmax())
    leaf = post[: pos + 1].clone().requires_grad_(True)
    handle = module(model, "post", layer).register_forward_pre_hook(lambda m, args: (leaf[None], *args[1:]))
    try:
        logit = model.model(torch.tensor([trace.token_ids[: pos + 1]]), use_cache=False).logits[0, pos, target]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logit, leaf)
    got = neuron_contributions(trace, layer, pos, target=target, k=3)
    by_hand = post[pos] * grad[pos]
    return max(
        gap(top.activations, post[pos, top.neurons]),
        gap(got.contributions, by_hand[got.neurons]),
        gap(got.contributions, by_hand.topk(3).values),
    )


def test_neurons_are_the_down_projections_input(model):
    assert measure_neurons(model) <= 1e-4


def test_an_unknown_family_names_the_supported_ones_and_how_to_add_one():
    with pytest.raises(ValueError, match="unsupported architecture 'mamba'") as err:
        adapter_class("mamba")
    for model_type in (
        "llama",
        "gemma2",
        "gemma3_text",
        "gpt_neox",
        "phi3",
        "olmo2",
        "gpt2",
        "bert",
        "mixtral",
        "olmoe",
    ):
        assert model_type in str(err.value)
    assert "Adding a family" in str(err.value)
    assert {lw.load_model(name).adapter.family for name in FAMILIES} == {
        "llama", "gpt2", "gemma", "gemma2", "gemma3", "gpt_neox", "phi3", "olmo2", "mixtral", "qwen2_moe", "qwen3_moe",
        "olmoe",
    }  # fmt: skip
