"""Memory estimates (analyses/memory.py, core/memory.py) against measured peaks, and refusals before a run."""

from __future__ import annotations

import pytest

import llmasos_widgets as lw
from llmasos_widgets.core import memory
from tests.core.test_build import PEAK, run_python

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


def test_estimate_parts_grow_with_the_text():
    model = lw.load_model("tiny-llama")
    short, long = (lw.estimate(model, "The cat sat. " * n, what="attribution") for n in (2, 20))
    assert long.bytes > short.bytes > 0
    assert str(long).startswith("an attribution (integrated_gradients) needs about")
    assert all(name in str(long) for name in long.parts)
    with pytest.raises(ValueError, match="trace, explorer, attribution, patching"):
        lw.estimate(model, "text", what="everything")


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda m: m.trace("The capital of France is"), "shorter text"),
        (lambda m: lw.Explorer(m, "The capital of France is"), "fewer panels"),
        (
            lambda m: lw.attribute(m, "The capital of France is", n_steps=8, internal_batch_size=8),
            "internal_batch_size=2",
        ),
        (lambda m: lw.patch(m, "The cat is in the", "The dog is in the", metric=lw.prob(" the")), "fewer positions"),
    ],
    ids=["trace", "explorer", "attribution", "patching"],
)
def test_entry_points_refuse_before_running(monkeypatch, call, hint):
    model = lw.load_model("tiny-llama")
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(lw.NotEnoughMemory, match=hint) as refused:
        call(model)
    assert "only 1.0 kB is free" in str(refused.value)


MEASURE = (
    PEAK
    + """
import json, time, warnings
warnings.filterwarnings("ignore")
import llmasos_widgets as lw
m = lw.load_model("smollm2-135m")
ids = m.tokenizer(" ".join(lw.sample_texts()[:400]))["input_ids"]
m.trace("warm up the forward")
what, n = {what!r}, {n}
text = m.tokenizer.decode(ids[:n])
def explorer():
    ex, sent = lw.Explorer(m, text), []
    ex.send = lambda c, b=None: sent.append(c)
    ex._on_custom_msg(ex, {{"type": "request", "id": 1, "panel": "attention", "what": "overview", "size": 32}}, [])
    while not any(c.get("id") == 1 and c.get("type") == "response" for c in sent):
        time.sleep(0.01)
    for i, (panel, ask) in enumerate([("lens", {{"what": "column", "position": 5}}),
                                      ("attention", {{"what": "token", "position": 5, "direction": "from"}})]):
        ex._on_custom_msg(ex, {{"type": "request", "id": 2 + i, "panel": panel, **ask}}, [])
runs = {{
    "trace": (lambda: m.trace(text), {{}}),
    "explorer": (explorer, {{}}),
    "attribution": (lambda: lw.attribute(m, text, n_steps=8, internal_batch_size=4, progress=False),
                    {{"n_steps": 8, "internal_batch_size": 4}}),
    "patching": (lambda: lw.patch(m, {clean!r}, {corrupt!r}, metric=lw.logit_diff(" Mary", " John"), progress=False),
                 {{}}),
}}
fn, settings = runs[what]
estimate = lw.estimate(m, {clean!r} if what == "patching" else text, what=what, **settings).bytes
reset_peak(); before = rss_kib("VmRSS")
fn()
print(json.dumps({{"measured": (rss_kib("VmHWM") - before) * 1024, "estimate": estimate}}))
"""
)


@pytest.mark.slow
@pytest.mark.parametrize(("what", "n"), [("trace", 1536), ("explorer", 256), ("attribution", 192), ("patching", 14)])
def test_estimate_within_measured_peak(what, n):
    # Another length than the one the explorer's part for the panels was measured at (512 tokens).
    row = run_python(MEASURE.format(what=what, n=n, clean=CLEAN, corrupt=CORRUPT))
    ratio = row["measured"] / row["estimate"]
    print(f"{what}: measured {row['measured'] / 1e6:.0f} MB, estimated {row['estimate'] / 1e6:.0f} MB ({ratio:.2f}x)")
    assert 1 / 1.5 < ratio < 1.5


@pytest.mark.slow
def test_refused_under_an_address_space_limit():
    # RLIMIT_AS 1.5 GB above what the process maps: a request estimated far above it is refused before it runs
    # (the process lives on), and a smaller setting the message names then runs under the same limit.
    row = run_python(
        PEAK
        + """
import json, resource, psutil, warnings
warnings.filterwarnings("ignore")
import llmasos_widgets as lw
m = lw.load_model("smollm2-135m")
text = m.tokenizer.decode(m.tokenizer(" ".join(lw.sample_texts()[:400]))["input_ids"][:512])
limit = psutil.Process().memory_info().vms + 1_500_000_000
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = {}
try:
    lw.attribute(m, text, n_steps=64, internal_batch_size=64, progress=False)
except lw.NotEnoughMemory as e:
    out["attribution"] = str(e)
try:
    lw.Explorer(m, text * 8, panels=["tokens"])
except lw.NotEnoughMemory as e:
    out["explorer"] = str(e)
smaller = lw.attribute(m, "The capital of France is", n_steps=4, internal_batch_size=1, progress=False)
out["smaller_ran"] = smaller.scores.shape[-1]
print(json.dumps(out))
"""
    )
    assert "internal_batch_size=16" in row["attribution"] and "is free" in row["attribution"]
    assert "a shorter text" in row["explorer"] and "fewer panels" in row["explorer"]
    assert row["smaller_ran"] > 0
