"""Online precision: a sample of semantic hits is also asked upstream in the background, and the fresh answer is
compared with the one served (by the judge when configured, else by the embedding similarity of the two answers).

What it can see: whether served answers agree with what the upstream says now, per category, over the latest
checks. What it cannot: misses (a paraphrase that should have hit is invisible here), questions whose different
answers happen to read alike (short yes/no answers agree by accident), and upstream answers that vary from call to
call (sampling, time-dependent facts) count as disagreement. With a 1% sample a category needs thousands of hits
before its window says much; the estimate's error is about sqrt(p(1-p)/n).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cachesvc.config import CacheConfig
from cachesvc.metrics import Metrics
from cachesvc.openai import codec
from cachesvc.openai.answer import Answer
from cachesvc.openai.protocol import ENDPOINT_PATHS, Endpoint
from cachesvc.upstreams.upstream import Upstream
from cachesvc.verifier.judge import Judge
from cachesvc.verifier.runtime import VerifierRuntime

log = logging.getLogger("cachesvc")
MAX_COMPARED_CHARS = 4000  # answers are compared on their first this many characters (bounded embedding work)


@dataclass(frozen=True)
class HitSample:
    """What a background check needs from a served semantic hit (copied: the request is gone by then)."""

    endpoint: Endpoint
    body: dict[str, Any]
    headers: dict[str, str]
    upstream: Upstream
    question: str
    cached_question: str
    served: Answer
    category: str
    probability: float


class AgreementMonitor:
    def __init__(self, config: CacheConfig, metrics: Metrics, verifier: VerifierRuntime,
                 embed: Callable[[str], Awaitable[np.ndarray]], judge: Judge | None = None,
                 rng: random.Random | None = None) -> None:
        self._config = config
        self._agreement = config.agreement
        self._metrics = metrics
        self._verifier = verifier
        self._embed = embed
        self._judge = judge
        self._rng = rng or random.Random()
        self._windows: dict[str, deque[bool]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.dropped = 0  # sampled but not checked: too many checks already in flight
        self.failed = 0  # the fresh answer could not be had (upstream error): nothing recorded

    def sampled(self) -> bool:
        return self._agreement.sample_rate > 0 and self._rng.random() < self._agreement.sample_rate

    def check_later(self, sample: HitSample) -> bool:
        """Schedule the check of one sampled hit; False when too many are in flight (counted in ``dropped``)."""
        if len(self._pending) >= self._agreement.max_pending:
            self.dropped += 1
            return False
        task = asyncio.get_running_loop().create_task(self._check(sample))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def drain(self) -> None:
        """Wait for the checks in flight (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _check(self, sample: HitSample) -> None:
        try:
            fresh = await self._fresh_answer(sample)
        except Exception as exc:  # noqa: BLE001  (an upstream failure means no measurement, never a crash)
            self.failed += 1
            log.info("agreement check skipped: %s", exc)
            return
        if fresh is None:
            self.failed += 1
            return
        served_text, fresh_text = sample.served.text(), fresh.text()
        agreed: bool | None = None
        if self._judge is not None:
            agreed = await self._judge.same_answer(sample.question, served_text, fresh_text)
        if agreed is None:
            if served_text.strip() == fresh_text.strip():
                agreed = True
            else:
                a = await self._embed(served_text[:MAX_COMPARED_CHARS] or " ")
                b = await self._embed(fresh_text[:MAX_COMPARED_CHARS] or " ")
                agreed = float(np.dot(a, b)) >= self._agreement.answer_similarity
        self.record(sample.category, agreed)

    async def _fresh_answer(self, sample: HitSample) -> Answer | None:
        body = {k: v for k, v in sample.body.items() if k not in ("stream", "stream_options")}
        async with sample.upstream.request("POST", ENDPOINT_PATHS[sample.endpoint], data=codec.dumps(body),
                                           client_headers=sample.headers) as response:
            if response.status != 200:
                return None
            raw = await response.read()
        return Answer.from_response(sample.endpoint, codec.loads(raw))

    def record(self, category: str, agreed: bool) -> None:
        """One check's result: the window, the metric, and (with auto_tighten) the category's bar."""
        window = self._windows.setdefault(category, deque(maxlen=self._agreement.window))
        window.append(agreed)
        rate = sum(window) / len(window)
        self._metrics.record_agreement(category, agreed, rate)
        learned = self._verifier.learned
        if not self._config.auto_tighten or learned is None or len(window) < self._agreement.min_checks:
            return
        if rate < self._verifier.target_precision(category) and not agreed:
            raised = learned.raise_bar(category, self._agreement.tighten_step)
            log.warning("agreement in %s is %.3f, under its target %.3f: bar raised by %.3f to %.3f", category,
                        rate, self._verifier.target_precision(category), raised, learned.bar(category))

    def stats(self) -> dict[str, Any]:
        return {"sample_rate": self._agreement.sample_rate, "auto_tighten": self._config.auto_tighten,
                "in_flight": len(self._pending), "dropped": self.dropped, "failed": self.failed,
                "categories": {c: {"checks": len(w), "agreement": round(sum(w) / len(w), 4) if w else None,
                                   "target": self._verifier.target_precision(c)}
                               for c, w in self._windows.items()}}
