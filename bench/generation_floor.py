"""Why a generation's IG matrix costs what it does: the parts of ours, and two ways to go lower, timed.

    python bench/generation_floor.py

On smollm2-135m, the 16-token generation of bench/attribution.py (b), IG with 32 steps. Exact
integrated gradients need, for every output row and every step, the gradient of that row's
log-probability with respect to the inputs: one vector-Jacobian product (VJP) per row and step.
Ours shares one forward pass of all 32 steps between the rows and runs one backward per row. Timed:

1. that forward, and the 16 backwards (one row each), on the whole sequence;
2. the same 16 VJPs batched (``is_grads_batched``) in groups of 4 and 16: the same FLOPs in fewer calls;
3. each row's backward cut to its prefix, by running the forward in KV-cached chunks of c tokens:
   fewer FLOPs, more and smaller operations;
4. captum's per-token loop (as in bench/attribution.py), for the ratio.
"""

from __future__ import annotations

import time
import warnings

import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from transformers import DynamicCache

import llmasos_widgets as lw
from llmasos_widgets.analyses import attribution as A

warnings.filterwarnings("ignore")
STEPS = 32


def main() -> None:
    model = lw.load_model("smollm2-135m")
    gen = model.generate_trace("Q: What is the capital of France?\nA:", max_new_tokens=16)
    problem = A._plan(model, gen, None, None, None)
    n, rows = problem.n_interp, len(problem.rows)
    x = model.model.get_input_embeddings()(torch.tensor(problem.ids)).detach()
    b = A._baseline(model, "pad", x, n)
    step_sizes, alpha_fn = approximation_parameters("gausslegendre")
    alphas = torch.tensor(alpha_fn(STEPS))[:, None, None].float()
    weights = torch.tensor(step_sizes(STEPS)).float()
    for p in model.model.parameters():
        p.requires_grad_(False)
    var = (b[None] + alphas * (x[:n] - b)[None]).requires_grad_(True)  # [step, position, d_model]
    print(f"{rows} rows, {n} input positions, {STEPS} IG steps, torch threads {torch.get_num_threads()}")

    def forward():
        return A._objective(model, problem, var)  # [step, row]

    torch.autograd.grad(forward()[:, 0].sum(), var)  # warm-up
    start = time.perf_counter()
    f = forward()
    t_forward = time.perf_counter() - start
    start = time.perf_counter()
    reference = torch.stack(
        [torch.autograd.grad((f[:, r] * weights).sum(), var, retain_graph=True)[0] for r in range(rows)]
    )
    t_backward = time.perf_counter() - start
    ours = t_forward + t_backward
    print(f"\n1. ours: forward {t_forward:.2f} s + {rows} backwards {t_backward:.2f} s = {ours:.2f} s")

    print(f"\n2. the {rows} VJPs batched (is_grads_batched)")
    for group in (4, 16):
        f = forward()
        start = time.perf_counter()
        for lo in range(0, rows, group):
            cotangents = torch.zeros(min(group, rows - lo), STEPS, rows)
            for j in range(len(cotangents)):
                cotangents[j, :, lo + j] = weights
            torch.autograd.grad(f, var, grad_outputs=cotangents, is_grads_batched=True, retain_graph=True)
        print(f"   groups of {group:2d}: backwards {time.perf_counter() - start:.2f} s (ours {t_backward:.2f} s)")

    print("\n3. each row's backward cut to its prefix: forward in KV-cached chunks of c generated tokens")
    head = model.model.get_output_embeddings()
    first = problem.positions[0] + 1  # the prompt is one chunk: every row reads past it
    for c in (1, 4, 8):
        bounds = [(0, first)] + [(lo, min(n, lo + c)) for lo in range(first, n, c)]
        start = time.perf_counter()
        cache, hidden = DynamicCache(), []
        for lo, hi in bounds:
            out = model.adapter.base()(
                inputs_embeds=var[:, lo:hi],
                past_key_values=cache,
                use_cache=True,
                attention_mask=torch.ones(STEPS, hi, dtype=torch.long),
            )
            hidden.append(out.last_hidden_state)
        h = torch.cat(hidden, 1)
        t_fwd = time.perf_counter() - start
        logps = [
            torch.log_softmax(head(h[:, p]).float(), -1)[:, t]
            for p, t in zip(problem.positions, problem.rows, strict=True)
        ]
        start = time.perf_counter()
        grads = torch.stack([torch.autograd.grad((lp * weights).sum(), var, retain_graph=True)[0] for lp in logps])
        t_bwd = time.perf_counter() - start
        diff = float((grads - reference).abs().max() / reference.abs().max())
        print(
            f"   c = {c}: forward {t_fwd:.2f} s + backwards {t_bwd:.2f} s = {t_fwd + t_bwd:.2f} s "
            f"(ours {ours:.2f} s), max rel diff {diff:.1e}"
        )

    print("\n4. captum's per-token loop")
    import attribution as bench_attribution  # bench/attribution.py, on sys.path when run from bench/

    start = time.perf_counter()
    first_generated = gen.generated.index(True)
    for j in range(rows):
        prefix = gen.token_ids[: first_generated + j]
        bench_attribution.captum_single(model, prefix, gen.token_ids[first_generated + j], STEPS)
    t_captum = time.perf_counter() - start
    print(f"   {t_captum:.2f} s; ours {ours:.2f} s, ratio {ours / t_captum:.2f}")
    print(
        f"   0.3 x captum is {0.3 * t_captum:.2f} s; one forward and {rows} backwards take "
        f"{t_forward:.2f} + {rows} x {t_backward / rows:.2f} s here"
    )


if __name__ == "__main__":
    main()
