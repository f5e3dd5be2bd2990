"""evaluate()'s batched curves against the plain loop (one forward per curve step), smollm2-135m, CPU.

    python bench/evaluation.py [T ...]    (prompt lengths; default 16 48)

For prompts of T tokens: the time of one forward over the prompt, then the deletion + insertion curves
(2 (T + 1) perturbed inputs, tokens replaced by the pad token) and the drop curves (2 T inputs of
lengths 1..T), each computed (a) one forward per step, the plain loop, and (b) batched as evaluate()
runs them. Reported: seconds per curve step and that cost as a multiple of one forward (target: at
most 1.2x). Best of 3 runs each, after one run of every shape; one forward: best of 5.
"""

from __future__ import annotations

import sys
import time

import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.evaluation import drop_curves, replace_curves, target_probs

TEXT = (
    "The history of the city is long. Merchants came by river and by road, and the market grew around the old "
    "bridge. Every spring the town held a fair where farmers sold wool, cheese and bread to visitors from the "
    "coast, and the"
)


def timed(fn, repeat=3):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    model = lw.load_model("smollm2-135m")
    all_ids = model.trace(TEXT).token_ids
    target, pad = 264, model.pad_token_id
    print(f"smollm2-135m, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'T':>4} {'curves':>8} {'steps':>6} {'1 forward':>10} {'loop/step':>10} {'batched/step':>13} "
          f"{'loop x':>7} {'batched x':>10} {'same':>5}")  # fmt: skip
    for T in [int(a) for a in sys.argv[1:]] or (16, 48):
        ids = list(all_ids[:T])
        order = list(torch.randperm(T, generator=torch.Generator().manual_seed(0)))
        order = [int(i) for i in order]
        target_probs(model, [ids], target)  # warm
        one, _ = timed(lambda ids=ids: target_probs(model, [ids], target), repeat=5)
        for name in ("replace", "drop"):
            if name == "replace":
                seqs = [[pad if i in order[:k] else t for i, t in enumerate(ids)] for k in range(T + 1)]
                seqs += [[t if i in order[:k] else pad for i, t in enumerate(ids)] for k in range(T + 1)]

                def batched(ids=ids, order=order):
                    return torch.cat(replace_curves(model, ids, order, pad, target))
            else:
                seqs = [[t for i, t in enumerate(ids) if i not in order[:k]] for k in range(T)]
                seqs += [[t for i, t in enumerate(ids) if i in order[:k]] for k in range(1, T + 1)]

                def batched(ids=ids, order=order):
                    return torch.cat(drop_curves(model, ids, order, target))

            target_probs(model, seqs, target)  # every shape once (first use of a shape costs extra)
            loop_t, loop_p = timed(lambda seqs=seqs: torch.cat([target_probs(model, [s], target) for s in seqs]))
            batch_t, batch_p = timed(batched)
            steps = len(seqs)
            same = bool(torch.allclose(loop_p, batch_p, atol=1e-5))
            print(f"{T:>4} {name:>8} {steps:>6} {one * 1e3:>8.1f}ms {loop_t / steps * 1e3:>8.1f}ms "
                  f"{batch_t / steps * 1e3:>11.1f}ms {loop_t / steps / one:>7.2f} {batch_t / steps / one:>10.2f} "
                  f"{str(same):>5}")  # fmt: skip


if __name__ == "__main__":
    main()
