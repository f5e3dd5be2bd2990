"""attribute() against captum (and inseq) on smollm2-135m, CPU, same settings side by side.

    python bench/attribution.py

(a) one target, IG 32 steps, 5- and 40-token prompts: ours vs captum's LLMGradientAttribution
(b) the matrix of a 16-token generation: ours (one batched pass per step group) vs captum per token
(c) the default (adaptive IG, refined until the completeness gap is under 5 %) against captum at the same
    number of steps: time, and the gap each reaches
(d) (a) against inseq's integrated gradients, if inseq imports here
(e) the default on a 4-token generation matrix (each row refined on its own) against 32 fixed steps
"""

from __future__ import annotations

import time
import warnings

import torch

import llmasos_widgets as lw

warnings.filterwarnings("ignore")
LONG = (
    "The history of the city is long. Merchants came by river and by road, and the market grew around "
    "the old bridge. Every spring the town held a fair where farmers sold wool, cheese and"
)


def timed(fn, repeat=2):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def captum_llm(model, ids, target_ids, n_steps, internal_batch_size=None):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    inp = TextTokenInput("x", model.tokenizer, baselines=pad_id(model))
    inp.inp_tensor = inp.itp_tensor = torch.tensor([ids])
    inp.values = [model.decode_token(i) for i in ids]
    inp.n_itp_features = len(ids)
    llm = LLMGradientAttribution(
        LayerIntegratedGradients(model.model, model.model.get_input_embeddings()), model.tokenizer
    )
    return llm.attribute(
        inp, target=torch.tensor(target_ids), n_steps=n_steps, internal_batch_size=internal_batch_size
    ).token_attr


def captum_single(model, ids, target_id, n_steps):
    # One token at a time through captum's LayerIntegratedGradients (the LLM wrapper fails to
    # pretty-print a one-token tensor target in captum 0.9.0).
    from captum.attr import LayerIntegratedGradients

    def forward(input_ids):
        return torch.log_softmax(model.model(input_ids).logits[:, -1], -1)[:, target_id]

    lig = LayerIntegratedGradients(forward, model.model.get_input_embeddings())
    base = torch.full((1, len(ids)), pad_id(model))
    return lig.attribute(torch.tensor([ids]), base, n_steps=n_steps)[0].sum(-1)


def pad_id(model):
    tok = model.tokenizer
    return next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def main() -> None:
    model = lw.load_model("smollm2-135m")
    tok = model.tokenizer
    long_ids = tok.encode(LONG)[:40]
    prompts = {5: "The capital of France is", 40: tok.decode(long_ids)}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model {model}")
    attribute = lw.attribute
    attribute(model, prompts[5], n_steps=4, progress=False)  # warm-up (first-call set-up)
    print("\n(a) one target (the model's next token), integrated gradients, 32 steps, gausslegendre")
    for text in prompts.values():
        ids = tok.encode(text)
        t_ours, res = timed(lambda text=text: attribute(model, text, n_steps=32, progress=False))
        t_cap, ref = timed(lambda ids=ids, res=res: captum_llm(model, ids, res.target_ids, 32))
        print(
            f"  {len(ids):2d}-token prompt, target {res.target_tokens[0]!r}: ours {t_ours:.2f} s, captum "
            f"LLMGradientAttribution {t_cap:.2f} s, ratio {t_ours / t_cap:.2f}, max rel diff {rel(res.scores, ref):.1e}"
        )
    print("\n(b) matrix of a 16-token generation, integrated gradients, 32 steps")
    gen = model.generate_trace("Q: What is the capital of France?\nA:", max_new_tokens=16)
    first = gen.generated.index(True)
    t_ours, res = timed(lambda: attribute(model, gen, n_steps=32, progress=False), repeat=1)

    def loop():
        rows = []
        for j in range(16):
            prefix = gen.token_ids[: first + j]
            rows.append(captum_single(model, prefix, gen.token_ids[first + j], 32))
        return rows

    t_cap, rows = timed(loop, repeat=1)
    diff = max(rel(res.scores[j, : len(r)], r) for j, r in enumerate(rows))
    print(
        f"  prompt {first} tokens + 16 generated {''.join(gen.tokens[first:])!r}: ours {t_ours:.2f} s, captum "
        f"per-token loop {t_cap:.2f} s, ratio {t_ours / t_cap:.2f}, max rel diff {diff:.1e}"
    )
    print("\n(c) the default: adaptive IG until the completeness gap is < 5 %; captum at as many steps (gausslegendre)")
    for text in prompts.values():
        ids = tok.encode(text)
        t_ours, res = timed(lambda text=text: attribute(model, text, progress=False), repeat=1)
        steps = res.ig_steps[0]
        # Hundreds of steps in one batch do not fit in memory at 40 tokens: captum gets the batch ours
        # uses (about 2,048 positions a forward pass).
        batch = max(1, 2048 // len(ids))
        t_cap, ref = timed(
            lambda ids=ids, res=res, steps=steps, batch=batch: captum_llm(model, ids, res.target_ids, steps, batch),
            repeat=1,
        )
        change = float((res.objective - res.baseline_objective)[0])
        captum_gap = abs(float(ref.sum()) - change) / abs(change)
        print(
            f"  {len(ids):2d}-token prompt, target {res.target_tokens[0]!r}: ours {steps} points, gap "
            f"{float(res.completeness_gap[0]):.2%}, {t_ours:.2f} s; captum {steps} steps, gap {captum_gap:.2%}, "
            f"{t_cap:.2f} s; time ratio {t_ours / t_cap:.2f}"
        )
    print("\n(d) against inseq's integrated_gradients (same prompts, 32 steps)")
    try:
        import inseq

        iq = inseq.load_model(model.model, "integrated_gradients", tokenizer=tok)
        for text in prompts.values():
            res = attribute(model, text, n_steps=32, progress=False)
            full = text + res.target_tokens[0]
            t_ours, _ = timed(lambda text=text: attribute(model, text, n_steps=32, progress=False))
            t_iq, _ = timed(
                lambda text=text, full=full: iq.attribute(text, generated_texts=full, n_steps=32, show_progress=False)
            )
            n = len(tok.encode(text))
            print(f"  {n:2d}-token prompt: ours {t_ours:.2f} s, inseq {t_iq:.2f} s, ratio {t_ours / t_iq:.2f}")
    except Exception as e:  # report, never fake: inseq may not run with this transformers
        print(f"  inseq could not run here: {type(e).__name__}: {str(e)[:300]}")

    print("\n(e) the default on a generation matrix: every row refined until its gap is < 5 %, against 32 fixed steps")
    gen = model.generate_trace("Q: What is the capital of France?\nA:", max_new_tokens=4)
    t_default, res = timed(lambda: attribute(model, gen, progress=False), repeat=1)
    t_fixed, fixed = timed(lambda: attribute(model, gen, n_steps=32, progress=False), repeat=1)
    gaps = ", ".join(f"{float(g):.2%}" for g in res.completeness_gap)
    fixed_gaps = ", ".join(f"{float(g):.0%}" for g in fixed.completeness_gap)
    print(f"  default: points per row {res.ig_steps}, gaps [{gaps}], {t_default:.1f} s")
    print(f"  32 steps: gaps [{fixed_gaps}], {t_fixed:.1f} s")


if __name__ == "__main__":
    main()
