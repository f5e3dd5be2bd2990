"""Trace + every layer's attention, against one eager forward with output_attentions=True.

Each measurement runs in a fresh process: the model is loaded, the peak-RSS mark is reset
(/proc/self/clear_refs), the work runs, and the peak above the loaded model is read from VmHWM.

    python bench/trace.py                   # smollm2-135m, T = 512 and 2048
    python bench/trace.py --tokens 128 --model tiny-llama
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _memory import reset_peak, rss_kib  # bench/ is on sys.path when a script runs

SAMPLE = (
    "The history of the city is long. Merchants came by river and by road, and the market grew "
    "around the old bridge. Every spring the town held a fair where farmers sold wool, cheese and "
    "horses, and travellers told stories of distant places. "
)


def one(case: str, model_name: str, n_tokens: int) -> dict:
    import torch

    import llmasos_widgets as lw

    torch.set_grad_enabled(False)
    model = lw.load_model(model_name)
    ids = model.tokenizer(SAMPLE * (n_tokens // 40 + 2))["input_ids"][:n_tokens]
    text = model.tokenizer.decode(ids)
    checksum = 0.0
    if case == "eager":
        model.model.set_attn_implementation("eager")
        ids = model.tokenizer(text)["input_ids"]
    # Warm up on a short text: pages in the (memory-mapped) weights and one-time kernel set-up, which
    # would otherwise count against whichever case runs first.
    model.model(torch.tensor([ids[:16]]))
    base = rss_kib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    if case == "ours":
        trace = model.trace(text)
        for layer in range(trace.n_layers):
            checksum += float(trace.attention(layer)[:, -1].sum())
        n = len(trace)
    else:
        out = model.model(torch.tensor([ids]), output_attentions=True)
        for pattern in out.attentions:
            checksum += float(pattern[0, :, -1].sum())
        n = len(ids)
    seconds = time.perf_counter() - start
    peak = rss_kib("VmHWM")
    return {"case": case, "tokens": n, "seconds": seconds, "peak_mib": (peak - base) / 1024, "checksum": checksum}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, nargs="*", default=[512, 2048])
    parser.add_argument("--one", nargs=2, metavar=("CASE", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.model, int(args.one[1]))))
        return
    print(f"model {args.model}: trace + attention of every layer (ours) vs eager forward with output_attentions")
    print(
        f"{'T':>6} {'ours s':>8} {'eager s':>8} {'time ratio':>10} {'ours MiB':>9} {'eager MiB':>10} {'mem ratio':>9}"
    )
    for n in args.tokens:
        results = {}
        for case in ("ours", "eager"):
            cmd = [sys.executable, __file__, "--model", args.model, "--one", case, str(n)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results[case] = json.loads(out.strip().splitlines()[-1])
        o, e = results["ours"], results["eager"]
        assert abs(o["checksum"] - e["checksum"]) < 1e-3 * max(1.0, abs(e["checksum"])), (o, e)
        print(
            f"{o['tokens']:>6} {o['seconds']:>8.2f} {e['seconds']:>8.2f} {o['seconds'] / e['seconds']:>10.2f} "
            f"{o['peak_mib']:>9.0f} {e['peak_mib']:>10.0f} {o['peak_mib'] / e['peak_mib']:>9.3f}"
        )


if __name__ == "__main__":
    main()
