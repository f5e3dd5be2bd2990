"""The request protocol: requests found by their decorator, replies, and kernel interrupts that stop streams."""

import time

import llmasos_widgets as lw
from llmasos_widgets.views.protocol import RequestSpec, request, requests_of
from tests._views import capture


def test_a_views_requests_are_the_methods_marked_with_request():
    assert {what: spec.stream for what, (_, spec) in requests_of(lw.AttentionView).items()} == {
        "overview": True,
        "token": False,
        "pattern": False,
        "heads": False,
        "weight": False,
    }
    assert set(requests_of(lw.FeatureView)) == {"token", "feature", "search", "steer"}

    class Child(lw.TokensView):
        @request("twice")
        def _twice(self, x):
            return {"value": 2 * x}, []

    assert requests_of(Child)["twice"] == ("_twice", RequestSpec("twice", False))
    assert "predictions" in requests_of(Child)  # inherited
    view = capture(Child(lw.load_model("tiny-llama").trace("The cat")))
    view._on_custom_msg(view, {"type": "request", "id": 3, "what": "twice", "x": 21}, [])
    assert view.sent[-1][0]["value"] == 42
    view._on_custom_msg(view, {"type": "request", "id": 4, "what": "_twice", "x": 1}, [])
    assert view.sent[-1][0] == {"type": "error", "id": 4, "what": "_twice", "message": "Child cannot answer '_twice'"}


# -- a kernel interrupt stops a streamed request --------------------------------------------------
def slow_metric(seconds):
    def logit_of_cat(logits):
        time.sleep(seconds)  # a user's metric may be slow: the sweep then takes a while
        return logits[:, 0] - logits[:, 1]

    return lw.Metric.of(logit_of_cat, name="slow")


def test_an_interrupt_stops_a_streamed_sweep_which_then_runs_again():
    from llmasos_widgets.views import protocol

    model = lw.load_model("tiny-llama")
    view = capture(lw.PatchingView(model, "The cat is in the big", "The dog is in the big", metric=slow_metric(0.3)))
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "sweep", "method": "exact"}, [])
    deadline = time.time() + 30
    while not any(c["type"] == "progress" for c, _ in list(view.sent)) and time.time() < deadline:
        time.sleep(0.01)
    assert protocol.interrupt_requests() == 1
    while not any(c.get("id") == 1 and c["type"] in ("error", "response") for c, _ in list(view.sent)):
        assert time.time() < deadline, "the sweep did not stop"
        time.sleep(0.01)
    (error,) = [c for c, _ in view.sent if c.get("id") == 1 and c["type"] == "error"]
    assert error["message"].startswith("stopped by a kernel interrupt at ") and "run it again" in error["message"]
    assert view.results == {}  # an interrupted sweep keeps nothing
    total = model.n_layers * len(view.tokens)
    assert max(c["done"] for c, _ in view.sent if c.get("id") == 1 and c["type"] == "progress") < total
    # Run again: it completes.
    view._on_custom_msg(view, {"type": "request", "id": 2, "what": "sweep", "method": "exact", "rerun": True}, [])
    while not any(c.get("id") == 2 and c["type"] in ("error", "response") for c, _ in list(view.sent)):
        assert time.time() < deadline + 60, "the re-run did not finish"
        time.sleep(0.05)
    assert [c["type"] for c, _ in view.sent if c.get("id") == 2][-1] == "response"
    assert set(view.results) >= {"exact"}


def test_the_kernels_idle_sigint_handler_stops_requests_and_then_does_what_it_did():
    import signal

    from llmasos_widgets.views import protocol

    class Kernel:  # ipykernel restores this handler after each message it handles (post_handler_hook)
        saved_sigint_handler = signal.SIG_IGN

    class Shell:
        kernel = Kernel()

    class FakeIPython:
        @staticmethod
        def get_ipython():
            return Shell()

    import sys

    sys.modules["IPython"], saved = FakeIPython, sys.modules.get("IPython")
    try:
        protocol.watch_interrupts()
        handler = Shell.kernel.saved_sigint_handler
        assert handler is not signal.SIG_IGN and getattr(handler, "lw_interrupts", False)
        protocol.watch_interrupts()
        assert Shell.kernel.saved_sigint_handler is handler  # installed once
        reply = protocol.Reply(None, 1, "sweep")
        protocol._RUNNING.add(reply)
        handler(signal.SIGINT, None)  # SIG_IGN before: nothing raised now either
        assert reply.interrupted and reply.cancelled
    finally:
        protocol._RUNNING.clear()
        if saved is None:
            del sys.modules["IPython"]
        else:
            sys.modules["IPython"] = saved
