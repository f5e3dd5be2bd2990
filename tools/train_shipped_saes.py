r"""Train the SAEs shipped for smollm2-135m from WordNet 3.0's glosses (Debian's ``wordnet-base``).

Every synset of WordNet 3.0 has a gloss: a definition, often followed by quoted example sentences
("a member of the genus Canis ...; \"the dog barked all night\""). The 117,659 glosses of the
``data.noun/verb/adj/adv`` files, deduplicated, are one text each: 1.89 million SmolLM2 tokens, general
English over every topic WordNet covers, under the WordNet 3.0 licence (see
``llmasos_widgets/data/README.md``). Nothing of the corpus ships; only the trained SAEs do.

Run (Debian or Ubuntu), niced so that other work keeps the CPU::

    apt-get install wordnet-base        # or: apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn
    nice -n 19 python tools/train_shipped_saes.py --wordnet /usr/share/wordnet \
        --work /work/sae-work --out llmasos_widgets/data/saes

Three SAEs: layers 12 and 24 of the model, and layer 12 of ``lw.randomized(model)`` (every weight drawn
again, seeded), the sanity control that notebook 06 shows beside the real one: same corpus, width, k,
epochs and seed. ``--models trained`` or ``--models randomized`` runs one of the two.

Two stages, both resumable: run the same command again after an interruption and it continues.

1. *Cache.* The glosses run through the model once: one forward pass per batch serves both layers
   and stops after layer 24 (:func:`~llmasos_widgets.analyses.sae.cache_activations`); the residual streams
   go to ``--work/cache-{model name}`` as float16 memmaps (1.15 kB a token and layer: 2.2 GB per layer for the
   1.89M tokens), the progress saved every 50 batches. ``--tokens N`` caches only the first N.
2. *Train.* Each layer's SAE trains ``EPOCHS`` epochs from the cache (``train_sae(model, cache,
   layer)``: no forward pass), checkpointed to ``--work`` every 200 steps, then is measured on the
   held-out pieces (variance explained, dead latents, L0, next-token loss with the reconstruction
   spliced in) and saved as float16 to ``--out``. ``--work/report.json`` keeps the figures.

Measured with ``--measure`` on the 2-core CPU this was sized on (torch 2.13, idle): the forward pass
to layer 24 at 1,110 tokens/s (batches of 64 length-sorted glosses, both layers kept), an SAE step
(2,048 tokens, 4,608 latents, k = 32) from the cache at 3.0 steps/s (layer 12) to 3.7 (layer 24). The
full run (1.88M tokens, 3 epochs, 2 layers: 2,565 steps a layer) takes about 28 min to fill the
cache, 22 min to train and 3 min to measure: about an hour when the machine is otherwise idle; the
control adds about 15 min of forward pass (12 layers) and 13 min of training. The shipped run (November
2026) trained each SAE in 10–13 min; its fills ran beside other work (420 and 1,030 tokens/s).
Other work on the same cores slows both stages several-fold (two processes' OpenMP threads on two
cores: the fill ran at 100–180 tokens/s beside a benchmark). ``--measure`` times both on a slice
(a few minutes) and prints the estimate for the recipe given. The output is deterministic for a
given WordNet release and torch build (Debian's ``wordnet-base 1:3.0-37`` was used).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.sae import cache_activations

MODEL = "smollm2-135m"
LAYERS = (12, 24)  # one early-middle, one late (of 30)
CONTROL_LAYERS = (12,)  # the randomised-weights control (issue 13's sanity check), same recipe
N_LATENTS = 4608  # 8 × d_model
K = 32
TOKENS = 0  # all 1.89M: one forward pass over them is ~28 min on 2 idle CPU cores
EPOCHS = 3  # later epochs read the cache: ~9 min each for both layers
BATCH_SIZE = 64  # glosses per forward pass (about 15 tokens each, sorted by length)
SEED = 0


def wordnet_glosses(wordnet_dir: str | Path) -> list[str]:
    """Every distinct gloss of WordNet's four data files, in a fixed shuffled order."""
    seen: set[str] = set()
    texts = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in Path(wordnet_dir, f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            gloss = " ".join(line.split(" | ", 1)[1].split())
            gloss = re.sub(r"\s*;\s*$", "", gloss)
            if gloss and gloss not in seen:
                seen.add(gloss)
                texts.append(gloss)
    random.Random(SEED).shuffle(texts)
    return texts


def first_tokens(model: lw.LanguageModel, texts: list[str], n_tokens: int) -> tuple[list[str], int, int]:
    """The leading texts holding ``n_tokens`` tokens (all of them for 0): ``(texts, their tokens, all tokens)``."""
    lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
    total, kept = sum(lengths), 0
    for n, length in enumerate(lengths):
        if n_tokens and kept >= n_tokens:
            return texts[:n], kept, total
        kept += length
    return texts, kept, total


def train_layers(
    model: lw.LanguageModel, texts: list[str], layers: list[int], work: Path, out: Path | None, args: argparse.Namespace
) -> dict[str, object]:
    """Cache ``layers`` of ``model`` over ``texts`` in ``work``, train an SAE per layer, save them to ``out``."""
    cache = cache_activations(model, texts, layers, work / f"cache-{model.name}", batch_size=BATCH_SIZE)
    fill = {
        "tokens": cache.n_tokens,
        "seconds": cache.meta["seconds"],
        "forward_tokens_per_second": round(cache.n_tokens / max(cache.meta["seconds"], 1e-9), 1),
    }
    print(json.dumps({model.name: {"cache": fill}}), file=sys.stderr)
    report: dict[str, object] = {"cache": fill}
    for layer in layers:
        started = time.perf_counter()
        sae = lw.train_sae(
            model,
            cache,
            layer=layer,
            n_latents=N_LATENTS,
            k=K,
            seed=SEED,
            epochs=1 if args.measure else args.epochs,
            checkpoint=None if args.measure else work / f"{model.name}-layer{layer}.ckpt",
            max_steps=args.measure_steps if args.measure else None,
        )
        train = sae.meta["train"]
        train["activations"] = "activation cache (tools/train_shipped_saes.py)"  # not this machine's path
        entry = {
            "seconds": round(time.perf_counter() - started, 1),
            "quality": dict(vars(sae.quality)),
            **{k: train[k] for k in ("steps", "total_steps", "tokens_seen", "seconds_forward", "seconds_sae")},
            "sae_steps_per_second": round(train["steps"] / max(train["seconds_sae"], 1e-9), 3),
            "skip_first": sae.skip_first,
            # The targets: variance explained ≥ 0.8 (FVU ≤ 0.2) and dead latents ≤ 10 %.
            "meets_targets": sae.quality.fvu <= 0.2 and sae.quality.dead_share <= 0.1,
        }
        report[str(layer)] = entry
        print(json.dumps({model.name: {layer: entry}}, indent=1), file=sys.stderr)
        if out is not None:
            sae.save(out / f"{model.name}-layer{layer}.safetensors", dtype=torch.float16)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="folder with WordNet's data.noun etc.")
    parser.add_argument("--out", default="llmasos_widgets/data/saes", help="where the shipped files go")
    parser.add_argument("--work", default="sae-work", help="the activation caches and checkpoints (resumable)")
    parser.add_argument("--layers", type=int, nargs="+", default=list(LAYERS))
    parser.add_argument("--control-layers", type=int, nargs="*", default=list(CONTROL_LAYERS))
    parser.add_argument(
        "--models", nargs="+", choices=("trained", "randomized"), default=["trained", "randomized"],
        help="the model as trained, and the sanity control: the same recipe on lw.randomized(model)",
    )  # fmt: skip
    parser.add_argument("--tokens", type=int, default=TOKENS, help="corpus tokens to cache (0: all 1.89M)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--measure", action="store_true", help="time the forward pass and SAE steps on a slice")
    parser.add_argument("--measure-texts", type=int, default=2000)
    parser.add_argument("--measure-steps", type=int, default=12)
    args = parser.parse_args()

    model = lw.load_model(MODEL, device=args.device)
    texts, n_tokens, all_tokens = first_tokens(model, wordnet_glosses(args.wordnet), args.tokens)
    print(f"{len(texts)} glosses, {n_tokens} of {all_tokens} tokens with {MODEL}'s tokenizer", file=sys.stderr)
    work = Path(args.work)
    if args.measure:
        texts, work = texts[: args.measure_texts], work / "measure"
    out = None if args.measure else Path(args.out)
    for folder in (out, work):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    report_file = work / "report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    report["recipe"] = {"tokens": n_tokens, "epochs": args.epochs, "n_latents": N_LATENTS, "k": K, "seed": SEED}
    for kind in args.models:
        if kind == "trained":
            subject, layers = model, args.layers
        else:
            subject, layers = lw.randomized(model, seed=SEED), args.control_layers
        report[subject.name] = train_layers(subject, texts, layers, work, out, args)
        report_file.write_text(json.dumps(report, indent=1))
    if args.measure:
        trained = report[MODEL]
        steps_per_second = min(trained[str(layer)]["sae_steps_per_second"] for layer in args.layers)
        steps = n_tokens * args.epochs / 2048 * len(args.layers)
        hours = n_tokens / trained["cache"]["forward_tokens_per_second"] / 3600 + steps / steps_per_second / 3600
        report["estimate"] = {"tokens": n_tokens, "sae_steps": round(steps), "hours": round(hours, 2)}
        report_file.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
