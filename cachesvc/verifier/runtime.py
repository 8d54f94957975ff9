"""The configured verifier, built once: the learned one loads WordNet and the pair model in the background (well
under a second) before the semantic tier serves; the rule verifiers are ready at once."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cachesvc.config import CacheConfig
from cachesvc.embedding.encoders import Encode
from cachesvc.embedding.word_vectors import WordVectors
from cachesvc.policies.verify.judgement import Judgement, RuleJudge
from cachesvc.policies.verify.learned_verifier import LearnedVerifier
from cachesvc.policies.verify.pair_model import PairModel, load_pair_model
from cachesvc.policies.verify.verifier import RULE_VERIFIERS
from cachesvc.policies.verify.wordnet import WordNet, load_wordnet
from cachesvc.verifier.wordnet_data import default_wordnet_dir

log = logging.getLogger("cachesvc")
VERIFIER_NAMES = ("learned", *sorted(RULE_VERIFIERS))


@functools.lru_cache(maxsize=4)
def _shared_wordnet(folder: Path) -> WordNet:
    """One WordNet per folder and process (about 120 MB): read-only tables, shared by every app in the process."""
    return load_wordnet(folder)


@functools.lru_cache(maxsize=4)
def _shared_pair_model(path: Path | None) -> PairModel:
    return load_pair_model(path)


class VerifierRuntime:
    """``judge`` the candidates of one lookup (call it off the event loop); ``load`` first for the learned one."""

    def __init__(self, config: CacheConfig, encoder: Callable[[], Encode]) -> None:
        if config.verifier not in VERIFIER_NAMES:
            raise ValueError(f"cache.verifier: unknown verifier {config.verifier!r} (known: {list(VERIFIER_NAMES)})")
        self._config = config
        self._encoder = encoder  # the embedding model's encode, once the embedder has started
        self.name = config.verifier
        self._learned: LearnedVerifier | None = None
        self._rules = RuleJudge(RULE_VERIFIERS[config.verifier]().verify) if config.verifier in RULE_VERIFIERS else None
        self.word_vectors: WordVectors | None = None

    @property
    def ready(self) -> bool:
        return self._rules is not None or self._learned is not None

    def target_precision(self, category: str) -> float:
        own = self._config.category(category).target_precision
        return self._config.target_precision if own is None else own

    def load(self) -> None:
        """Load WordNet and the pair model (blocking: run it in a thread)."""
        if self.ready:
            return
        wordnet_dir = Path(self._config.wordnet_dir) if self._config.wordnet_dir else default_wordnet_dir()
        wordnet = _shared_wordnet(wordnet_dir.resolve())
        model = _shared_pair_model(Path(self._config.pair_model).resolve() if self._config.pair_model else None)
        self.word_vectors = WordVectors(lambda words: self._encoder()(list(words)))
        self._learned = LearnedVerifier(wordnet, model, self.word_vectors, target_precision=self.target_precision,
                                        min_target_precision=lambda c: self._config.category(c).min_target_precision)
        log.info("learned verifier ready: bars %s", {c: round(self.bar(c), 3) for c in self._config.categories})

    @property
    def learned(self) -> LearnedVerifier | None:
        return self._learned

    def judge(self, query: str, candidates: Sequence[tuple[str, float]], category: str,
              explain: bool = False, pressure: float = 0.0) -> list[Judgement]:
        if self._rules is not None:
            return self._rules.judge(query, candidates, category, explain, pressure)
        if self._learned is None:
            raise RuntimeError("the learned verifier is used before load()")
        return self._learned.judge(query, candidates, category, explain, pressure)

    def bar(self, category: str, pressure: float = 0.0) -> float:
        if self._learned is not None:
            return self._learned.bar(category, pressure)
        return 0.5

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verifier": self.name, "ready": self.ready}
        if self._learned is not None:
            out["bars"] = {c: round(self.bar(c), 4) for c in self._config.categories}
            out["target_precision"] = {c: self.target_precision(c) for c in self._config.categories}
            out["raised"] = self._learned.raised()
        if self.word_vectors is not None:
            out["word_vectors"] = {"cached": len(self.word_vectors), "embedded": self.word_vectors.embedded}
        return out
