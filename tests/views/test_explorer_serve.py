"""How an Explorer serves its page (views/serve.py): one batch per click in order, stale requests never
computed, the page's cache filled ahead with the answers the panels' own handlers give, keyed as an
exported file's records are; and the saliency panel folded above its length."""

from __future__ import annotations

import json
import threading
import time

import pytest
import traitlets

import llmasos_widgets as lw
from llmasos_widgets.views import explorer, protocol, serve
from llmasos_widgets.views.explorer import FOLD_SALIENCY_ABOVE
from llmasos_widgets.views.export import request_key
from llmasos_widgets.views.serve import order_around

TEXT = "Le café est très bon 大型 🤖 and the rest"


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


def wait_for(sent, test, start=0, timeout=60.0):
    """The first message sent (from the ``start``-th on) that passes ``test`` (the worker answers a moment later)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for content, buffers in list(sent)[start:]:
            if test(content):
                return content, buffers
        time.sleep(0.01)
    raise AssertionError(f"no such message in {[c.get('type') for c, _ in sent]}")


def predictions(i, position, k=3):
    return {"type": "request", "id": i, "what": "predictions", "position": position, "k": k, "panel": "tokens"}


def test_order_around_reaches_every_position_once_nearest_first():
    for n in (1, 2, 7):
        for p in range(n):
            order = order_around(p, n)
            assert sorted(order) == list(range(n)) and order[0] == p
            assert [abs(q - p) for q in order] == sorted(abs(q - p) for q in order)


def test_a_batch_is_acked_then_answered_in_the_order_the_page_sent(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens", "lens"])
    cell = {"type": "request", "id": 11, "what": "cell", "layer": 1, "position": 2, "k": 4, "panel": "lens"}
    with ex._server._cond:  # the worker waits until the whole batch is queued
        ex._on_custom_msg(ex, {"type": "batch", "batch": 1, "requests": [cell, predictions(12, 2)], "drop": []}, [])
    wait_for(sent, lambda c: c.get("id") == 12)
    kinds = [(c["type"], c.get("id"), c.get("panel")) for c, _ in sent]
    assert kinds[:3] == [("ack", None, None), ("response", 11, "lens"), ("response", 12, "tokens")]
    # The answers are the panels' own: the same as the single view's.
    ids = sent[2][1][0]
    assert list(memoryview(ids).cast("i")) == [p.id for p in ex.trace.top_predictions(2, k=3)]


def test_a_request_made_stale_before_it_ran_is_never_computed(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens"])
    with ex._server._cond:  # the worker is paused: three clicks arrive, each dropping the one before
        ex._on_custom_msg(ex, {"type": "batch", "batch": 1, "requests": [predictions(1, 1)], "drop": []}, [])
        ex._on_custom_msg(ex, {"type": "batch", "batch": 2, "requests": [predictions(2, 2)], "drop": [1]}, [])
        ex._on_custom_msg(ex, {"type": "batch", "batch": 3, "requests": [predictions(3, 3)], "drop": [2]}, [])
    wait_for(sent, lambda c: c.get("id") == 3 and c["type"] == "response")
    time.sleep(0.2)
    assert [c.get("id") for c, _ in sent if c["type"] != "ack"] == [3]
    assert [key for kind, key in ex._server.log if kind == "urgent"] == [
        request_key({"what": "predictions", "position": 3, "k": 3, "panel": "tokens"})
    ]


def test_the_prefetch_files_the_panels_answers_by_the_keys_an_exported_file_uses(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens", "attention", "neurons", "lens"])
    T = len(ex.tokens)
    ex._on_custom_msg(ex, {"type": "prefetch", "position": 3, "panels": ex.panels, "budget": 64e6, "forget": []}, [])
    wait_for(sent, lambda c: c["type"] == "stored" and c["done"])
    entries = {}
    for content, buffers in sent:
        if content["type"] == "stored":
            for e in content["entries"]:
                entries[e["key"]] = [(m["content"], [buffers[i] for i in m["buffers"]]) for m in e["messages"]]
    keys = list(entries)
    want = [request_key({"what": "predictions", "position": p, "k": 5, "panel": "tokens"}) for p in range(T)]
    bins = ex.panel("attention").token_bins
    want += [
        request_key({"what": "token", "position": p, "direction": "from", "bins": bins, "panel": "attention"})
        for p in range(T)
    ]
    want += [request_key({"what": "column", "position": p, "panel": "lens"}) for p in range(T)]
    want += [request_key({"what": "layer", "layer": ex.selected_layer, "k": 20, "panel": "neurons"})]
    assert set(want) <= set(keys)
    # Nearest first: the selected token's answers come before any other position's.
    assert keys.index(want[3]) < min(keys.index(want[p]) for p in range(T) if p != 3)
    # Each entry is what the panel answers to that request sent alone.
    content, buffers = entries[want[5]][0]
    assert (content["type"], content["panel"], content["position"]) == ("response", "tokens", 5)
    assert list(memoryview(buffers[0]).cast("i")) == [p.id for p in ex.trace.top_predictions(5, k=5)]
    # Asked again, nothing is computed twice; what the page forgot is sent again.
    n = len(sent)
    forgot = want[0]
    ex._on_custom_msg(
        ex, {"type": "prefetch", "position": 0, "panels": ex.panels, "budget": 64e6, "forget": [forgot]}, []
    )
    wait_for(sent, lambda c: c["type"] == "stored" and c["done"], start=n)
    again = [e["key"] for c, _ in sent[n:] if c["type"] == "stored" for e in c["entries"]]
    assert again == [forgot]


def test_the_prefetch_sends_the_cheap_answers_first_then_the_near_then_the_rest(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens", "attention", "neurons", "lens"])
    T = len(ex.tokens)
    assert T > serve.NEAR + 4
    ex._on_custom_msg(ex, {"type": "prefetch", "position": 3, "panels": ex.panels, "budget": 64e6, "forget": []}, [])
    wait_for(sent, lambda c: c["type"] == "stored" and c["done"])
    asked = [json.loads(key) for kind, key in ex._server.log if kind == "ahead"]  # in the order computed
    rank = order_around(3, T)

    def distance(r):  # a lens block comes after the last of its columns
        if r["what"] == "lens":
            block = range(r["block"] * lw.views.lens.BLOCK, min(T, (r["block"] + 1) * lw.views.lens.BLOCK))
            return max(rank.index(p) for p in block)
        return rank.index(r.get("position", 3))

    tiers = [serve.tier(r["what"], distance(r)) for r in asked]
    assert tiers == sorted(tiers) and set(tiers) == {0, 1, 2}  # every prediction before any row, the far last
    far = [distance(r) for r, t in zip(asked, tiers, strict=True) if t == 2]
    assert far == sorted(far)  # outwards from the selection
    assert {r["block"] for r in asked if r["what"] == "lens"} == set(range(-(-T // lw.views.lens.BLOCK)))


def test_nothing_is_prefetched_while_a_streamed_answer_is_computed(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens"])
    running = protocol.Reply(ex.panel("tokens"), 99, "overview")  # as a panel's first draw streams its answer
    ex.panel("tokens")._streams["overview"] = running
    ex._on_custom_msg(ex, {"type": "prefetch", "position": 0, "panels": ["tokens"], "budget": 64e6}, [])
    time.sleep(4 * serve.QUIET_S)
    assert not [k for k, _ in ex._server.log if k == "ahead"]
    running.answered = True  # the stream ends: the prefetch starts a moment later
    wait_for(sent, lambda c: c["type"] == "stored" and c["done"])
    assert len([k for k, _ in ex._server.log if k == "ahead"]) == len(ex.tokens)


def test_the_attention_rows_prefetched_fit_half_the_budget(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["attention"])
    T = len(ex.tokens)
    bins = ex.panel("attention").token_bins
    messages = ex._server._record(
        {"what": "token", "position": 4, "direction": "from", "bins": bins, "panel": "attention"}
    )
    # What one row weighs in the page (js/explorer/store.ts, weight): its buffers and 512 bytes for the message.
    row = sum(len(b) for m in messages for b in m["buffers"]) + 512 * len(messages)
    for budget in (6 * row, 20 * row):
        asked = ex.panel("attention")._prefetch(order_around(4, T), budget)
        n = len(asked)
        assert [r["position"] for _, r in asked] == order_around(4, T)[:n]
        assert budget / 2 / row / 2 <= n and n * row <= budget  # about half the budget, never more than all of it
    assert len(ex.panel("attention")._prefetch(order_around(4, T), 10**9)) == T


def test_no_budget_no_prefetch(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens"])
    ex._on_custom_msg(ex, {"type": "prefetch", "position": 0, "panels": ["tokens"], "budget": 0}, [])
    assert sent == [({"type": "stored", "entries": [], "done": True}, [])]


def test_a_click_waits_for_nothing_prefetched(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens"])
    with ex._server._cond:
        ex._on_custom_msg(ex, {"type": "prefetch", "position": 0, "panels": ["tokens"], "budget": 64e6}, [])
        ex._on_custom_msg(ex, {"type": "batch", "batch": 1, "requests": [predictions(7, 6)], "drop": []}, [])
    wait_for(sent, lambda c: c["type"] == "stored" and c["done"])
    first = next(c for c, _ in sent if c["type"] in ("response", "stored"))
    assert first.get("id") == 7


def test_the_saliency_panel_starts_folded_above_its_length_with_its_cost(model, monkeypatch):
    assert FOLD_SALIENCY_ABOVE == 512
    monkeypatch.setattr(explorer, "FOLD_SALIENCY_ABOVE", 8)  # tiny-llama reads 256 tokens at most
    long, short = model.trace(TEXT), model.trace("The cat")
    assert len(short) <= 8 < len(long)
    ex = lw.Explorer(long)
    assert ex.collapsed == ["saliency"] and f"over {len(long):,} tokens" in ex.panel_costs["saliency"]
    assert lw.Explorer(long, collapsed=[]).collapsed == []
    assert lw.Explorer(short).collapsed == []
    assert lw.Explorer(long, attribution=lw.attribute(model, long, method="saliency")).panel_costs == {}


def test_the_page_may_reorder_and_widen_panels_never_change_them(model):
    ex = lw.Explorer(model, TEXT)
    assert ex.panel_spans == {"tokens": 1, "attention": 2, "saliency": 1, "neurons": 1, "lens": 2}
    ex.panels = ["lens", "tokens", "attention", "saliency", "neurons"]
    ex.panel_spans = {**ex.panel_spans, "lens": 1}
    assert ex.panels[0] == "lens" and ex.panel_spans["lens"] == 1
    with pytest.raises(traitlets.TraitError, match="reordered, not changed"):
        ex.panels = ["lens", "tokens"]
    with pytest.raises(traitlets.TraitError, match="1 or 2 columns"):
        ex.panel_spans = {"lens": 3}


def test_the_panels_streamed_answers_compute_one_at_a_time_in_the_order_asked(model, sent, monkeypatch):
    ex = lw.Explorer(model, TEXT, panels=["attention", "lens"])
    running, order, overlap = [], [], []
    slow_overview, slow_lens = ex.panel("attention").index.overview, ex.panel("lens")._stream_lens

    def watched(name, compute):
        def run(*args, **kwargs):
            overlap.append(bool(running))
            running.append(name)
            order.append(name)
            time.sleep(0.05)  # long enough for another thread to start if nothing held it back
            try:
                return compute(*args, **kwargs)
            finally:
                running.remove(name)

        return run

    monkeypatch.setattr(ex.panel("attention").index, "overview", watched("overview", slow_overview))
    monkeypatch.setattr(ex.panel("lens"), "_stream_lens", watched("lens", slow_lens))
    requests = [
        {"type": "request", "id": 1, "what": "overview", "size": 8, "panel": "attention"},
        {"type": "request", "id": 2, "what": "lens", "block": 0, "panel": "lens"},
    ]
    ex._on_custom_msg(ex, {"type": "batch", "batch": 1, "requests": requests, "drop": []}, [])
    for i in (1, 2):
        wait_for(sent, lambda c, i=i: c.get("id") == i and c["type"] in ("response", "error"))
    n_layers = ex.trace.n_layers
    assert order == ["overview"] * n_layers + ["lens"] and not any(overlap)  # every layer, then the lens


def test_turns_go_in_ticket_order():
    turns, done = serve.Turns(), []
    tickets = [turns.ticket() for _ in range(4)]

    def work(i):
        with turns.turn(tickets[i]):
            done.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in (3, 1, 2, 0)]  # started out of order
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert done == [0, 1, 2, 3]
