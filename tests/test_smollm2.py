"""Integration tests on the bundled models (slow: they load real weights)."""

import pytest
import torch

import llmasos_widgets as lw
from tests.conftest import eager_outputs

pytestmark = pytest.mark.slow

LONG = (
    "In the beginning of the twentieth century, the city of Paris grew quickly. New lines of the metro "
    "opened every year, and artists from every country came to live in Montmartre. "
) * 8


def test_paris_is_the_top_prediction(smollm2):
    trace = smollm2.trace("The capital of France is")
    assert trace.tokens == ["The", " capital", " of", " France", " is"]
    assert trace.top_predictions(-1, k=5)[0].token == " Paris"


def test_attention_equals_eager_on_200_tokens(smollm2):
    trace = smollm2.trace(LONG, truncate=False)
    trace = smollm2.trace(smollm2.tokenizer.decode(trace.token_ids[:200]))
    assert len(trace) >= 195
    ref = eager_outputs(smollm2, trace.token_ids)
    diffs = [(trace.attention(layer) - ref.attentions[layer][0]).abs().max().item() for layer in range(trace.n_layers)]
    worst = max(diffs)
    assert worst <= 1e-5
    assert trace.attention(0).shape == (9, len(trace), len(trace))


def test_generation_trace_continues_with_paris(smollm2):
    trace = smollm2.generate_trace("The capital of France is", max_new_tokens=3)
    assert trace.tokens[5] == " Paris" and trace.generated[5] and not trace.generated[4]
    assert trace.text.startswith("The capital of France is Paris")


def test_minilm_loads_offline_and_its_attention_is_exact():
    model = lw.load_model("minilm-l6")
    assert (model.n_layers, model.n_heads, model.is_causal) == (6, 12, False)
    trace = model.trace("Paris is the capital of France.")
    ref = eager_outputs(model, trace.token_ids)
    assert max((trace.attention(layer) - ref.attentions[layer][0]).abs().max().item() for layer in range(6)) <= 1e-5
    with pytest.raises(ValueError, match="no language-model head"):
        trace.top_predictions(-1)


def test_a_gguf_file_loads_directly():
    from llmasos_widgets.core.models import bundled_path

    model = lw.load_model(str(bundled_path("smollm2-135m")))  # the .gguf path: dequantized in memory
    assert model.adapter.family == "llama" and model.n_layers == 30
    assert model.trace("The capital of France is").top_predictions(-1, k=1)[0].token == " Paris"


IOI = (
    "When Mary and John went to the store, John gave a drink to",
    "When Mary and John went to the store, Mary gave a drink to",
)


def test_ioi_patching_equals_the_plain_loop_and_finds_the_second_name(smollm2):
    import torch

    from tests.analyses.test_causal import hf_run

    metric = lw.logit_diff(" Mary", " John")
    res = lw.patch(smollm2, *IOI, metric=metric, progress=False)
    assert res.clean_metric == pytest.approx(6.12, abs=0.01) and res.corrupt_metric == pytest.approx(-5.49, abs=0.01)
    layer, position, _ = res.top_cells(1)[0]
    assert position == 9 and 12 <= layer <= 18  # the second name, mid-depth (NOTES: layer 15)
    ids = {name: smollm2.tokenizer(text)["input_ids"] for name, text in zip(("clean", "corrupt"), IOI, strict=True)}
    clean_acts = {}
    clean_logits = hf_run(smollm2, ids["clean"], keep=clean_acts)
    bound = metric.bind(smollm2)
    for layer in (0, 7, 15, 22, 29):
        for p in (9, 11, 13):

            def fn(t, p=p, layer=layer):
                t = t.clone()
                t[0, p] = clean_acts[("resid", layer)][p]
                return t

            out = hf_run(smollm2, ids["corrupt"], replace=("resid", layer, fn))
            assert res.values[layer, p].item() == pytest.approx(bound(out[None], clean_logits)[0].item(), abs=1e-4)
    heads = lw.patch(smollm2, *IOI, metric=metric, over="heads", progress=False)
    d = clean_acts[("heads", 23)].shape[-1] // 9
    for head in (0, 3, 8):

        def swap(t, head=head):
            t = t.clone()
            t[0, :, head * d : (head + 1) * d] = clean_acts[("heads", 23)][:, head * d : (head + 1) * d]
            return t

        out = hf_run(smollm2, ids["corrupt"], replace=("heads", 23, swap))
        assert heads.values[23, head].item() == pytest.approx(bound(out[None], clean_logits)[0].item(), abs=1e-4)
    assert torch.isfinite(heads.scores).all()


# English written for this test, outside the WordNet glosses the shipped SAEs were trained on.
UNSEEN = [
    "The train to Edinburgh was delayed by forty minutes because of a signal failure near York.",
    "She opened the spreadsheet, sorted the column by date and found the missing invoice at the bottom.",
    "After the storm the fishermen repaired their nets on the harbour wall while the gulls circled.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs beaten with warm milk.",
    "In 1969 the astronauts landed on the Moon and millions of people watched on black-and-white televisions.",
    "Our team fixed the memory leak by closing each database connection after the request finished.",
    "The orchestra tuned their instruments as the audience slowly found their seats in the old hall.",
    "He planted tomatoes, beans and courgettes, then watered the garden before the sun went down.",
]

# Variance explained measured on UNSEEN when the SAEs were shipped: 0.751 (layer 12) and 0.717 (layer 24),
# below the held-out glosses' 0.822 and 0.803 (other text than the training corpus); these guard a margin.
UNSEEN_VE = {12: 0.7, 24: 0.65}


def test_the_shipped_saes_load_offline_and_reconstruct_unseen_text(smollm2):
    from llmasos_widgets.analyses.sae import shipped_saes

    assert shipped_saes() == {"smollm2-135m": [12, 24], "smollm2-135m-randomized": [12]}
    for layer in (12, 24):
        sae = lw.load_sae("smollm2-135m", layer=layer, model=smollm2)
        assert (sae.layer, sae.n_latents, sae.k, sae.W_enc.dtype) == (layer, 4608, 32, torch.float32)
        stored = sae.quality  # measured on held-out glosses when it was trained (README)
        assert stored.variance_explained >= 0.8 and stored.dead_share <= 0.1, stored
        assert sae.meta["train"]["finished"] and sae.max_norm is not None and sae.skip_first == 1
        measured = sae.evaluate(smollm2, UNSEEN)
        assert measured.variance_explained >= UNSEEN_VE[layer], measured
        assert measured.loss_recovered >= 0.8 and measured.mean_l0 == 32, measured


def test_the_shipped_control_fits_the_randomised_model_only(smollm2):
    control = lw.randomized(smollm2)
    sae = lw.load_sae("smollm2-135m-randomized", layer=12, model=control)
    assert sae.meta["fingerprint"]["model"] == "smollm2-135m-randomized"
    trained = lw.load_sae("smollm2-135m", layer=12)
    recipe = ("texts", "n_latents", "k", "epochs", "seed", "batch_tokens", "massive_ratio")
    assert [sae.meta["train"][k] for k in recipe] == [trained.meta["train"][k] for k in recipe]
    # The same corpus; the control also reads position 0 (a random model has no attention sink there).
    assert (sae.skip_first, trained.skip_first) == (0, 1)
    with pytest.warns(UserWarning, match="made for 'smollm2-135m-randomized', not 'smollm2-135m'"):
        sae.check_model(smollm2)
