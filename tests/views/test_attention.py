import threading
import time

import numpy as np
import pytest
import traitlets

import llmasos_widgets as lw
from tests._views import arrays, ask, capture, join_threads, track_threads, wait_for

TEXT = "The capital of France is Paris, and the capital of Italy is Rome."


@pytest.fixture()
def view():
    return capture(lw.AttentionView(lw.load_model("tiny-llama").trace(TEXT)))


def test_overview_streams_one_chunk_per_layer_then_a_response(view):
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "overview", "size": 8}, [])
    wait_for(view, "response")
    chunks = [(c, b) for c, b in view.sent if c["type"] == "chunk"]
    assert [c["layer"] for c, _ in chunks] == [0, 1]
    got = arrays(*chunks[1])
    p = view.trace.attention(1)
    expected = lw.analyses.attention.pool(p, 8)
    thumbs = got["thumbs"] * got["thumb_max"][:, None, None]
    assert np.abs(thumbs - expected.numpy()).max() <= got["thumb_max"].max() / 255
    assert got["scores"].shape == (3, 4) and "rollout" in got


def test_token_rows_and_columns_are_the_patterns(view):
    content, buffers = ask(view, what="token", position=5, direction="from")
    got = arrays(content, buffers)
    rows = np.stack([view.trace.attention(layer)[:, 5, :].numpy() for layer in range(2)])
    assert np.abs(got["rows"] - rows).max() <= 1e-3  # float16
    assert np.allclose(got["sharpness"], rows.max(-1), atol=1e-6)
    content, buffers = ask(view, what="token", position=5, direction="to")
    cols = np.stack([view.trace.attention(layer)[:, :, 5].numpy() for layer in range(2)])
    assert np.abs(arrays(content, buffers)["rows"] - cols).max() <= 1e-3


def test_pattern_window_is_pooled_to_size_and_exact_when_small(view):
    n = len(view.trace)
    content, buffers = ask(view, what="pattern", layer=1, head=2, q0=0, q1=n, k0=0, k1=n, size=4)
    got = arrays(content, buffers)["pattern"]
    assert got.shape == (4, 4) and content["q_step"] == n / 4
    content, buffers = ask(view, what="pattern", layer=1, head=2, q0=3, q1=9, k0=0, k1=6, size=64)
    desc = content["arrays"][0]
    exact = view.trace.attention(1)[2, 3:9, 0:6].numpy()
    assert np.abs(arrays(content, buffers)["pattern"] - exact).max() <= desc["scale"] / 2 + 1e-7


def test_weight_is_exact_for_heads_and_aggregates(view):
    content, _ = ask(view, what="weight", layer=0, head=3, q=9, k=4)
    assert content["value"] == pytest.approx(view.trace.attention(0)[3, 9, 4].item(), abs=1e-6)
    content, _ = ask(view, what="weight", layer=1, aggregate="mean", q=9, k=4)
    assert content["value"] == pytest.approx(view.trace.attention(1)[:, 9, 4].mean().item(), abs=1e-6)


def test_heads_window_for_the_head_view(view):
    content, buffers = ask(view, what="heads", layer=1, heads=[0, 3], q0=0, q1=10, k0=0, k1=10)
    got = arrays(content, buffers)["patterns"]
    assert got.shape == (2, 10, 10)
    assert np.abs(got[1] - view.trace.attention(1)[3, :10, :10].numpy()).max() <= 1 / 255


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"what": "token", "position": 99}, "position 99 is out of range"),
        ({"what": "token", "position": 1, "direction": "up"}, "direction 'up' is not one of"),
        ({"what": "pattern", "layer": 5, "head": 0, "q0": 0, "q1": 2, "k0": 0, "k1": 2}, "layer 5 is out of range"),
        ({"what": "pattern", "layer": 0, "head": 4, "q0": 0, "q1": 2, "k0": 0, "k1": 2}, "head 4 is out of range"),
        ({"what": "pattern", "layer": 0, "head": 0, "q0": 3, "q1": 2, "k0": 0, "k1": 2}, "not inside"),
        ({"what": "weight", "layer": 0, "head": 0, "q": 0, "k": 500}, "position 500 is out of range"),
        ({"what": "heads", "layer": 0, "heads": [], "q0": 0, "q1": 2, "k0": 0, "k1": 2}, "non-empty list"),
    ],
)
def test_bad_requests_are_answered_with_errors(view, request_, message):
    content, _ = ask(view, **request_)
    assert content["type"] == "error" and message in content["message"], content


def test_bad_overview_size_is_an_error_from_the_stream(view):
    view._on_custom_msg(view, {"type": "request", "id": 3, "what": "overview", "size": 0}, [])
    assert "size must be an int from 1 to 256" in wait_for(view, "error")[0][0]["message"]


def test_traits_are_validated():
    view = lw.AttentionView(lw.load_model("tiny-gpt2").trace(TEXT), layer=1, head=2, token=3)
    assert (view.selected_layer, view.selected_head, view.selected_token, view.heads) == (1, 2, 3, [2])
    with pytest.raises(ValueError, match="panel 'grid' is not one of"):
        view.panel = "grid"
    with pytest.raises(ValueError, match="head 4 is out of range"):
        view.heads = [0, 4]
    with pytest.raises(ValueError, match="aggregate 'max'"):
        view.aggregate = "max"
    with pytest.raises(ValueError, match="layer 2 is out of range"):
        view.selected_layer = 2


def test_the_view_offers_exactly_the_choices_it_accepts():
    view = lw.AttentionView(lw.load_model("tiny-gpt2").trace(TEXT))
    offered = {t: [row[0] for row in getattr(view, t)] for t in ("panels", "directions", "aggregates", "sort_orders")}
    assert offered == {
        "panels": ["overview", "head", "matrix"],
        "directions": ["from", "to"],
        "aggregates": list(lw.analyses.attention.AGGREGATES),
        "sort_orders": ["", *lw.analyses.attention.SCORE_NAMES],
    }
    assert all(len(row) == 3 and all(row) for row in view.panels + view.directions + view.aggregates)
    accepted = {"panel": "panels", "direction": "directions", "sort_by": "sort_orders", "aggregate": "aggregates"}
    for trait, choices in accepted.items():
        for value in offered[choices]:
            setattr(view, trait, value)
    view.aggregate = ""  # none, which has no button
    with pytest.raises(traitlets.TraitError, match="read-only"):
        view.panels = []


def test_too_long_a_text_is_refused_with_the_limit():
    trace = lw.load_model("tiny-gpt2").trace(TEXT)
    with pytest.raises(ValueError, match=r"accepts up to max_tokens=8"):
        lw.AttentionView(trace, max_tokens=8)


def test_save_png_writes_what_the_view_sends(view, tmp_path):
    future = view.save_png(tmp_path / "panel.png")
    request = view.sent[-1][0]
    assert request == {"type": "snapshot", "id": 1}
    png = b"\x89PNG\r\n\x1a\n" + b"rest"
    view._on_custom_msg(view, {"type": "snapshot", "id": 1, "panel": "overview"}, [png])
    assert future.result(timeout=1) == tmp_path / "panel.png"
    assert (tmp_path / "panel.png").read_bytes() == png


def test_requests_are_answered_while_the_overview_streams(view, monkeypatch):
    slow, gate = view.index.overview, threading.Event()

    def held_overview(layer, size):  # the stream waits until the test has seen the click answered
        assert gate.wait(30)
        return slow(layer, size)

    monkeypatch.setattr(view.index, "overview", held_overview)
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "overview", "size": 8}, [])
    view._on_custom_msg(view, {"type": "request", "id": 2, "what": "token", "position": 3}, [])
    with view.lock:
        kinds = [(c["type"], c["id"]) for c, _ in view.sent]
    assert ("response", 2) in kinds and ("response", 1) not in kinds  # the click did not wait for the stream
    gate.set()
    end = time.time() + 30
    while ("response", 1) not in [(c["type"], c["id"]) for c, _ in view.sent]:
        assert time.time() < end, "the overview never finished"
        time.sleep(0.01)


def test_a_new_overview_request_cancels_the_old_stream(view, monkeypatch):
    workers = track_threads(monkeypatch)
    slow, first_layer, second_sent = view.index.overview, threading.Event(), threading.Event()

    def held_overview(layer, size):
        if size == 8:  # the first stream: it computes layer 0 only once the second request is in
            first_layer.set()
            assert second_sent.wait(30)
        return slow(layer, size)

    monkeypatch.setattr(view.index, "overview", held_overview)
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "overview", "size": 8}, [])
    assert first_layer.wait(30)
    view._on_custom_msg(view, {"type": "request", "id": 2, "what": "overview", "size": 4}, [])
    second_sent.set()
    join_threads(workers)  # both streams have ended: nothing more will come
    ids = [(c["type"], c["id"]) for c, _ in view.sent]
    assert ("response", 2) in ids and ("response", 1) not in ids
