"""What a verifier says about the candidates of one lookup: a probability that the cached answer serves the query,
and the bar it had to clear. Every verifier speaks this protocol, batched over the candidates of one lookup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Verdict:
    """Whether a cached answer may be served for a query, and if not, why (machine-readable)."""

    accepted: bool
    reason: str  # "" when accepted; else e.g. "number-mismatch", "negation", "low-confidence"


@dataclass(frozen=True)
class Judgement:
    """The verdict on one candidate, with what the explain endpoint shows."""

    probability: float
    bar: float
    rule: str = ""  # the near-miss rule that fired ("" when none did)
    evidence: Any = None  # PairEvidence when asked to explain
    features: dict[str, float] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.probability >= self.bar

    def verdict(self) -> Verdict:
        return Verdict(True, "") if self.accepted else Verdict(False, self.rule or "low-confidence")


class PairJudge(Protocol):
    def judge(self, query: str, candidates: Sequence[tuple[str, float]], category: str,
              explain: bool = False, pressure: float = 0.0) -> list[Judgement]:
        """One judgement per (cached question, similarity), in order; ``pressure`` (0..1) is the upstream's load."""
        ...

    def bar(self, category: str, pressure: float = 0.0) -> float:
        """The probability a candidate of ``category`` must reach to be served."""
        ...


@dataclass
class RuleJudge:
    """A yes/no verifier (near-miss rules, none) in the judge protocol: probability 1 when accepted, else 0."""

    verify: Callable[[str, str, float, str], Verdict]

    def judge(self, query: str, candidates: Sequence[tuple[str, float]], category: str,
              explain: bool = False, pressure: float = 0.0) -> list[Judgement]:
        out = []
        for cached, similarity in candidates:
            verdict = self.verify(query, cached, similarity, category)
            out.append(Judgement(1.0 if verdict.accepted else 0.0, 0.5, verdict.reason))
        return out

    def bar(self, category: str, pressure: float = 0.0) -> float:
        return 0.5
