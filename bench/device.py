"""Every analysis on an accelerator (bfloat16, one or two devices) or offloaded, against the plain CPU float32 run.

    python -m bench.device                 # CUDA: bfloat16 on cuda:0; and split over cuda:0 + cuda:1 when there are two
    python -m bench.device --offload       # here too: blocks alternately on "cpu" and "disk" (accelerate's hooks)

smollm2-135m: the Trace (residual stream, attention of every layer, last logits), residual-stream patching of the
IOI pair, integrated gradients (32 steps), steering (a random direction at layer 15) and the shipped layer-12 SAE's
codes. Each is compared with the same call on the plain float32 CPU model: the largest absolute difference,
relative to the reference's largest value, must stay under the placement's tolerance (bfloat16: 8 bits of mantissa,
so 5e-2; float32 offloaded: 1e-4). Prints a Markdown table with each analysis's time, and the peak GPU memory.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import warnings  # noqa: E402

import torch  # noqa: E402

import llmasos_widgets as lw  # noqa: E402
from llmasos_widgets.core.models import cache_dir  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
PROMPT = "The capital of France is"


def analyses(model: lw.LanguageModel) -> dict[str, tuple[torch.Tensor, float]]:
    """Each analysis's numbers (float32, CPU) and seconds."""
    out = {}

    def timed(name, fn):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        began = time.perf_counter()
        value = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out[name] = (value.float().cpu(), time.perf_counter() - began)

    trace = model.trace(CLEAN)
    timed("trace: residual", lambda: model.trace(CLEAN).residual)
    timed("trace: attention", lambda: torch.stack([trace.attention(layer) for layer in range(model.n_layers)]))
    timed("trace: last logits", lambda: trace.logits_at(-1))
    metric = lw.logit_diff(" Mary", " John")
    timed("patch resid", lambda: lw.patch(model, CLEAN, CORRUPT, metric=metric, progress=False).values)
    timed("IG (32 steps)", lambda: lw.attribute(model, PROMPT, target=" Paris", n_steps=32, progress=False).scores)
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    timed(
        "steer: first-token KL",
        lambda: torch.tensor(lw.steer(model, PROMPT, lw.Direction(v, 15), 8.0, max_new_tokens=8).kl_next),
    )
    sae = lw.load_sae("smollm2-135m", layer=12)
    timed("SAE codes", lambda: sae.encode(model.trace(CLEAN)))
    return out


def offloaded(folder: Path) -> lw.LanguageModel:
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    device_map |= {f"model.layers.{i}": ("cpu", "disk")[i % 2] for i in range(30)}
    cached = cache_dir() / "smollm2-135m-0.1.2"
    lw.load_model("smollm2-135m")  # makes the cached safetensors folder on a first run
    return lw.load_model(str(cached), device_map=device_map, offload_folder=folder)


def placements(offload: bool) -> dict[str, tuple[lw.LanguageModel, float]]:
    if offload:
        return {"float32, blocks on cpu/disk (offloaded)": (offloaded(Path(tempfile.mkdtemp())), 1e-4)}
    if not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --offload, or on a GPU machine")
    found = {"bfloat16, cuda:0": (lw.load_model("smollm2-135m", device="cuda", dtype=torch.bfloat16), 5e-2)}
    if torch.cuda.device_count() > 1:
        device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": 1, "lm_head": 1}
        device_map |= {f"model.layers.{i}": int(i >= 15) for i in range(30)}
        two = lw.load_model(str(cache_dir() / "smollm2-135m-0.1.2"), dtype=torch.bfloat16, device_map=device_map)
        found["bfloat16, cuda:0 + cuda:1"] = (two, 5e-2)
    else:  # one GPU: half the blocks offloaded to CPU memory, run on the GPU
        device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": 0, "lm_head": 0}
        device_map |= {f"model.layers.{i}": (0, "cpu")[i % 2] for i in range(30)}
        off = lw.load_model(str(cache_dir() / "smollm2-135m-0.1.2"), dtype=torch.bfloat16, device_map=device_map)
        found["bfloat16, cuda:0, odd blocks offloaded to CPU"] = (off, 5e-2)
    return found


def main(offload: bool) -> None:
    warnings.filterwarnings("ignore")
    torch.set_grad_enabled(True)
    reference = analyses(lw.load_model("smollm2-135m"))
    print("| placement | analysis | max abs diff / max abs ref | tolerance | seconds | CPU float32 seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    failed = 0
    for label, (model, tolerance) in placements(offload).items():
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        analyses(model)  # warm-up: kernels, caches
        found = analyses(model)
        for name, (value, seconds) in found.items():
            ref, ref_seconds = reference[name]
            rel = float((value - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
            failed += rel > tolerance
            print(f"| {label} | {name} | {rel:.2e} | {tolerance:g} | {seconds:.3f} | {ref_seconds:.3f} |")
        if torch.cuda.is_available():
            print(f"| {label} | peak GPU memory | {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB | | | |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main("--offload" in sys.argv[1:])
