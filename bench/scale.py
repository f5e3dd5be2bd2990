"""How the costs grow with the parameter count: smollm2-135m, Llama-3.2-1B, Gemma-2-2B and Llama-3.1-8B, side by side.

The larger models are built from their published configs with random weights (`lw.random_model`): what a
model costs does not depend on what its weights learned. Every model runs in bfloat16 (smollm2 is cast), each
in a fresh process so that its peak resident memory is its own. Per model:

- build / load time and the peak resident growth while loading, against the weights' own size;
- a trace of 128 tokens: seconds per token;
- the Explorer on that text (every panel): build time, the attention overview's bytes on the wire, and one click
  (what the page asks of every panel when a token is clicked: predictions, attention row, neurons, lens column);
- `lw.patch`, the residual sweep of the 14-token IOI pair (layers x 14 cells, logit difference);
- `lw.attribute(method="input_x_gradient")` on the same prompt;
- an SAE forward (a random TopK SAE of 8 x d_model latents, k = 32, at the middle layer, on the trace);
- for each step, the peak resident growth over the process's size before it.

    python bench/scale.py              # smollm2, 1B, 2B (when gemma2 loads)
    python bench/scale.py --with-8b    # and the 8B (16 GB of weights: needs about 20 GiB free)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _memory import reset_peak, rss_kib  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
MODELS = {"smollm2-135m": "smollm2-135m", "1B": "llama-3.2-1b", "2B": "gemma-2-2b", "8B": "llama-3.1-8b"}
GB = 1e9


HIGHEST: list[int] = [0]  # the process's highest resident size seen at the end of any measured step (bytes)


class Peak:
    """Time and peak resident growth of the block it wraps."""

    def __enter__(self) -> Peak:
        reset_peak()
        self.before = rss_kib("VmRSS")
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.bytes = (rss_kib("VmHWM") - self.before) * 1024
        HIGHEST[0] = max(HIGHEST[0], rss_kib("VmHWM") * 1024)


def one(key: str) -> dict:
    """Measure one model in this process; returns the row."""
    import warnings

    import torch

    import llmasos_widgets as lw

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    row: dict = {"model": key}
    with Peak() as p:
        if key == "smollm2-135m":
            model = lw.load_model("smollm2-135m", dtype=torch.bfloat16)
        else:
            model = lw.random_model(MODELS[key], dtype=torch.bfloat16)
    n_params = sum(t.numel() for t in model.model.parameters())
    row.update(params=n_params, weights=n_params * 2, load_s=p.seconds, load_peak=p.bytes)

    text = " ".join(lw.sample_texts()[:40])
    ids = model.tokenizer(text)["input_ids"][:128]
    text = model.tokenizer.decode(ids, skip_special_tokens=True)
    model.trace(CLEAN)  # warm-up: the first forward in a process pays one-off costs
    with Peak() as p:
        trace = model.trace(text)
    row.update(tokens=len(trace), trace_s_per_token=p.seconds / len(trace), trace_peak=p.bytes)

    with Peak() as p:
        ex = lw.Explorer(trace)
    row.update(explorer_s=p.seconds, explorer_peak=p.bytes)
    sent: list = []
    ex.send = lambda content, buffers=None: sent.append((content, buffers or []))
    with Peak() as p:
        ex._on_custom_msg(ex, {"type": "request", "id": 1, "panel": "attention", "what": "overview", "size": 32}, [])
        while not any(c.get("type") == "response" and c.get("id") == 1 for c, _ in sent):
            time.sleep(0.01)
    row.update(overview_s=p.seconds, overview_peak=p.bytes)
    row["overview_bytes"] = sum(len(b) for c, bufs in sent if c.get("id") == 1 for b in bufs)
    position, asks = len(trace) // 2, []
    asks += [("tokens", {"what": "predictions", "position": position, "k": 5})]
    asks += [("attention", {"what": "token", "position": position, "direction": "from"})]
    asks += [("neurons", {"what": "layer", "layer": ex.selected_layer, "k": 20})]
    asks += [("lens", {"what": "column", "position": position})]
    with Peak() as p:
        for i, (panel, ask) in enumerate(asks):
            ex._on_custom_msg(ex, {"type": "request", "id": 10 + i, "panel": panel, **ask}, [])
    errors = [c["message"] for c, _ in sent if c.get("type") == "error"]
    if errors:
        raise RuntimeError(f"the click failed: {errors}")
    row.update(click_s=p.seconds, click_peak=p.bytes)

    with Peak() as p:
        lw.patch(model, CLEAN, CORRUPT, metric=lw.logit_diff(" Mary", " John"), over="resid", progress=False)
    row.update(patch_s=p.seconds, patch_peak=p.bytes)
    with Peak() as p:
        lw.attribute(model, CLEAN, target=" Mary", method="input_x_gradient", progress=False)
    row.update(attribute_s=p.seconds, attribute_peak=p.bytes)
    sae = lw.SAE.random(model.d_model, 8 * model.d_model, k=32, layer=model.n_layers // 2).to(dtype=torch.bfloat16)
    with Peak() as p:
        codes = sae.encode(trace, sparse=True)
        sae.decode(codes)
    row.update(sae_s=p.seconds, sae_peak=p.bytes)
    row["process_peak"] = rss_kib("VmHWM") * 1024  # since the last reset: the SAE step; below, the whole run
    row["highest_rss"] = HIGHEST[0]  # the whole process at its highest, over every step
    with open("/proc/self/status") as f:
        row["rss_end"] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return row


COLUMNS = [
    ("params", "parameters", lambda v: f"{v / 1e9:.2f} B"),
    ("weights", "weights (bf16)", lambda v: f"{v / GB:.2f} GB"),
    ("load_s", "build/load", lambda v: f"{v:.1f} s"),
    ("load_peak", "load peak growth", lambda v: f"{v / GB:.2f} GB"),
    ("load_ratio", "peak / weights", lambda v: f"{v:.2f}"),
    ("trace_s_per_token", "trace per token", lambda v: f"{v * 1e3:.1f} ms"),
    ("trace_peak", "trace peak", lambda v: f"{v / 1e6:.0f} MB"),
    ("explorer_s", "Explorer build", lambda v: f"{v:.2f} s"),
    ("explorer_peak", "Explorer peak", lambda v: f"{v / 1e6:.0f} MB"),
    ("overview_s", "attention overview", lambda v: f"{v:.2f} s"),
    ("overview_bytes", "overview on the wire", lambda v: f"{v / 1e3:.0f} kB"),
    ("click_s", "one click", lambda v: f"{v * 1e3:.0f} ms"),
    ("patch_s", "patch sweep (resid)", lambda v: f"{v:.1f} s"),
    ("patch_peak", "patch peak", lambda v: f"{v / 1e6:.0f} MB"),
    ("attribute_s", "input x gradient", lambda v: f"{v:.2f} s"),
    ("attribute_peak", "attribution peak", lambda v: f"{v / 1e6:.0f} MB"),
    ("sae_s", "SAE forward", lambda v: f"{v * 1e3:.0f} ms"),
]


def report(rows: list[dict]) -> None:
    for r in rows:
        r["load_ratio"] = r["load_peak"] / r["weights"]
    base = rows[0]
    names = [r["model"] for r in rows]
    width = 14
    print(
        f"\n{'':24}" + "".join(f"{n:>{width}}" for n in names) + "   growth vs smollm2 (" + ", ".join(names[1:]) + ")"
    )
    for key, label, fmt in COLUMNS:
        cells = "".join(f"{fmt(r[key]):>{width}}" for r in rows)
        growth = ", ".join(f"{r[key] / base[key]:.1f}x" if base[key] else "-" for r in rows[1:])
        print(f"{label:24}{cells}   {growth}")
    print(f"\n{rows[0]['tokens']} tokens traced; the IOI pair is {len(CLEAN.split())} words (14 tokens)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-8b", action="store_true", help="also the 8B (needs about 20 GiB free)")
    parser.add_argument("--only", choices=list(MODELS), help="one model, printed as JSON (used by the parent)")
    args = parser.parse_args()
    if args.only:
        print("ROW " + json.dumps(one(args.only)))
        return
    import llmasos_widgets as lw

    keys = ["smollm2-135m", "1B"]
    try:
        lw.core.adapters.adapter_class("gemma2")
        keys.append("2B")
    except ValueError:
        print("Gemma-2-2B left out: this checkout does not load the gemma2 family yet")
    if args.with_8b:
        keys.append("8B")
    rows = []
    for key in keys:
        out = subprocess.run([sys.executable, __file__, "--only", key], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{key} failed:\n{out.stderr[-3000:]}")
            continue
        rows.append(json.loads(next(line[4:] for line in out.stdout.splitlines() if line.startswith("ROW "))))
        print(f"{key}: done ({rows[-1]['load_s'] + rows[-1]['patch_s']:.0f} s)", flush=True)
    report(rows)


if __name__ == "__main__":
    main()
