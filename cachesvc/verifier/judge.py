"""An LLM judge behind any OpenAI-compatible endpoint: "do these two questions have one answer?" and "do these two
answers say the same?", yes or no. Verdicts are cached; a failed or slow call is "no verdict", never a crash.

Cost: one chat completion of a few output tokens per borderline pair (a 1.5B model on 2 CPU cores: about 0.9 s;
an API model: its price per call). Inline mode spends at most ``timeout_s`` of a lookup on it; background mode none.

Self-check: before any verdict is used, the judge is asked a few built-in pairs (three look-alikes and one
paraphrase). A judge that gets one wrong is never trusted, and says so in its stats and the log: on held-out pairs
Qwen2.5-Coder-1.5B answered "yes" to every look-alike (benchmarks/bench_judge_pairs.py). A judge that cannot be
reached is asked again later, and is not trusted meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from typing import Any

import aiohttp

from cachesvc.config import JudgeConfig
from cachesvc.openai import codec

log = logging.getLogger("cachesvc")

MAX_TEXT_CHARS = 2000  # each question or answer shown to the judge is cut here: its cost stays bounded
MAX_RESPONSE_BYTES = 64 * 1024
SAME_QUESTION = ("You check a cache. Two user questions may share one cached answer only if a correct answer to "
                 "one is also a correct, complete answer to the other. Reply with one word: yes or no.")
# (question, other question, one answer serves both?): generic pairs, none from any evaluation or training set.
SELF_CHECK = (
    ("What is the capital of Portugal?", "What is the population of Portugal?", False),
    ("How do I convert kilometres to miles?", "How do I convert miles to kilometres?", False),
    ("What are the side effects of aspirin?", "What are the side effects of aspirin for children?", False),
    ("How can I reverse a list in Python?", "python: reverse a list", True),
)
SELF_CHECK_RETRY_S = 30.0
SAME_ANSWER = ("You compare two answers to the same question. Reply yes if they agree on everything that matters "
               "to the person asking, no if they differ in substance. Reply with one word: yes or no.")


class Judge:
    """Yes/no verdicts from a judge model; ``None`` when it could not say (error, timeout, anything but yes/no)."""

    def __init__(self, config: JudgeConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._verdicts: OrderedDict[tuple[str, str, str], bool] = OrderedDict()
        self._pending: set[asyncio.Task[Any]] = set()
        self.calls = 0
        self.failures = 0
        self.trusted: bool | None = None if config.self_check else True  # None: not (yet) known
        self.self_check_result = "not run" if config.self_check else "off"
        self._checked_at = -SELF_CHECK_RETRY_S

    @property
    def mode(self) -> str:
        return self._config.mode

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(self._config.timeout_s, 1.0) * 5)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self) -> bool | None:
        """Ask the self-check pairs (at most once per SELF_CHECK_RETRY_S while unknown); True/False once known."""
        if self.trusted is not None:
            return self.trusted
        now = asyncio.get_running_loop().time()
        if now - self._checked_at < SELF_CHECK_RETRY_S:
            return None
        self._checked_at = now
        for first, second, same in SELF_CHECK:
            verdict = await self._ask(SAME_QUESTION, _question_prompt(first, second))
            if verdict is None:
                self.self_check_result = "no verdict (judge unreachable or unparseable); asked again later"
                return None
            if verdict != same:
                self.trusted = False
                self.self_check_result = (f"failed: said {'yes' if verdict else 'no'} to {first!r} / {second!r}; "
                                          "its verdicts are not used")
                log.warning("judge %s %s", self._config.url, self.self_check_result)
                return False
        self.trusted = True
        self.self_check_result = "passed"
        return True

    def cached(self, query: str, cached_question: str) -> bool | None:
        if self.trusted is not True:
            return None
        return self._verdicts.get(("q", *_ordered(query, cached_question)))

    async def same_question(self, query: str, cached_question: str) -> bool | None:
        if await self.check() is not True:
            return None
        key = ("q", *_ordered(query, cached_question))
        if key in self._verdicts:
            self._verdicts.move_to_end(key)
            return self._verdicts[key]
        verdict = await self._ask(SAME_QUESTION, _question_prompt(query, cached_question))
        if verdict is not None:
            self._remember(key, verdict)
        return verdict

    async def same_answer(self, question: str, first: str, second: str) -> bool | None:
        if await self.check() is not True:
            return None
        return await self._ask(SAME_ANSWER, f"Question: {_cut(question)}\nAnswer 1: {_cut(first)}\n"
                               f"Answer 2: {_cut(second)}\nDo the answers agree?")

    def same_question_later(self, query: str, cached_question: str) -> bool:
        """Ask in the background (the verdict lands in the cache for the next such lookup); False when the queue
        is full and the pair is dropped."""
        if (len(self._pending) >= self._config.max_pending or self.trusted is False
                or self.cached(query, cached_question) is not None):
            return False
        task = asyncio.get_running_loop().create_task(self.same_question(query, cached_question))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def inline(self, query: str, cached_question: str) -> bool | None:
        """Ask within the latency budget; None when the judge is slower than ``timeout_s``."""
        try:
            return await asyncio.wait_for(self.same_question(query, cached_question), self._config.timeout_s)
        except TimeoutError:
            return None

    async def _ask(self, system: str, user: str) -> bool | None:
        if self._session is None:
            return None
        body = {"model": self._config.model, "temperature": 0, "max_tokens": 3,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self._config.api_key_env) if self._config.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.calls += 1
        try:
            async with self._session.post(self._config.url.rstrip("/") + "/chat/completions", data=codec.dumps(body),
                                          headers=headers, allow_redirects=False) as response:
                raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
                if response.status != 200 or len(raw) > MAX_RESPONSE_BYTES:
                    raise ValueError(f"status {response.status}")
            text = codec.loads(raw)["choices"][0]["message"]["content"]
            word = str(text).strip().lower().lstrip("\"'*").split()[0].strip(".,!*\"'") if str(text).strip() else ""
        except Exception as exc:  # noqa: BLE001  (any failure of the judge is "no verdict", logged once per call)
            self.failures += 1
            log.warning("judge %s gave no verdict: %s", self._config.url, type(exc).__name__)
            return None
        if word in ("yes", "no"):
            return word == "yes"
        self.failures += 1
        return None

    def _remember(self, key: tuple[str, str, str], verdict: bool) -> None:
        self._verdicts[key] = verdict
        while len(self._verdicts) > self._config.verdicts_cached:
            self._verdicts.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        return {"url": self._config.url, "mode": self._config.mode, "self_check": self.self_check_result,
                "trusted": self.trusted, "calls": self.calls, "failures": self.failures,
                "verdicts_cached": len(self._verdicts), "pending": len(self._pending)}


def _question_prompt(query: str, cached_question: str) -> str:
    return f"Question 1: {_cut(query)}\nQuestion 2: {_cut(cached_question)}\nDoes one answer serve both?"


def _ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " ..."
