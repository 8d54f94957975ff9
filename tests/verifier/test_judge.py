"""The judge client against a loopback judge in the OpenAI wire format: verdicts, their cache, failures and the
latency budget, the background queue's bound, the key taken from the environment."""

from __future__ import annotations

import asyncio
import time

import pytest

from cachesvc.config import JudgeConfig
from cachesvc.verifier.judge import MAX_TEXT_CHARS, Judge
from tests.verifier.fake_judge import FakeJudge, running


def same_when_both_mention_sink(message: str) -> str:
    return "Yes." if message.count("sink") >= 2 else "no"


async def make(url: str, **fields: object) -> Judge:
    judge = Judge(JudgeConfig(url=url, model="judge-1", **fields))  # type: ignore[arg-type]
    await judge.open()
    return judge


async def test_verdicts_are_parsed_and_cached() -> None:
    fake = FakeJudge(same_when_both_mention_sink)
    async with running(fake) as url:
        judge = await make(url)
        try:
            assert await judge.same_question("How do I unclog a sink?", "sink blocked, what now") is True
            assert await judge.same_question("How do I unclog a sink?", "how do I fix a flat tyre") is False
            assert await judge.same_question("sink blocked, what now", "How do I unclog a sink?") is True
            assert len(fake.bodies) == 2  # the third is the first pair reversed: from the cache
            assert judge.cached("How do I unclog a sink?", "sink blocked, what now") is True
            body = fake.bodies[0]
            assert body["model"] == "judge-1" and body["temperature"] == 0 and body["max_tokens"] <= 5
        finally:
            await judge.close()


@pytest.mark.parametrize("reply", ["maybe", "", "I think so"])
async def test_anything_but_yes_or_no_is_no_verdict(reply: str) -> None:
    async with running(FakeJudge(lambda _: reply)) as url:
        judge = await make(url)
        try:
            assert await judge.same_question("a", "b") is None
            assert judge.cached("a", "b") is None and judge.failures == 1
        finally:
            await judge.close()


async def test_a_failing_judge_is_no_verdict() -> None:
    async with running(FakeJudge(lambda _: "yes", status=500)) as url:
        judge = await make(url)
        try:
            assert await judge.same_question("a", "b") is None
        finally:
            await judge.close()
    judge = await make("http://127.0.0.1:9/v1")  # nothing listens on the discard port
    try:
        assert await judge.same_question("a", "b") is None
    finally:
        await judge.close()


async def test_inline_verdicts_respect_the_latency_budget() -> None:
    async with running(FakeJudge(lambda _: "yes", delay_s=1.0)) as url:
        judge = await make(url, mode="inline", timeout_s=0.1)
        try:
            started = time.perf_counter()
            assert await judge.inline("a", "b") is None
            assert time.perf_counter() - started < 0.5
        finally:
            await judge.close()


async def test_background_queue_is_bounded_and_fills_the_cache() -> None:
    async with running(FakeJudge(same_when_both_mention_sink, delay_s=0.05)) as url:
        judge = await make(url, max_pending=2)
        try:
            assert judge.same_question_later("sink one", "sink two")
            assert judge.same_question_later("sink three", "sink four")
            assert not judge.same_question_later("sink five", "sink six")  # full: dropped, not queued
            for _ in range(100):
                if judge.cached("sink one", "sink two") is not None and judge.cached("sink three", "sink four"):
                    break
                await asyncio.sleep(0.02)
            assert judge.cached("sink one", "sink two") is True
            assert judge.cached("sink five", "sink six") is None
        finally:
            await judge.close()


async def test_texts_are_cut_and_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "sk-judge")
    fake = FakeJudge(lambda _: "no")
    async with running(fake) as url:
        judge = await make(url, api_key_env="JUDGE_KEY_FOR_TEST")
        try:
            await judge.same_question("x" * 50_000, "y")
            assert len(fake.bodies[0]["messages"][-1]["content"]) < MAX_TEXT_CHARS + 200
            assert fake.headers[0]["Authorization"] == "Bearer sk-judge"
        finally:
            await judge.close()
