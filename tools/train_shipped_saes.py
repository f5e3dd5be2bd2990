r"""Train the SAEs shipped for smollm2-135m from WordNet 3.0's glosses (Debian's ``wordnet-base``).

Every synset of WordNet 3.0 has a gloss: a definition, often followed by quoted example sentences
("a member of the genus Canis ...; \"the dog barked all night\""). The 117,659 glosses of the
``data.noun/verb/adj/adv`` files, deduplicated, are one text each: 1.89 million SmolLM2 tokens, general
English over every topic WordNet covers, under the WordNet 3.0 licence (see
``llmasos_widgets/data/README.md``). Nothing of the corpus ships; only the trained SAEs do.

Run (Debian or Ubuntu)::

    apt-get install wordnet-base        # or: apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn
    python tools/train_shipped_saes.py --wordnet /usr/share/wordnet --out llmasos_widgets/data/saes

Each layer's run is seeded and checkpointed (``--work``): an interrupted run continues where it
stopped when the same command is run again. ``--smoke`` trains on a slice for a few steps and
prints the throughput, to size a full run. The output is deterministic for a given WordNet release
and torch build (Debian's ``wordnet-base 1:3.0-37`` was used).
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

MODEL = "smollm2-135m"
LAYERS = (12, 24)  # one early-middle, one late (of 30)
N_LATENTS = 4608  # 8 × d_model
K = 32
EPOCHS = 2
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="folder with WordNet's data.noun etc.")
    parser.add_argument("--out", default="llmasos_widgets/data/saes", help="where the shipped files go")
    parser.add_argument("--work", default="sae-work", help="checkpoints (resumable)")
    parser.add_argument("--layers", type=int, nargs="+", default=list(LAYERS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="a few minutes on a slice: measure throughput only")
    parser.add_argument("--smoke-texts", type=int, default=3000)
    parser.add_argument("--smoke-steps", type=int, default=30)
    args = parser.parse_args()

    texts = wordnet_glosses(args.wordnet)
    model = lw.load_model(MODEL, device=args.device)
    n_tokens = sum(len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"])
    print(f"{len(texts)} glosses, {n_tokens} tokens with {MODEL}'s tokenizer", file=sys.stderr)
    if args.smoke:
        texts = texts[: args.smoke_texts]
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    report = {}
    for layer in args.layers:
        started = time.perf_counter()
        sae = lw.train_sae(
            model,
            texts,
            layer=layer,
            n_latents=N_LATENTS,
            k=K,
            seed=SEED,
            epochs=1 if args.smoke else args.epochs,
            checkpoint=None if args.smoke else work / f"{MODEL}-layer{layer}.ckpt",
            max_steps=args.smoke_steps if args.smoke else None,
        )
        train = sae.meta["train"]
        entry = {
            "seconds": round(time.perf_counter() - started, 1),
            "quality": {k: v for k, v in vars(sae.quality).items()},
            **{k: train[k] for k in ("steps", "total_steps", "tokens_seen", "seconds_forward", "seconds_sae")},
            "forward_tokens_per_second": round(train["tokens_seen"] / max(train["seconds_forward"], 1e-9), 1),
            "sae_tokens_per_second": round(train["tokens_seen"] / max(train["seconds_sae"], 1e-9), 1),
            "tokens_per_second": train["tokens_per_second"],
            "skip_first": sae.skip_first,
            "full_run_tokens": n_tokens * args.epochs,
        }
        entry["full_run_hours_estimate"] = round(entry["full_run_tokens"] / train["tokens_per_second"] / 3600, 2)
        report[layer] = entry
        print(json.dumps({layer: entry}, indent=1), file=sys.stderr)
        if not args.smoke:
            sae.save(out / f"{MODEL}-layer{layer}.safetensors", dtype=torch.float16)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
