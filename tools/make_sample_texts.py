"""Rebuild llmasos_widgets/data/sample_texts.tsv from WordNet 3.0's example sentences.

WordNet (Princeton University, WordNet 3.0 licence: use, copy, modify and distribute for any purpose,
keeping the copyright notice) glosses carry hand-written example sentences in double quotes. This
script takes the longer ones, spreads the choice over WordNet's 45 lexicographer files (topics such
as noun.food, noun.animal, verb.weather) so no topic dominates, and writes ``topic<TAB>text`` lines.

Run (Debian or Ubuntu; the package is fetched with apt, nothing is installed)::

    cd /tmp && apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn
    python tools/make_sample_texts.py /tmp/wn/usr/share/wordnet > llmasos_widgets/data/sample_texts.tsv

The output is deterministic for a given WordNet release (Debian's ``wordnet-base 1:3.0-37`` was used).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

N_TEXTS = 2000
MIN_WORDS = 8
MAX_CHARS = 240
SEED = 0

# The 45 lexicographer files in WordNet 3.0, by number (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()

# A short list of words whose sentences we leave out of a general-purpose sample (slurs, obscenity).
BLOCK = re.compile(r"\b(fuck\w*|shit\w*|cunt|nigger\w*|bitch\w*|whore\w*|fag\w*|bastard\w*|slut\w*)\b", re.I)


def clean(sentence: str) -> str | None:
    """Tidy one example sentence into a text, or None when it does not make a good sample."""
    s = " ".join(sentence.split())
    if "`" in s or "_" in s or "--" in s or len(s) > MAX_CHARS or len(s.split()) < MIN_WORDS:
        return None  # quoting artefacts, underscores of multiword lemmas, or too short/long
    if BLOCK.search(s):
        return None
    s = s[0].upper() + s[1:]
    if s[-1] not in ".!?":
        s += "."
    return s


def main(wordnet_dir: str) -> None:
    by_topic: dict[str, list[str]] = {name: [] for name in LEXNAMES}
    seen: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        for line in Path(wordnet_dir, f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            topic = LEXNAMES[int(line.split()[1])]
            for quoted in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]):
                text = clean(quoted)
                if text and text.lower() not in seen:
                    seen.add(text.lower())
                    by_topic[topic].append(text)
    rng = random.Random(SEED)
    for texts in by_topic.values():
        rng.shuffle(texts)
    # Round-robin over topics so small topics are fully used and large ones do not crowd them out.
    chosen: list[tuple[str, str]] = []
    while len(chosen) < N_TEXTS:
        for topic in LEXNAMES:
            if by_topic[topic] and len(chosen) < N_TEXTS:
                chosen.append((topic, by_topic[topic].pop()))
    rng.shuffle(chosen)
    out = sys.stdout
    for topic, text in chosen:
        out.write(f"{topic}\t{text}\n")


if __name__ == "__main__":
    main(sys.argv[1])
