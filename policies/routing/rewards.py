"""Automatic rewards for pools whose clients send no feedback (``reward:`` in a pool's config). Each maps what the
proxy saw of an answer to a reward in [0, 1]; explicit ``POST /v1/feedback`` is the better signal where clients
can give it. Registered by name; ``none`` gives no automatic reward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerSeen:
    """What the proxy knows of an answer when it completes."""

    text: str
    finish_reason: str | None
    upstream_s: float  # time to the upstream's response headers (for a stream, about its time to first token)


RewardFunction = Callable[[AnswerSeen], float]


def finished(answer: AnswerSeen) -> float:
    """1 for a non-empty answer that stopped by itself, 0.5 for one cut at its token limit, 0 for an empty one."""
    if not answer.text.strip():
        return 0.0
    return 1.0 if answer.finish_reason in ("stop", "eos", None) else 0.5


REWARDS: dict[str, RewardFunction | None] = {"none": None, "finished": finished}
