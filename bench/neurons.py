"""NeuronIndex.build against a plain batched forward pass; its peak memory at 1k and 10k texts; wire bytes.

Each measurement runs in a fresh process: the model is loaded and warmed up, the peak-RSS mark is
reset (/proc/self/clear_refs), the work runs, and the peak above that point is read from VmHWM.

    python bench/neurons.py                  # smollm2-135m: speed on 500 texts, memory at 1k and 10k, T = 1024
    python bench/neurons.py --texts 200 --memory-texts 200 2000 --model tiny-llama

Cases:
  forward    the base model over the texts, batched and padded exactly as the index batches them
  index      NeuronIndex.build(layers=[10, 12], top_k=20): the issue's example; the pass stops after layer 12
  index-last NeuronIndex.build(layers=[28, 29], top_k=20): the whole pass runs, so this is the real overhead
  index-early NeuronIndex.build(layers=[0, 1], top_k=20): the same index size (2 layers x 1536 neurons x 20),
             the pass stops after layer 1, so 1k and 10k texts fit in minutes on 2 shared cores: memory only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _memory import reset_peak, rss_kib  # bench/ is on sys.path when a script runs


def corpus(n: int) -> list[str]:
    import llmasos_widgets as lw

    texts = lw.sample_texts()
    # Past the 2,000 shipped texts, cycle: same lengths, so 1k and 10k differ only in how many.
    return [texts[i % len(texts)] for i in range(n)]


def layers_for(case: str, n_layers: int) -> list[int]:
    if case == "index":
        return [min(10, n_layers - 1), min(12, n_layers - 1)]
    if case == "index-early":
        return [0, 1]
    return sorted({n_layers - 2, n_layers - 1})


def loaded(model_name: str, n_texts: int):  # type: ignore[no-untyped-def]
    """The model (warmed up, gradients off) and the corpus."""
    import torch

    import llmasos_widgets as lw

    torch.set_grad_enabled(False)
    model = lw.load_model(model_name)
    texts = corpus(n_texts)
    model.model(torch.tensor([model.tokenizer(texts[0])["input_ids"]]))  # warm-up
    return model, texts


def sorted_pieces(model, texts: list[str]) -> tuple[list, dict]:  # type: ignore[no-untyped-def]
    """The texts cut to the context and sorted by length, as the index cuts and batches them."""
    from llmasos_widgets.core.corpus import text_pieces

    pieces, counts = text_pieces(model, texts, model.context_length)
    pieces.sort(key=lambda p: len(p[1]))
    return pieces, counts


def plain_forward(model, pieces: list, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    """The base model over the pieces, batched and padded exactly as the index batches them."""
    import torch

    pad = model.tokenizer.pad_token_id or 0
    for s in range(0, len(pieces), batch_size):
        batch = [ids for _, ids in pieces[s : s + batch_size]]
        n = max(map(len, batch))
        ids = torch.tensor([b + [pad] * (n - len(b)) for b in batch])
        mask = torch.tensor([[1] * len(b) + [0] * (n - len(b)) for b in batch])
        model.adapter.base()(input_ids=ids, attention_mask=mask)


def one(case: str, model_name: str, n_texts: int, batch_size: int) -> dict:
    import llmasos_widgets as lw

    model, texts = loaded(model_name, n_texts)
    base = rss_kib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    if case == "forward":
        pieces, counts = sorted_pieces(model, texts)
        plain_forward(model, pieces, batch_size)
        tokens = counts["tokens"]
    else:
        index = lw.NeuronIndex.build(
            model, texts, layers=layers_for(case, model.n_layers), top_k=20, batch_size=batch_size, progress=False
        )
        tokens = index.counts["tokens"]
    seconds = time.perf_counter() - start
    peak = rss_kib("VmHWM")
    return {"case": case, "texts": n_texts, "tokens": tokens, "seconds": seconds, "peak_mib": (peak - base) / 1024}


def speed(model_name: str, n_texts: int, batch_size: int, rounds: int) -> dict:
    """The three cases alternated in one process, best of ``rounds`` each: other jobs on a shared
    machine slow whichever case runs while they do, and alternating spreads that evenly."""
    import llmasos_widgets as lw

    model, texts = loaded(model_name, n_texts)
    pieces, counts = sorted_pieces(model, texts)

    def forward() -> None:
        plain_forward(model, pieces, batch_size)

    def index(case: str):  # type: ignore[no-untyped-def]
        layers = layers_for(case, model.n_layers)
        return lambda: lw.NeuronIndex.build(model, texts, layers, top_k=20, batch_size=batch_size, progress=False)

    cases = {"forward": forward, "index": index("index"), "index-last": index("index-last")}
    best = {case: float("inf") for case in cases}
    for _ in range(rounds):
        for case, run in cases.items():
            start = time.perf_counter()
            run()
            best[case] = min(best[case], time.perf_counter() - start)
    return {"tokens": counts["tokens"], "seconds": best}


def wire(model_name: str, n_tokens: int) -> None:
    import llmasos_widgets as lw
    from llmasos_widgets.views import wire

    model = lw.load_model(model_name)
    text = " ".join(lw.sample_texts())
    ids = model.tokenizer(text)["input_ids"][:n_tokens]
    trace = model.trace(model.tokenizer.decode(ids), truncate=True)

    def sent_bytes(view, **request):
        sent = []
        view.send = lambda content, buffers=None: sent.append((content, buffers or []))
        view._on_custom_msg(view, {"type": "request", "id": 1, **request}, [])
        while not any(c["type"] in ("response", "error") for c, _ in sent):
            time.sleep(0.01)
        assert all(c["type"] != "error" for c, _ in sent), sent
        return sum(len(json.dumps(c)) + sum(len(b) for b in bufs) for c, bufs in sent)

    layer = min(12, trace.n_layers - 1)
    neurons = lw.NeuronView(trace, layer=layer)
    summary = sent_bytes(neurons, what="layer", layer=layer, k=20)
    neuron = sent_bytes(neurons, what="neuron", layer=layer, neuron=0, k=10, bins=30)
    full = trace.mlp_post(layer).numel() * 2
    lens = sent_bytes(lw.LensView(trace), what="lens")
    print(f"\nbytes sent to the browser, T = {len(trace)} ({model_name}, {wire.__name__} JSON + buffers):")
    print(f"  NeuronView one layer (each token's top-20 neurons + neuron peaks): {summary / 1e6:.3f} MB")
    print(f"  NeuronView one neuron (overlay, histogram, vocabulary):            {neuron / 1e6:.3f} MB")
    print(f"  one layer's full activations in float16, for comparison:          {full / 1e6:.3f} MB")
    print(f"  LensView, all {trace.n_layers} layers (top token + probability per cell):     {lens / 1e6:.3f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--texts", type=int, default=300, help="corpus size for the speed comparison")
    parser.add_argument("--memory-texts", type=int, nargs="*", default=[1000, 10000], help="sizes for index-early")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=1024, help="T for the wire-bytes measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of the speed comparison")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "TEXTS"), help=argparse.SUPPRESS)
    parser.add_argument("--speed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.model, int(args.one[1]), args.batch_size)))
        return
    if args.speed:
        print(json.dumps(speed(args.model, args.texts, args.batch_size, args.rounds)))
        return
    print(f"model {args.model}: NeuronIndex.build (top_k=20, batch {args.batch_size}) vs a plain batched forward")
    print(f"{'case':>11} {'texts':>6} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'vs fwd':>7} {'peak MiB':>9}")
    print(f"(load average at start: {open('/proc/loadavg').read().split()[0]} on {__import__('os').cpu_count()} cores)")
    cmd = [sys.executable, __file__, "--model", args.model, "--batch-size", str(args.batch_size)]
    out = subprocess.run(
        [*cmd, "--texts", str(args.texts), "--rounds", str(args.rounds), "--speed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"speed: {args.texts} texts, {r['tokens']} tokens, best of {args.rounds} alternated rounds, one process")
    forward_rate = r["tokens"] / r["seconds"]["forward"]
    for case, seconds in r["seconds"].items():
        rate = r["tokens"] / seconds
        print(f"{case:>11} {args.texts:>6} {r['tokens']:>7} {seconds:>8.1f} {rate:>7.0f} {rate / forward_rate:>6.2f}x")
    print("peak memory above the loaded model, one fresh process per run:")
    for case, n in [("forward", args.texts), ("index", args.texts)] + [("index-early", n) for n in args.memory_texts]:
        out = subprocess.run([*cmd, "--one", case, str(n)], capture_output=True, text=True, check=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        rate = m["tokens"] / m["seconds"]
        print(
            f"{case:>11} {n:>6} {m['tokens']:>7} {m['seconds']:>8.1f} {rate:>7.0f} {'':>7} {m['peak_mib']:>9.0f}",
            flush=True,
        )
    wire(args.model, args.tokens)


if __name__ == "__main__":
    main()
