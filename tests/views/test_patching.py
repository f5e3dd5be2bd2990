import threading

import numpy as np
import pytest
import traitlets

import llmasos_widgets as lw
from llmasos_widgets.views import export
from tests._exported import read_export
from tests._views import arrays, capture, join_threads, track_threads, wait_for

CLEAN, CORRUPT = "The cat is in the", "The dog is in the"


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


def metric():
    return lw.logit_diff(" cat", " the")


def request(view, id_, what, **params):
    view._on_custom_msg(view, {"type": "request", "id": id_, "what": what, **params}, [])


def messages(view, id_):
    with view.lock:
        return [(c, b) for c, b in view.sent if c.get("id") == id_]


def wait_id(view, id_, kind, timeout=60):
    import time

    end = time.time() + timeout
    while time.time() < end:
        found = [m for m in messages(view, id_) if m[0]["type"] == kind]
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"no {kind} for request {id_}")


def test_a_sweep_streams_every_cell_then_the_grid_equal_to_patch(model):
    view = capture(lw.PatchingView(model, CLEAN, CORRUPT, metric=metric()))
    assert view.results == {} and view.differs == [False, True, False, False, False]
    assert view.corrupt_tokens == ["The", " dog", " is", " in", " the"] and view.metric_name == metric().name
    request(view, 1, "sweep", method="exact")
    content, buffers = wait_id(view, 1, "response")[0]
    chunks = [arrays(c, b) for c, b in messages(view, 1) if c["type"] == "chunk"]
    assert len(chunks) == 5 and wait_for(view, "progress")  # position 0 (free), then one chunk per position
    expected = lw.patch(model, CLEAN, CORRUPT, metric=metric(), progress=False)
    grid = np.full((2, 5), np.nan, dtype=np.float32)
    for chunk in chunks:
        grid[chunk["layers"], chunk["indices"]] = chunk["scores"]
    assert np.allclose(grid, expected.scores.numpy(), atol=1e-5)
    assert np.allclose(arrays(content, buffers)["scores"], expected.scores.numpy(), atol=1e-5)
    assert content["method"] == "exact" and content["correlation"] is not None  # attribution computed with it
    assert set(view.results) == {"exact", "attribution"}


def test_a_result_is_shown_at_once_and_the_other_method_computed_on_request(model):
    res = lw.patch(model, CLEAN, CORRUPT, metric=metric(), method="attribution")
    view = capture(lw.PatchingView(res))
    assert view.method == "attribution" and view.result is res
    request(view, 1, "sweep", method="attribution")
    content, buffers = wait_id(view, 1, "response")[0]
    assert [c["type"] for c, _ in messages(view, 1)] == ["response"]  # kept: no chunk
    assert np.array_equal(arrays(content, buffers)["scores"], res.scores.numpy(), equal_nan=True)
    request(view, 2, "sweep", method="exact")
    content, _ = wait_id(view, 2, "response")[0]
    assert content["correlation"] == pytest.approx(view.results["exact"].correlation(res))


def test_a_new_sweep_interrupts_a_running_one(model, monkeypatch):
    view = capture(lw.PatchingView(model, CLEAN, CORRUPT, metric=metric()))
    workers = track_threads(monkeypatch)
    gate, started = threading.Event(), threading.Event()
    sweep = view.experiment.sweep

    def slow_sweep(*, should_stop=None):
        for n, item in enumerate(sweep(should_stop=should_stop)):
            yield item
            if n == 1:
                started.set()
                gate.wait(10)

    view.experiment.sweep = slow_sweep
    request(view, 1, "sweep", method="exact")
    assert started.wait(10)
    request(view, 2, "sweep", method="attribution")  # the page toggled the method
    gate.set()
    wait_id(view, 2, "response")
    join_threads(workers)  # both sweeps have ended: nothing more will come
    first = [c["type"] for c, _ in messages(view, 1)]
    assert "response" not in first and first.count("chunk") == 2  # stopped after the group it was in
    assert "exact" not in view.results  # an interrupted sweep keeps nothing
    view.experiment.sweep = sweep
    request(view, 3, "sweep", method="exact", rerun=True)
    assert wait_id(view, 3, "response")[0][0]["method"] == "exact" and "exact" in view.results


def test_a_cell_request_answers_that_patched_runs_metric_and_predictions(model):
    view = capture(lw.PatchingView(model, CLEAN, CORRUPT, metric=metric()))
    request(view, 1, "cell", layer=1, index=1, k=3)
    content, buffers = view.sent[-1]
    value, preds = view.experiment.cell_predictions(1, 1, 3)
    assert content["type"] == "response" and content["metric"] == pytest.approx(value)
    assert content["tokens"] == [p.token for p in preds]
    assert arrays(content, buffers)["ids"].tolist() == [p.id for p in preds]
    # Layer 0 at the differing position is the clean run itself: score 1.
    request(view, 2, "cell", layer=0, index=1, k=3)
    assert view.sent[-1][0]["score"] == pytest.approx(1.0, abs=1e-5)
    request(view, 3, "cell", layer=5, index=1, k=3)
    assert view.sent[-1][0]["type"] == "error" and "layer 5 is out of range" in view.sent[-1][0]["message"]
    request(view, 4, "cell", layer=0, index=1, k=0)
    assert "k must be an int from 1 to 50" in view.sent[-1][0]["message"]


def test_heads_grid_and_selection_traits(model):
    view = lw.PatchingView(model, CLEAN, CORRUPT, metric=metric(), over="heads")
    assert view.over == "heads" and view.compute().scores.shape == (2, model.n_heads)
    view.selected_layer, view.selected_head = 1, 3
    with pytest.raises(ValueError, match="head 99 is out of range"):
        view.selected_head = 99
    with pytest.raises(ValueError, match="method 'both' is not one of"):
        view.method = "both"
    with pytest.raises(traitlets.TraitError, match="read-only"):
        view.methods = ["exact"]
    assert view.methods == list(lw.analyses.causal.METHODS) and view.sites == list(lw.analyses.causal.SITES)


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ValueError, match="needs both prompts and a metric"):
        lw.PatchingView(model, CLEAN, CORRUPT)
    with pytest.raises(ValueError, match="needs a PatchResult"):
        lw.PatchingView("text")
    with pytest.raises(ValueError, match="same number of tokens"):
        lw.PatchingView(model, CLEAN, "The big dog is in the", metric=metric())
    res = lw.patch(model, CLEAN, CORRUPT, metric=metric(), progress=False)
    with pytest.raises(ValueError, match="go with a model"):
        lw.PatchingView(res, CLEAN)
    with pytest.raises(TypeError, match="unexpected keyword argument.*: layr"):
        lw.PatchingView(res, layr=1)


def test_any_script_text(model):
    clean, corrupt = "naïve 大型 🤖 cat", "naïve 大型 🤖 dog"
    p = lw.Patching(model, clean, corrupt, lw.prob(" the"))
    view = lw.PatchingView(p)  # rebuilt from the experiment's tokens
    assert "".join(view.tokens) == clean and sum(view.differs) >= 1


def test_export_records_both_grids_and_the_cells(model, tmp_path):
    view = lw.PatchingView(model, CLEAN, CORRUPT, metric=metric())
    recorded, note = export.record(view)
    keys = [export.request_key({"what": "sweep", "method": m}) for m in ("exact", "attribution")]
    assert all(k in recorded for k in keys)
    cells = [k for k in recorded if '"what":"cell"' in k]
    assert len(cells) == 10 and "every cell's patched run" in note
    # The file holds both grids as the kernel keeps them and every cell's run (2 layers x 5 positions).
    path = view.save_html(tmp_path / "patch.html")
    (part,) = read_export(path)
    assert part.state["tokens"] == view.tokens and part.state["corrupt_tokens"] == view.corrupt_tokens
    for method in ("exact", "attribution"):
        content, got = part.answer(what="sweep", method=method)
        assert content["type"] == "response" and content["method"] == method
        kept = view.results[method]  # the grids recorded are the ones computed: the same numbers
        assert np.array_equal(got["scores"], kept.scores.numpy(), equal_nan=True)
        assert np.array_equal(got["values"], kept.values.numpy(), equal_nan=True)
    assert sorted((r["layer"], r["index"]) for r in part.requests if r["what"] == "cell") == [
        (layer, i) for layer in range(2) for i in range(5)
    ]
    for layer in range(2):
        for i in range(5):
            content, got = part.answer(what="cell", layer=layer, index=i, k=view.k)
            value, preds = view.experiment.cell_predictions(layer, i, view.k)  # the same run, again
            assert content["type"] == "response" and content["metric"] == pytest.approx(value, abs=1e-6)
            assert got["ids"].tolist() == [p.id for p in preds] and content["tokens"] == [p.token for p in preds]


def test_a_sweep_whose_consumer_stopped_midway_leaves_the_view_usable(model, monkeypatch):
    # The sweep was a generator holding the view's lock across its yields: a consumer that stopped in
    # the middle and stayed alive (here in an error's traceback, which a log record with exc_info or a
    # debugger keeps) held the lock, and every later sweep of the view waited forever.
    import sys

    from llmasos_widgets.views import protocol

    view = capture(lw.PatchingView(model, CLEAN, CORRUPT, metric=metric()))
    kept = []

    def comm_closed(self, fields, arrays):
        raise RuntimeError("the comm closed")

    monkeypatch.setattr(protocol.Reply, "chunk", comm_closed)
    monkeypatch.setattr(protocol.log, "error", lambda *a, **k: kept.append(sys.exc_info()))
    request(view, 1, "sweep", method="exact")
    assert "the comm closed" in wait_id(view, 1, "error")[0][0]["message"]
    monkeypatch.undo()
    assert kept  # the failed sweep's frames are still alive
    done = threading.Event()
    threading.Thread(target=lambda: (view.compute("exact"), done.set()), daemon=True).start()
    assert done.wait(30), "the view's lock is still held by the sweep that stopped"
    assert "exact" in view.results
