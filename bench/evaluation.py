"""evaluate()'s batched curves against the plain loop (one forward per curve step), smollm2-135m, CPU.

    python bench/evaluation.py [T ...]    (prompt lengths; default 16 48)

For prompts of T tokens: the deletion + insertion curves (2 (T + 1) perturbed inputs, tokens replaced
by the pad token) and the drop curves (2 T inputs of lengths 1..T), each computed (a) one forward per
step, the plain loop, and (b) batched as evaluate() runs them; and, side by side in the same run, (c)
bare forwards of the very same batch shapes (the same sequences grouped by length as evaluate groups
them), in two forms: Hugging Face's own ``model(input_ids).logits`` (every position unembedded), and
the least a forward can do here (the base model, then the head at the last position only). The
issue's target: a batched curve costs at most 1.2x the forward of its batch, i.e. at most 1.2x one
forward per curve step, whatever the curve code adds (building the sequences, softmax, copies).
Reported: ms per curve step for the loop and batched, and batched / (c) for each form of forward.
Best of 3 runs each, after one run of every shape.
"""

from __future__ import annotations

import sys
import time

import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.evaluation import MAX_POSITIONS, drop_curves, replace_curves, target_probs

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


def bare_forwards(model, seqs, *, hf):
    """The forwards of ``seqs`` grouped by length, as target_probs batches them, with nothing around them."""
    by_len = {}
    for s in seqs:
        by_len.setdefault(len(s), []).append(list(s))
    head = model.model.get_output_embeddings()
    with torch.no_grad():
        for group in by_len.values():  # chunked as target_probs chunks them: MAX_POSITIONS tokens a forward
            step = max(1, MAX_POSITIONS // len(group[0]))
            for rows in (group[lo : lo + step] for lo in range(0, len(group), step)):
                forward(model, head, torch.tensor(rows), hf)


def forward(model, head, ids, hf):
    mask = torch.ones_like(ids)
    if hf:
        model.model(input_ids=ids, attention_mask=mask)
    else:
        head(model.adapter.base()(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1])


def main() -> None:
    model = lw.load_model("smollm2-135m")
    all_ids = model.trace(TEXT).token_ids
    target, pad = 264, model.pad_token_id
    print(f"smollm2-135m, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'T':>4} {'curves':>8} {'steps':>6} {'loop/step':>10} {'batched/step':>13} {'fwd HF/step':>12} "
          f"{'fwd min/step':>13} {'batched/HF':>11} {'batched/min':>12} {'loop/batched':>13} {'same':>5}")  # fmt: skip
    for T in [int(a) for a in sys.argv[1:]] or (16, 48):
        ids = list(all_ids[:T])
        order = list(torch.randperm(T, generator=torch.Generator().manual_seed(0)))
        order = [int(i) for i in order]
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
            hf_t, _ = timed(lambda seqs=seqs: bare_forwards(model, seqs, hf=True))
            min_t, _ = timed(lambda seqs=seqs: bare_forwards(model, seqs, hf=False))
            steps = len(seqs)
            same = bool(torch.allclose(loop_p, batch_p, atol=1e-5))
            ms = [t / steps * 1e3 for t in (loop_t, batch_t, hf_t, min_t)]
            ratios = f"{batch_t / hf_t:>11.2f} {batch_t / min_t:>12.2f} {loop_t / batch_t:>13.1f}"
            print(f"{T:>4} {name:>8} {steps:>6} {ms[0]:>8.2f}ms {ms[1]:>11.2f}ms {ms[2]:>10.2f}ms {ms[3]:>11.2f}ms "
                  f"{ratios} {str(same):>5}")  # fmt: skip


if __name__ == "__main__":
    main()
