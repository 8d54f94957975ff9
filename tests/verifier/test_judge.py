"""The judge client against a loopback judge in the OpenAI wire format: verdicts, their cache, failures and the
latency budget, the background queue's bound, the key taken from the environment."""

from __future__ import annotations

import asyncio
import time

import pytest

from cachesvc.config import JudgeConfig
from cachesvc.verifier.judge import MAX_TEXT_CHARS, SELF_CHECK, Judge
from tests.verifier.fake_judge import FakeJudge, running


def same_when_both_mention_sink(message: str) -> str:
    return "Yes." if message.count("sink") >= 2 else "no"


async def make(url: str, **fields: object) -> Judge:
    """A judge client; its self-check is off unless asked for (these tests count the calls)."""
    judge = Judge(JudgeConfig(url=url, model="judge-1", **{"self_check": False, **fields}))  # type: ignore[arg-type]
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


async def test_a_judge_that_says_yes_to_look_alikes_is_never_trusted() -> None:
    fake = FakeJudge(lambda _: "yes", passes_self_check=False)  # what Qwen2.5-Coder-1.5B did on held-out pairs
    async with running(fake) as url:
        judge = await make(url, self_check=True)
        try:
            assert await judge.same_question("sink one", "sink two") is None
            assert await judge.same_answer("q", "a", "b") is None
            assert not judge.same_question_later("sink three", "sink four")
            assert judge.trusted is False and judge.stats()["self_check"].startswith("failed: said yes to")
            asked = len(fake.bodies)
            assert asked == 1  # it failed on the first look-alike pair and was not asked again
            await judge.same_question("sink five", "sink six")
            assert len(fake.bodies) == asked
        finally:
            await judge.close()


async def test_a_judge_that_passes_is_trusted_and_checked_once() -> None:
    fake = FakeJudge(same_when_both_mention_sink)
    async with running(fake) as url:
        judge = await make(url, self_check=True)
        try:
            assert await judge.same_question("How do I unclog a sink?", "sink blocked, what now") is True
            assert await judge.same_question("sink a", "tyre b") is False
            assert judge.trusted is True and judge.stats()["self_check"] == "passed"
            assert fake.self_checks == len(SELF_CHECK) and len(fake.bodies) == 2
        finally:
            await judge.close()


async def test_an_unreachable_judge_is_not_trusted_until_it_answers() -> None:
    judge = await make("http://127.0.0.1:9/v1", self_check=True)
    try:
        assert await judge.same_question("sink one", "sink two") is None
        assert judge.trusted is None and "asked again later" in judge.stats()["self_check"]
        calls = judge.calls
        assert await judge.same_question("sink one", "sink two") is None
        assert judge.calls == calls  # within the retry interval: not asked again
    finally:
        await judge.close()
