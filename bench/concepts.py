"""TCAV: ours (`lw.tcav`) against `captum.concept.TCAV` configured the same, side by side in one run.

Same model, concept, inputs, target, layers, random sets, pooling and CAV training (captum gets a
Classifier running our fit); captum computes activations, CAVs and layer gradients its own way.
Both start cold (no cached activations). The scores must be equal; the time ratio is ours/captum.

    python bench/concepts.py                    # smollm2-135m, 30 examples, 20 inputs, 3 layers, 10 sets
    python bench/concepts.py --model tiny-llama --layers 0 1
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

GEOGRAPHY = [
    "Paris is the capital of France.",
    "The Nile flows north into the Mediterranean.",
    "Mount Everest lies on the border of Nepal and China.",
    "Lisbon is a port on the Atlantic coast.",
    "The Amazon is the largest rainforest on Earth.",
    "Canada has more lakes than any other country.",
    "The Sahara covers much of northern Africa.",
    "Rome is built on seven hills.",
    "The Danube runs through Vienna and Budapest.",
    "Tokyo is the capital of Japan.",
    "The Andes stretch along the west of South America.",
    "Australia is both a country and a continent.",
    "The Rhine flows from the Alps to the North Sea.",
    "Cairo sits on the banks of the Nile.",
    "Iceland lies just south of the Arctic Circle.",
    "Madrid is in the centre of Spain.",
    "The Alps cross France, Switzerland, Italy and Austria.",
    "Lake Baikal is in Siberia.",
    "Buenos Aires is the capital of Argentina.",
    "The Mississippi drains much of the United States.",
    "Greenland is the largest island in the world.",
    "Berlin lies on the river Spree.",
    "The Himalayas separate India from Tibet.",
    "Norway's coast is cut by deep fjords.",
    "Peru borders Ecuador, Colombia, Brazil, Bolivia and Chile.",
    "The Dead Sea is below sea level.",
    "Istanbul spans Europe and Asia.",
    "Kenya lies on the equator.",
    "The Thames flows through London.",
    "Mexico City is built on an old lake bed.",
]
INPUTS = [
    "The capital of France is",
    "The Eiffel Tower is in",
    "The Louvre museum is in",
    "She took the train from Lyon to",
    "The city of light is",
    "Notre-Dame cathedral stands in",
    "The Seine flows through",
    "He flew to France and landed in",
    "The French government sits in",
    "The Champs-Élysées is an avenue in",
    "Montmartre is a hill in",
    "The 2024 Olympic Games were held in",
    "The largest city in France is",
    "Versailles is near",
    "The Arc de Triomphe is in",
    "Their honeymoon was in romantic",
    "The Musée d'Orsay is in",
    "The Sorbonne is a university in",
    "The Tour de France ends in",
    "The French capital,",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", type=int, nargs="+", default=[6, 12, 18])
    parser.add_argument("--n-random", type=int, default=10)
    args = parser.parse_args()

    import torch

    import llmasos_widgets as lw
    from llmasos_widgets.analyses import concepts, concepts_captum

    torch.manual_seed(0)
    model = lw.load_model(args.model)
    model.model(torch.tensor([[1, 2, 3]]))  # warm-up, counted for neither side
    geo = lw.Concept("geography", GEOGRAPHY)
    target = " Paris" if args.model == "smollm2-135m" else 5
    print(
        f"{args.model}: 1 concept x {len(GEOGRAPHY)} examples, {len(INPUTS)} inputs, layers {args.layers}, "
        f"{args.n_random} random sets (+ random-vs-random), target {target!r}"
    )

    concepts._CACHE.clear()  # cold: activations computed in the timed run
    start = time.perf_counter()
    res = lw.tcav(model, INPUTS, target, [geo], args.layers, n_random=args.n_random, progress=False)
    ours = time.perf_counter() - start

    save = tempfile.mkdtemp(prefix="lw-captum-")
    try:
        start = time.perf_counter()
        scores, random_scores = concepts_captum.captum_tcav(model, res, [geo], save)
        theirs = time.perf_counter() - start
    finally:
        shutil.rmtree(save, ignore_errors=True)

    same = torch.equal(scores, res.scores) and torch.equal(random_scores, res.random_scores)
    print(f"ours   {ours:6.1f} s")
    print(f"captum {theirs:6.1f} s")
    print(f"ratio  {ours / theirs:6.2f}  (ours / captum)")
    print(f"same sign_count on all {scores.numel() + random_scores.numel()} CAVs: {same}")
    for row in res.rows():
        print(
            f"  layer {row['layer']:2d}: score {row['score']:.2f} ± {row['score_std']:.2f}, random "
            f"{row['random_score']:.2f} ± {row['random_std']:.2f}, p = {row['p_value']:.2g} (adjusted "
            f"{row['p_adjusted']:.2g}), significant {row['significant']}, CAV accuracy {row['cav_accuracy']:.2f}, "
            f"consistency {row['cav_consistency']:.2f}"
        )
    if not same:
        raise SystemExit("scores differ from captum's")


if __name__ == "__main__":
    main()
