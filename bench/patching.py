"""lw.patch against a plain hook loop and nnsight on the IOI pair, smollm2-135m, CPU, in one run.

    pip install nnsight   # in the test extras for this benchmark only
    python bench/patching.py

(a) residual-stream patching, 30 layers x 14 positions, logit difference " Mary" - " John":
    a plain loop (one forward of the model per cell, the activation replaced by a hook), nnsight in its
    tutorial pattern (one trace per layer, one invoke per position), one batched forward per layer,
    and lw.patch; the largest difference between the grids; the ratio to nnsight (target <= 0.3).
    lw.patch is also timed with every cell computed (its shortcut for cells before the prompts differ
    switched off), to show what the reuse of the corrupt run's states alone gives.
(b) the head sweep, 30 layers x 9 heads (each head's output patched at every position): plain loop,
    nnsight (one trace per layer, one invoke per head), lw.patch.
(c) attribution patching of both grids: time (target <= 1 s) and its correlation with the exact grid.
"""

from __future__ import annotations

import time
import warnings

import torch

import llmasos_widgets as lw

warnings.filterwarnings("ignore")
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def plain_loop(model, ids, clean_acts, mary, john, heads):
    """One forward of the HF model per cell, the activation replaced by a forward pre-hook."""
    L, H = model.n_layers, model.n_heads
    T = len(ids["corrupt"])
    grid = torch.zeros(L, H if heads else T)
    for layer in range(L):
        module = model.adapter.attn_out_proj(layer) if heads else model.adapter.blocks()[layer]
        for index in range(grid.shape[1]):

            def swap(mod, args, kwargs, layer=layer, index=index):
                x = (args[0] if args else kwargs["hidden_states"]).clone()
                src = clean_acts[layer]
                if heads:
                    d = x.shape[-1] // H
                    x[0, :, index * d : (index + 1) * d] = src[:, index * d : (index + 1) * d]
                else:
                    x[0, index] = src[index]
                return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

            handle = module.register_forward_pre_hook(swap, with_kwargs=True)
            try:
                with torch.no_grad():
                    logits = model.model(torch.tensor([ids["corrupt"]])).logits[0, -1]
            finally:
                handle.remove()
            grid[layer, index] = logits[mary] - logits[john]
    return grid


def batched_per_layer(model, ids, clean_acts, mary, john):
    """One forward per layer: the corrupt prompt repeated once per position, each row patched at its own."""
    L, T = model.n_layers, len(ids["corrupt"])
    grid = torch.zeros(L, T)
    for layer in range(L):

        def swap(mod, args, kwargs, layer=layer):
            x = (args[0] if args else kwargs["hidden_states"]).clone()
            x[torch.arange(T), torch.arange(T)] = clean_acts[layer]
            return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

        handle = model.adapter.blocks()[layer].register_forward_pre_hook(swap, with_kwargs=True)
        try:
            with torch.no_grad():
                logits = model.model(torch.tensor([ids["corrupt"]] * T)).logits[:, -1]
        finally:
            handle.remove()
        grid[layer] = logits[:, mary] - logits[:, john]
    return grid


def nnsight_sweep(model, mary, john, heads):
    """nnsight's tutorial pattern: the clean activations saved in one trace, then a trace per layer with
    one invoke per position (or head)."""
    from nnsight import LanguageModel as NNSight

    nn = NNSight(model.model, tokenizer=model.tokenizer)
    L, H = model.n_layers, model.n_heads

    def site(layer):
        return nn.model.layers[layer].self_attn.o_proj if heads else nn.model.layers[layer]

    with torch.no_grad():
        clean = []  # names first bound inside a trace are not visible after it
        with nn.trace(CLEAN):
            for layer in range(L):
                clean.append(site(layer).input.save())
        T = clean[0].shape[1]
        grid = torch.zeros(L, H if heads else T)
        for layer in range(L):
            diffs = []
            with nn.trace() as tracer:
                for index in range(grid.shape[1]):
                    with tracer.invoke(CORRUPT):
                        if heads:
                            d = clean[layer].shape[-1] // H
                            cols = slice(index * d, (index + 1) * d)
                            site(layer).input[:, :, cols] = clean[layer][:, :, cols]
                        else:
                            site(layer).input[:, index] = clean[layer][:, index]
                        logits = nn.lm_head.output[0, -1]
                        diffs.append((logits[mary] - logits[john]).save())
            grid[layer] = torch.tensor([float(d) for d in diffs])
    return grid


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    model = lw.load_model("smollm2-135m")
    metric = lw.logit_diff(" Mary", " John")
    mary, john = (model.tokenizer.encode(t, add_special_tokens=False)[0] for t in (" Mary", " John"))
    ids = {"clean": model.tokenizer(CLEAN)["input_ids"], "corrupt": model.tokenizer(CORRUPT)["input_ids"]}
    lw.patch(model, CLEAN, CORRUPT, metric=metric, positions=[13], progress=False)  # warm-up
    experiment = lw.Patching(model, CLEAN, CORRUPT, metric)
    resid = [t[0] for t in experiment.clean.resid]
    z = [t[0] for t in experiment.clean.z]
    L, T, H = model.n_layers, len(ids["clean"]), model.n_heads
    print(f"smollm2-135m, IOI pair, {T} tokens, {torch.get_num_threads()} threads")

    print(f"\n(a) residual stream, {L} layers x {T} positions = {L * T} cells")
    t_loop, loop = timed(lambda: plain_loop(model, ids, resid, mary, john, heads=False))
    t_batch, batch = timed(lambda: batched_per_layer(model, ids, resid, mary, john))
    t_nn, nn = timed(lambda: nnsight_sweep(model, mary, john, heads=False))
    t_ours, ours = timed(lambda: lw.patch(model, CLEAN, CORRUPT, metric=metric, progress=False))
    everything = lw.Patching(model, CLEAN, CORRUPT, metric)
    everything.first_difference = 0  # compute every cell, even those that equal the corrupt run
    t_all, ours_all = timed(lambda: everything.exact(progress=False))
    for name, t, grid in (
        ("plain loop (a forward per cell)", t_loop, loop),
        ("one batched forward per layer", t_batch, batch),
        ("nnsight 0.8 tutorial pattern", t_nn, nn),
        ("lw.patch", t_ours, ours.values),
        ("lw.patch, every cell computed", t_all, ours_all.values),
    ):
        print(f"  {name:34s} {t:7.2f} s   max |grid - plain loop| {float((grid - loop).abs().max()):.1e}")
    print(f"  lw.patch / nnsight: {t_ours / t_nn:.3f}  (target <= 0.3); every cell computed: {t_all / t_nn:.3f}")
    print(f"  lw.patch / plain loop: {t_ours / t_loop:.3f}; strongest cell {ours.top_cells(1)[0]}")

    print(f"\n(b) heads, {L} layers x {H} heads = {L * H} cells (each head patched at every position)")
    t_hloop, hloop = timed(lambda: plain_loop(model, ids, z, mary, john, heads=True))
    t_hnn, hnn = timed(lambda: nnsight_sweep(model, mary, john, heads=True))
    t_hours, hours = timed(lambda: lw.patch(model, CLEAN, CORRUPT, metric=metric, over="heads", progress=False))
    for name, t, grid in (
        ("plain loop (a forward per cell)", t_hloop, hloop),
        ("nnsight 0.8 tutorial pattern", t_hnn, hnn),
        ("lw.patch", t_hours, hours.values),
    ):
        print(f"  {name:34s} {t:7.2f} s   max |grid - plain loop| {float((grid - hloop).abs().max()):.1e}")
    print(f"  lw.patch / nnsight: {t_hours / t_hnn:.3f}  (target <= 0.3); strongest heads {hours.top_cells(3)}")

    print("\n(c) attribution patching (one forward, one backward)")
    for label, exact, over in (("resid", ours, "resid"), ("heads", hours, "heads")):
        exp = lw.Patching(model, CLEAN, CORRUPT, metric, over=over)
        t_attr, approx = timed(exp.attribution)
        print(f"  {label}: {t_attr:.3f} s (target <= 1 s), correlation with exact {approx.correlation(exact):.3f}")


if __name__ == "__main__":
    main()
