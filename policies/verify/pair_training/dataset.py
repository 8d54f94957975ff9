"""Training and calibration pairs from the shipped seed intents: hand-written paraphrases and look-alikes, plus the
rewrites of perturb.py. Domains are split between training and calibration, never shared.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..wordnet import WordNet
from .perturb import LOOK_ALIKES, PARAPHRASES


@dataclass(frozen=True)
class Intent:
    intent_id: str
    domain: str
    category: str
    sibling_of: str | None
    trap_kind: str | None
    paraphrases: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """Two questions and whether one answer serves both (label 1) or not (0); ``kind`` says where it came from."""

    a: str
    b: str
    label: int
    kind: str
    domain: str
    category: str


def read_intents(lines: Iterable[str]) -> list[Intent]:
    intents = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        paraphrases = tuple(str(p) for p in row["paraphrases"] if str(p).strip())
        intents.append(Intent(str(row["intent_id"]), str(row.get("domain") or row["category"]), str(row["category"]),
                              row.get("sibling_of"), row.get("trap_kind"), paraphrases))
    return intents


def seed_intents(folder: Path | None = None) -> list[Intent]:
    """Every seed intent shipped in ``pair_training/seeds`` (or in ``folder``)."""
    files = sorted(folder.glob("*.jsonl")) if folder else sorted(
        (f for f in resources.files(__package__).joinpath("seeds").iterdir() if f.name.endswith(".jsonl")),
        key=lambda f: f.name)
    intents: list[Intent] = []
    for file in files:
        intents.extend(read_intents(file.read_text(encoding="utf-8").splitlines()))
    return intents


def split_domains(intents: list[Intent], calibration_share: float = 0.25) -> tuple[set[str], set[str]]:
    """(training domains, calibration domains): every k-th domain in name order goes to calibration."""
    domains = sorted({i.domain for i in intents})
    step = max(2, round(1 / calibration_share))
    calibration = set(domains[step // 2::step])
    return set(domains) - calibration, calibration


def pairs_from_intents(intents: list[Intent], wn: WordNet, seed: int, rewrites_per_question: int = 2,
                       ) -> Iterator[Pair]:
    """Paraphrase pairs within each intent, look-alike pairs across siblings, and rewrites of every question."""
    rng = random.Random(seed)
    by_id = {i.intent_id: i for i in intents}
    for intent in intents:
        texts = intent.paraphrases
        for x in range(len(texts)):
            for y in range(x + 1, len(texts)):
                yield Pair(texts[x], texts[y], 1, "paraphrase", intent.domain, intent.category)
        sibling = by_id.get(intent.sibling_of or "")
        if sibling is not None:
            kind = f"sibling:{intent.trap_kind or 'other'}"
            for mine in texts:
                for theirs in sibling.paraphrases:
                    yield Pair(mine, theirs, 0, kind, intent.domain, intent.category)
        for text in texts:
            for name in rng.sample(sorted(LOOK_ALIKES), len(LOOK_ALIKES)):
                changed = LOOK_ALIKES[name](text, wn, rng)
                if changed and changed.lower() != text.lower():
                    yield Pair(text, changed, 0, f"rewrite:{name}", intent.domain, intent.category)
            made = 0
            for name in rng.sample(sorted(PARAPHRASES), len(PARAPHRASES)):
                if made >= rewrites_per_question:
                    break
                changed = PARAPHRASES[name](text, wn, rng)
                if changed and changed != text:
                    # the rewrite against its own source (a trivial variant) and against another paraphrase
                    yield Pair(text, changed, 1, f"reword:{name}", intent.domain, intent.category)
                    other = rng.choice([t for t in texts if t != text] or [text])
                    yield Pair(other, changed, 1, f"reword:{name}", intent.domain, intent.category)
                    made += 1
