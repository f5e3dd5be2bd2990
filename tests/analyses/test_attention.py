import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.attention import POOL_BLOCK, AttentionIndex, head_scores, max_pool, pool

TEXT = "The capital of France is Paris, and the capital of Italy is Rome. The cat sat on the mat."


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2", "tiny-bert"])
def index(request):
    return AttentionIndex(lw.load_model(request.param).trace(TEXT))


def full(index, layer):
    return index.trace.attention(layer)


def test_rows_and_columns_equal_the_full_patterns(index):
    n = index.n_tokens
    for pos in (0, n // 2, n - 1):
        rows, cols = index.rows(pos), index.columns(pos)
        for layer in range(index.trace.n_layers):
            assert torch.allclose(rows[layer], full(index, layer)[:, pos, :], atol=1e-6)
            assert torch.allclose(cols[layer], full(index, layer)[:, :, pos], atol=1e-6)


def test_windows_and_aggregates(index):
    p = full(index, 1)
    assert torch.allclose(index.window(1, 2, "", 3, 9, 1, 7), p[2, 3:9, 1:7], atol=1e-6)
    assert torch.allclose(index.window(1, None, "mean", 0, 5, 0, 5), p.mean(0)[:5, :5], atol=1e-6)
    with pytest.raises(ValueError, match="not inside"):
        index.window(1, 0, "", 5, 5, 0, 3)
    with pytest.raises(ValueError, match="head 9 is out of range"):
        index.window(1, 9, "", 0, 2, 0, 2)
    with pytest.raises(ValueError, match="unknown aggregate"):
        index.window(1, None, "max", 0, 2, 0, 2)


def test_rollout_matches_the_direct_formula(index):
    eye = torch.eye(index.n_tokens)
    expected = None
    for layer in range(index.trace.n_layers):
        a = 0.5 * full(index, layer).mean(0) + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        expected = a if expected is None else a @ expected
        assert torch.allclose(index.rollout(layer), expected, atol=1e-5)
    rows = index.token_rollout(4, "from")
    assert torch.allclose(rows[-1], expected[4], atol=1e-5)
    assert torch.allclose(index.token_rollout(4, "to")[-1], expected[:, 4], atol=1e-5)


def test_overview_thumbnails_scores_and_rollout(index):
    fresh = AttentionIndex(index.trace)
    for layer in range(index.trace.n_layers):
        ov = fresh.overview(layer, size=8, block=5)  # several query blocks, uneven last one
        p = full(index, layer)
        assert ov.thumbs.shape == (index.trace.n_heads, 8, 8)
        assert torch.allclose(ov.thumbs, pool(p, 8), atol=1e-6)
        assert torch.allclose(ov.scores, head_scores(p, index.adapter.causal), atol=1e-5)
        assert torch.allclose(ov.rollout, pool(index.rollout(layer), 8), atol=1e-5)


def test_rollout_refuses_long_texts_with_the_limit():
    trace = lw.load_model("tiny-gpt2").trace(TEXT)
    with pytest.raises(ValueError, match=r"limited to 8 tokens \(rollout_limit\)"):
        AttentionIndex(trace, rollout_limit=8).rollout(0)


def test_pool_is_an_exact_mean_when_sizes_divide():
    x = torch.arange(16.0).reshape(4, 4)
    assert pool(x, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert pool(x, 8) is x


def test_head_scores_on_known_patterns():
    n = 6
    prev = torch.zeros(1, n, n)
    prev[0, 0, 0] = 1
    for q in range(1, n):
        prev[0, q, q - 1] = 1
    sink = torch.zeros(1, n, n)
    sink[0, :, 0] = 1
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    s = head_scores(torch.cat([prev, sink, uniform[None]]), causal=True)
    assert s[1].tolist()[:2] == [1.0, pytest.approx(0.2)]  # previous-token weight
    assert s[2, 1].item() == 1.0 and s[0, 0].item() == 0.0  # sink weight; a one-hot row has no entropy
    expected_entropy = torch.log(torch.arange(1, n + 1).float()).mean()
    assert s[0, 2].item() == pytest.approx(expected_entropy.item(), rel=1e-5)


def test_max_pool_takes_the_runs_the_page_draws():
    values = torch.rand(3, 37)
    for bins in (1, 5, 16, 37):
        # js/attention/pool.ts, maxPool: bin b holds floor(b*n/bins) .. max(lo + 1, floor((b+1)*n/bins))
        runs = [(b * 37 // bins, max(b * 37 // bins + 1, (b + 1) * 37 // bins)) for b in range(bins)]
        want = torch.stack([values[:, lo:hi].amax(-1) for lo, hi in runs], -1)
        assert torch.equal(max_pool(values, bins), want)
    with pytest.raises(ValueError, match="bins must be between 1 and the 37 values pooled, not 38"):
        max_pool(values, 38)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert", "tiny-gemma2"])  # causal, not, sliding + softcap
def test_pooled_tokens_are_the_full_patterns_max_pooled(name):
    model = lw.load_model(name)
    index = AttentionIndex(model.trace(" ".join([TEXT] * 3)))
    n = index.n_tokens
    patterns = torch.stack([index.trace.attention(layer) for layer in range(index.trace.n_layers)])
    rollout = torch.stack([index.rollout(layer) for layer in range(index.trace.n_layers)])
    for pos in (0, POOL_BLOCK + 1, n - 1):  # blocks computed whole: the first, another, the last
        for direction, pick in (("from", lambda a, p=pos: a[..., p, :]), ("to", lambda a, p=pos: a[..., p])):
            pooled = index.pooled_token(pos, direction, 8)
            assert torch.allclose(pooled.heads, max_pool(pick(patterns), 8), atol=1e-6)
            assert torch.allclose(pooled.mean, max_pool(pick(patterns).mean(1), 8), atol=1e-6)
            assert torch.allclose(pooled.rollout, max_pool(pick(rollout), 8), atol=1e-6)
