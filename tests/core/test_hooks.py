"""One model, many views: runs of a model take turns (hooks.py), so concurrent work gives the numbers it gives alone.

Each concurrency test runs the same computations twice: alone, then on threads at once (as views' worker
threads and a cell do), and asserts equal numbers. Before the model lock, a trace taken during a steering
generation came out steered, and two patching experiments overwrote each other's captured activations.
"""

import threading
import time

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.core.hooks import ModelLock, hooked, inputs_only, post, pre

IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


# -- the lock ----------------------------------------------------------------------------------
def test_the_lock_is_reentrant_and_only_its_holder_releases_it():
    lock = ModelLock()
    with lock, lock:
        assert lock.held()
        other = []
        thread = threading.Thread(target=lambda: other.append(lock.held()))
        thread.start()
        thread.join()
        assert other == [False]
    assert not lock.held()
    with pytest.raises(RuntimeError, match="does not hold it"):
        lock.release()


def test_waiting_threads_are_served_in_the_order_they_came():
    lock = ModelLock()
    order = []
    lock.acquire()
    threads = []
    for i in range(5):
        thread = threading.Thread(target=lambda i=i: (lock.acquire(), order.append(i), lock.release()))
        thread.start()
        threads.append(thread)
        while len(lock._queue) < i + 1:  # each one queued before the next starts
            time.sleep(0.001)
    lock.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_a_thread_that_releases_and_takes_again_lets_a_waiting_one_in_first():
    # A sweep takes the lock once per group: a click waiting meanwhile runs between two groups.
    lock = ModelLock()
    log, done = [], threading.Event()

    def sweep():
        for group in range(50):
            with lock:
                log.append(f"group {group}")
                time.sleep(0.002)
        done.set()

    thread = threading.Thread(target=sweep)
    thread.start()
    while len(log) < 3:
        time.sleep(0.001)
    with lock:
        log.append("click")
    thread.join(30)
    assert done.is_set() and log.index("click") < 10


def test_hooks_are_placed_under_the_lock_and_removed_whatever_happens():
    model = lw.load_model("tiny-llama")
    block = model.adapter.blocks()[0]
    with pytest.raises(RuntimeError, match="boom"):
        with hooked(model, [post(block, lambda m, a, o: None), pre(block, lambda m, a: None)]):
            assert model.lock.held() and len(block._forward_hooks) == 1 and len(block._forward_pre_hooks) == 1
            raise RuntimeError("boom")
    assert not block._forward_hooks and not block._forward_pre_hooks and not model.lock.held()


def test_weights_are_frozen_only_while_the_lock_is_held():
    model = lw.load_model("tiny-llama")
    seen = []

    def other_run():
        with model.lock:
            seen.append(all(p.requires_grad for p in model.model.parameters()))

    with inputs_only(model, model.model):
        assert not any(p.requires_grad for p in model.model.parameters())
        thread = threading.Thread(target=other_run)
        thread.start()
        time.sleep(0.05)
        assert seen == []  # the other run waits for the lock, so it never sees the weights frozen
    thread.join(10)
    assert seen == [True]


# -- concurrent work equals the same work alone (smollm2-135m: each run is long enough to overlap) ----
def run_at_once(*jobs):
    """Run ``jobs`` (callables) on threads started together; return their results in order."""
    results, errors = [None] * len(jobs), []
    start = threading.Barrier(len(jobs))

    def work(i, job):
        start.wait()
        try:
            results[i] = job()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors
    return results


@pytest.mark.slow
def test_a_trace_during_a_steering_generation_is_not_steered(smollm2):
    prompt = "I think that the weather today is"
    alone = [smollm2.trace(t) for t in ("The capital of France is", IOI_CLEAN)]
    direction = lw.Direction(torch.ones(smollm2.d_model), layer=10, name="ones")
    view = lw.SteeringView(smollm2, prompt, direction=direction, alphas=(-40, 40), max_new_tokens=12)

    def steering():
        return [view.steer(a).steered_ids for a in (40.0, -40.0, 40.0)]

    def tracing():
        traces = []
        for _ in range(6):
            traces += [smollm2.trace(t) for t in ("The capital of France is", IOI_CLEAN)]
        return traces

    steered, traces = run_at_once(steering, tracing)
    for got, want in zip(traces, alone * 6, strict=True):
        torch.testing.assert_close(got.residual, want.residual, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(got.logits_at(-1), want.logits_at(-1), rtol=1e-5, atol=1e-4)
    assert steered == [
        lw.steer(smollm2, prompt, direction, a, max_new_tokens=12).steered_ids for a in (40.0, -40.0, 40.0)
    ]


@pytest.mark.slow
def test_two_patching_views_and_an_attribution_grid_at_once_equal_each_alone(smollm2):
    metric = lw.logit_diff(" Mary", " John")
    alone = {
        "resid": lw.patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric=metric, over="resid", progress=False),
        "mlp": lw.patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric=metric, over="mlp", progress=False),
        "attribution": lw.patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric=metric, method="attribution"),
    }

    def view(over):
        # Built on its thread, as a second view built in a cell while the first one sweeps.
        return lambda: lw.PatchingView(smollm2, IOI_CLEAN, IOI_CORRUPT, metric=metric, over=over).compute("exact")

    def attribution():
        return [lw.patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric=metric, method="attribution") for _ in range(4)]

    resid, mlp, attributions = run_at_once(view("resid"), view("mlp"), attribution)
    for got, want in ((resid, alone["resid"]), (mlp, alone["mlp"]), *((a, alone["attribution"]) for a in attributions)):
        torch.testing.assert_close(got.scores, want.scores, rtol=1e-4, atol=1e-4, equal_nan=True)


@pytest.mark.slow
def test_an_sae_read_during_a_sweep_equals_it_alone(smollm2):
    sae = lw.load_sae("smollm2-135m", layer=12)
    texts = lw.sample_texts()[:40]
    metric = lw.logit_diff(" Mary", " John")
    alone_quality = sae.evaluate(smollm2, texts)
    alone_patch = lw.patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric=metric, over="attn", progress=False)

    def sweeping():
        return [lw.patch(smollm2, IOI_CLEAN, IOI_CORRUPT, metric=metric, over="attn", progress=False) for _ in range(2)]

    def reading():
        return [sae.evaluate(smollm2, texts) for _ in range(2)]

    patches, qualities = run_at_once(sweeping, reading)
    for got in patches:
        torch.testing.assert_close(got.scores, alone_patch.scores, rtol=1e-4, atol=1e-4, equal_nan=True)
    for got in qualities:
        assert got.variance_explained == pytest.approx(alone_quality.variance_explained, abs=1e-5)
        assert got.ce_sae == pytest.approx(alone_quality.ce_sae, abs=1e-5)
