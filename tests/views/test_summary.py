"""views/summary.py: what each view's output says on a host that cannot run widgets (GitHub, nbviewer).

Every view's mime bundle keeps the widget and adds a text summary and a static table whose numbers are
computed here again from the trace (not read back from the view), with model text escaped.
"""

from __future__ import annotations

import html
import re
import warnings

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.lens import logit_lens
from llmasos_widgets.views import summary

TEXT = "The capital of France is"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def trace(model):
    return model.trace(TEXT)


def shown(view) -> tuple[str, str]:
    data, _ = view._repr_mimebundle_()
    assert WIDGET in data  # the live widget is still there for JupyterLab
    assert " at 0x" not in data["text/plain"]
    return data["text/plain"], data["text/html"]


def test_tokens_view_names_its_model_tokens_and_top_predictions(trace):
    text, page = shown(lw.TokensView(trace))
    first, tokens, predictions = text.splitlines()
    assert first == "TokensView · tiny-llama · 5 tokens"
    assert tokens == "tokens: 'The' ' capital' ' of' ' France' ' is'"
    top = torch.softmax(trace.logits_at(-1).float(), -1).topk(5)
    expected = ", ".join(
        f"{trace.model.decode_token(int(i))!r} {float(p):.2f}" for p, i in zip(top.values, top.indices, strict=True)
    )
    assert predictions == f"next token after ' is': {expected}"
    assert html.escape(predictions) in page and page.startswith("<table")


def test_model_text_is_escaped_in_the_table_and_repr_is_short(model):
    view = lw.TokensView(model.trace("<b>bold</b> 大型语言 🤖 café"))
    text, page = shown(view)
    assert "<" not in re.sub(r"</?(table|tr|th|td|span)( [^>]*)?>", "", page)  # only the table's own tags
    assert "&#x27;&lt;&#x27; &#x27;b&#x27;" in page
    assert "大" in text or "\\ufffd" in text or "�" in text
    assert repr(view) == f"<TokensView · tiny-llama · {len(view.tokens)} tokens>"


def test_attention_view_gives_the_selected_heads_largest_weights(trace):
    view = lw.AttentionView(trace, layer=1, head=2, token=4)
    text, _ = shown(view)
    row = trace.attention(1)[2, 4].float()
    order = row.argsort(descending=True)[:3]
    expected = ", ".join(f"{trace.tokens[int(i)]!r} {float(row[i]):.2f}" for i in order)
    assert f"L1H2: from ' is' (#4) most weight on {expected}" in text


def test_saliency_view_lists_its_largest_scores_and_shades_the_tokens(model):
    result = lw.attribute(model, TEXT, method="saliency", progress=False)
    text, page = shown(lw.SaliencyView(result))
    scores = result.scores[0]
    order = scores.abs().argsort(descending=True)[:3]
    expected = ", ".join(f"{result.input_tokens[int(i)]!r} {summary.number(float(scores[i]))}" for i in order)
    assert f"largest scores: {expected}" in text
    assert page.count("background:rgba(") == len(result.input_tokens)
    lazy, _ = shown(lw.SaliencyView(model.trace(TEXT)))
    assert "computed when the view first asks" in lazy


def test_lens_neurons_concepts_patching_steering_features_and_explorer_say_their_numbers(model, trace):
    lens_text, _ = shown(lw.LensView(trace))
    last = logit_lens(trace, trace.n_layers - 1)
    assert f"L{trace.n_layers - 1} {model.decode_token(int(last.ids[-1, 0]))!r}" in lens_text

    acts = trace.mlp_post(1)[:, 3].float()
    neuron_text, _ = shown(lw.NeuronView(trace, layer=1, neuron=3))
    i = int(acts.argmax())
    assert f"neuron 1.3: highest here on {trace.tokens[i]!r} (#{i}) at {summary.number(float(acts[i]))}" in neuron_text

    shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CAVs of a tiny random model are unreliable
        result = lw.tcav(model, ["The capital"], 5, [shout], [1], n_random=2, progress=False)
    concept_text, _ = shown(lw.ConceptView(result))
    row = result.rows()[0]
    assert f"shout at layer 1: score {summary.number(row['score'])}" in concept_text

    res = lw.patch(
        model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"), progress=False
    )
    patch_text, _ = shown(lw.PatchingView(res))
    layer, col = divmod(int(res.scores.abs().argmax()), res.scores.shape[1])
    assert f"largest score {summary.number(float(res.scores[layer, col]))} at layer {layer}" in patch_text
    assert f"clean {summary.number(res.clean_metric)}, corrupt {summary.number(res.corrupt_metric)}" in patch_text

    direction = lw.Direction(torch.randn(64, generator=torch.Generator().manual_seed(0)), layer=1, name="random")
    steer_text, _ = shown(lw.SteeringView(model, "The cat is in the", direction=direction, max_new_tokens=3))
    assert f"direction 'random' at layer 1: norm {summary.number(direction.norm)}" in steer_text

    sae = lw.SAE.random(64, 32, 4, layer=1)
    feature_text, _ = shown(lw.FeatureView(trace, sae))
    codes = sae.encode(trace, sparse=True)
    top = f"#{int(codes.indices[-1, 0])} {summary.number(float(codes.values[-1, 0]))}"
    assert f"strongest at ' is' (#4): {top}" in feature_text

    explorer_text, _ = shown(lw.Explorer(trace, panels=["tokens", "lens"]))
    assert "panels: tokens, lens" in explorer_text


def test_numbers_never_print_a_negative_zero():
    assert summary.number(-0.004) == "0.00" and summary.number(-0.006) == "-0.01"


def test_an_evaluation_view_names_its_prompts_methods_and_metrics(model):
    ev = lw.evaluate(
        model,
        ["The cat sat on the", "A dog ran to"],
        methods=["saliency", "random"],
        infidelity_samples=0,
        progress=False,
    )
    text, _ = shown(lw.EvaluationView(ev, curve="insertion"))
    assert "2 prompts; methods: saliency, random" in text and "curve insertion of the mean over prompts" in text
    assert f"metrics: {', '.join(ev.metrics)}" in text
