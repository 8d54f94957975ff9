"""The stand-in upstream's load-test behaviour: seeded latency draws, token pacing, injected errors, overload 429s,
answer length, and the `stub-upstream` flags that set them. Real HTTP over loopback; timings with generous bounds."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cachesvc import cli
from cachesvc.openai import codec
from cachesvc.upstreams.stub import (
    MAX_ANSWER_TOKENS,
    STUB_BEHAVIOUR,
    StubBehaviour,
    StubOptionError,
    create_stub_app,
    error_sampler,
    latency_sampler,
)
from tests.conftest import Stub, start_stub


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def serve(behaviour: StubBehaviour) -> Stub:
    return await start_stub(behaviour=behaviour)


def chat(question: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": "stub-model", "messages": [{"role": "user", "content": question}], **extra}


async def stream_events(http: aiohttp.ClientSession, stub: Stub, body: dict[str, Any]) -> list[tuple[float, Any]]:
    """Each SSE event as (arrival time, parsed JSON or "[DONE]")."""
    events: list[tuple[float, Any]] = []
    async with http.post(f"{stub.url}/chat/completions", json={**body, "stream": True}) as response:
        assert response.status == 200
        async for line in response.content:
            text = line.decode().strip()
            if text.startswith("data: "):
                data = text[len("data: "):]
                events.append((time.monotonic(), data if data == "[DONE]" else codec.loads(data)))
    return events


def content_of(events: list[tuple[float, Any]]) -> list[tuple[float, str]]:
    return [(t, e["choices"][0]["delta"]["content"]) for t, e in events
            if e != "[DONE]" and e["choices"] and e["choices"][0]["delta"].get("content")]


# ---- latency distributions: the sampler itself, no timing ----------------------------------------------------

def test_fixed_latency_is_the_latency() -> None:
    draw = latency_sampler(StubBehaviour(latency_ms=35))
    assert {draw() for _ in range(50)} == {35}


def test_normal_latency_has_its_mean_and_sd_and_is_reproducible() -> None:
    behaviour = StubBehaviour(latency="normal", latency_ms=100, latency_sd_ms=20, seed=7)
    draw = latency_sampler(behaviour)
    sample = [draw() for _ in range(200)]
    assert 92 <= statistics.fmean(sample) <= 108  # standard error ~1.4 ms
    assert 15 <= statistics.stdev(sample) <= 25
    again = latency_sampler(behaviour)
    assert [again() for _ in range(200)] == sample
    other = latency_sampler(StubBehaviour(latency="normal", latency_ms=100, latency_sd_ms=20, seed=8))
    assert [other() for _ in range(200)] != sample


def test_normal_latency_is_never_below_zero() -> None:
    draw = latency_sampler(StubBehaviour(latency="normal", latency_ms=5, latency_sd_ms=50, seed=1))
    sample = [draw() for _ in range(200)]
    assert min(sample) == 0 and max(sample) > 20


def test_lognormal_latency_is_parameterised_by_its_mean_and_sd() -> None:
    draw = latency_sampler(StubBehaviour(latency="lognormal", latency_ms=100, latency_sd_ms=50, seed=3))
    sample = [draw() for _ in range(200)]
    assert min(sample) > 0
    assert 85 <= statistics.fmean(sample) <= 115  # standard error ~3.5 ms
    assert 30 <= statistics.stdev(sample) <= 75
    assert statistics.median(sample) < statistics.fmean(sample)  # skewed right: the median is below the mean


# ---- the behaviour over HTTP ---------------------------------------------------------------------------------

async def test_latency_delays_the_answer_and_the_header_still_overrides(http: aiohttp.ClientSession) -> None:
    stub = await serve(StubBehaviour(latency="normal", latency_ms=500, latency_sd_ms=10))
    try:
        start = time.monotonic()
        async with http.post(f"{stub.url}/chat/completions", json=chat()) as response:
            assert response.status == 200
        assert time.monotonic() - start >= 0.4
        start = time.monotonic()
        async with http.post(f"{stub.url}/chat/completions", json=chat(),
                             headers={"x-stub-latency-ms": "0"}) as response:
            assert response.status == 200
        assert time.monotonic() - start < 0.35  # generous: the ~500 ms draw was overridden
    finally:
        await stub.server.close()


async def test_stream_pieces_are_spaced_at_the_token_rate(http: aiohttp.ClientSession) -> None:
    stub = await serve(StubBehaviour(tokens_per_s=20, answer_tokens=5))
    try:
        events = await stream_events(http, stub, chat(stream_options={"include_usage": True}))
        pieces = content_of(events)
        assert len(pieces) == 5
        gaps = [b[0] - a[0] for a, b in zip(pieces, pieces[1:])]
        assert all(gap >= 0.035 for gap in gaps), gaps  # 50 ms apart, with slack for the loop
        assert 0.19 <= pieces[-1][0] - pieces[0][0] < 2.0  # four intervals
        assert events[-1][1] == "[DONE]"
        assert events[-2][1]["usage"]["completion_tokens"] == 5
    finally:
        await stub.server.close()


async def test_non_streamed_answer_takes_its_pieces_at_the_token_rate(http: aiohttp.ClientSession) -> None:
    stub = await serve(StubBehaviour(tokens_per_s=50, answer_tokens=10))
    try:
        start = time.monotonic()
        async with http.post(f"{stub.url}/chat/completions", json=chat()) as response:
            body = await response.json()
        assert time.monotonic() - start >= 0.15  # 10 pieces at 50/s: 200 ms
        assert body["usage"]["completion_tokens"] == 10
        assert len(body["choices"][0]["message"]["content"].split()) == 10
    finally:
        await stub.server.close()


async def test_answer_tokens_make_answers_that_many_pieces_tied_to_the_prompt(http: aiohttp.ClientSession) -> None:
    stub = await serve(StubBehaviour(answer_tokens=300))
    try:
        events = await stream_events(http, stub, chat("Why is the sky blue?"))
        pieces = [p for _, p in content_of(events)]
        assert len(pieces) == 300
        async with http.post(f"{stub.url}/chat/completions", json=chat("Why is the sky blue?")) as response:
            body = await response.json()
        assert body["choices"][0]["message"]["content"] == "".join(pieces)
        assert "Why is the sky blue?" in body["choices"][0]["message"]["content"]
        assert body["usage"]["completion_tokens"] == 300
    finally:
        await stub.server.close()


async def test_usage_counts_the_pieces_a_default_stream_sends(http: aiohttp.ClientSession, stub: Stub) -> None:
    events = await stream_events(http, stub, chat(stream_options={"include_usage": True}))
    assert events[-2][1]["usage"]["completion_tokens"] == len(content_of(events))


async def test_max_tokens_by_default_keeps_the_legacy_word_cut(http: aiohttp.ClientSession, stub: Stub) -> None:
    async with http.post(f"{stub.url}/chat/completions", json=chat(max_tokens=3)) as response:
        body = await response.json()
    assert body["choices"][0]["message"]["content"] == "Stub answer to:"
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_strict_max_tokens_caps_pieces_and_finishes_length(http: aiohttp.ClientSession) -> None:
    stub = await serve(StubBehaviour(answer_tokens=20, strict_max_tokens=True))
    try:
        events = await stream_events(http, stub, chat(max_tokens=4, stream_options={"include_usage": True}))
        assert len(content_of(events)) == 4
        finishes = [e["choices"][0]["finish_reason"] for _, e in events if e != "[DONE]" and e["choices"]]
        assert finishes[-1] == "length"
        assert events[-2][1]["usage"]["completion_tokens"] == 4
        async with http.post(f"{stub.url}/chat/completions", json=chat(max_tokens=50)) as response:
            body = await response.json()
        assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] == 20
        async with http.post(f"{stub.url}/completions",
                             json={"model": "stub-model", "prompt": "Hi", "max_tokens": 2}) as response:
            body = await response.json()
        assert body["choices"][0]["finish_reason"] == "length" and len(body["choices"][0]["text"].split()) == 2
    finally:
        await stub.server.close()


def test_error_draws_have_the_error_rate_and_are_reproducible() -> None:
    behaviour = StubBehaviour(error_rate=0.2, seed=11)
    draw = error_sampler(behaviour)
    draws = [draw() for _ in range(2000)]
    failed = [d for d in draws if d is not None]
    assert 0.17 <= len(failed) / len(draws) <= 0.23
    assert set(failed) == {500, 503}
    again = error_sampler(behaviour)
    assert [again() for _ in range(2000)] == draws
    assert {error_sampler(StubBehaviour(error_rate=0.0))() for _ in range(100)} == {None}
    assert None not in {error_sampler(StubBehaviour(error_rate=1.0))() for _ in range(100)}


async def test_injected_errors_answer_in_the_openai_error_shape(http: aiohttp.ClientSession, stub: Stub) -> None:
    forced = {}  # what x-stub-fail answers, for comparison
    for status in (500, 503):
        async with http.post(f"{stub.url}/chat/completions", json=chat(),
                             headers={"x-stub-fail": str(status)}) as response:
            forced[status] = await response.json()
    flaky = await serve(StubBehaviour(error_rate=0.5, seed=5))
    try:
        expected = error_sampler(StubBehaviour(error_rate=0.5, seed=5))
        statuses = []
        for _ in range(20):
            async with http.post(f"{flaky.url}/chat/completions", json=chat()) as response:
                body = await response.json()
            statuses.append(response.status)
            if response.status != 200:
                assert set(body) == {"error"}
                assert {**body["error"], "message": ""} == {**forced[response.status]["error"], "message": ""}
                assert str(response.status) in body["error"]["message"]
        assert statuses == [draw or 200 for draw in (expected() for _ in range(20))]
        assert 500 in statuses or 503 in statuses
        assert flaky.stats.injected_errors == sum(s != 200 for s in statuses)
    finally:
        await flaky.server.close()


async def test_overload_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    stub = await serve(StubBehaviour(latency_ms=1000, max_concurrency=2))  # long: all five arrive meanwhile
    try:
        async def ask() -> tuple[int, dict[str, Any], Any]:
            async with http.post(f"{stub.url}/chat/completions", json=chat()) as response:
                return response.status, await response.json(), response.headers

        answers = await asyncio.gather(*(ask() for _ in range(5)))
        assert sorted(status for status, _, _ in answers) == [200, 200, 429, 429, 429]
        for status, body, headers in answers:
            if status == 429:
                assert headers["retry-after"] == "1"
                assert body["error"]["code"] == "rate_limit_exceeded"
                assert set(body["error"]) == {"message", "type", "param", "code"}
        assert stub.stats.overloaded == 3 and stub.stats.peak_inflight == 2
    finally:
        await stub.server.close()


# ---- options and flags ---------------------------------------------------------------------------------------

def test_old_keywords_still_work_and_win_over_the_behaviour() -> None:
    app = create_stub_app(latency_ms=5, max_concurrency=3, chunk_delay_ms=1)
    assert app[STUB_BEHAVIOUR] == StubBehaviour(latency_ms=5, max_concurrency=3, chunk_delay_ms=1)
    app = create_stub_app(latency_ms=7, behaviour=StubBehaviour(latency="normal", latency_ms=50, latency_sd_ms=5))
    assert app[STUB_BEHAVIOUR].latency_ms == 7 and app[STUB_BEHAVIOUR].latency == "normal"


@pytest.mark.parametrize(("options", "option"), [
    ({"latency": "uniform"}, "latency"),
    ({"latency_ms": -1}, "latency_ms"),
    ({"latency_ms": float("nan")}, "latency_ms"),
    ({"latency_sd_ms": 5}, "latency_sd_ms"),  # fixed has no spread
    ({"latency": "lognormal", "latency_ms": 0, "latency_sd_ms": 5}, "latency_ms"),
    ({"tokens_per_s": -1}, "tokens_per_s"),
    ({"tokens_per_s": 0.001}, "tokens_per_s"),
    ({"error_rate": 1.5}, "error_rate"),
    ({"max_concurrency": -1}, "max_concurrency"),
    ({"answer_tokens": MAX_ANSWER_TOKENS + 1}, "answer_tokens"),
])
def test_options_out_of_range_are_refused_by_name(options: dict[str, Any], option: str) -> None:
    with pytest.raises(StubOptionError) as caught:
        StubBehaviour(**options)
    assert caught.value.option == option and str(caught.value).startswith(option)


@pytest.mark.parametrize(("argv", "flag"), [
    (["--error-rate", "2"], "--error-rate"),
    (["--answer-tokens", "100001"], "--answer-tokens"),
    (["--tokens-per-s", "-5"], "--tokens-per-s"),
    (["--latency-sd-ms", "10"], "--latency-sd-ms"),
    (["--latency", "lognormal", "--latency-ms", "0", "--latency-sd-ms", "10"], "--latency-ms"),
    (["--max-concurrency", "-1"], "--max-concurrency"),
])
def test_stub_flags_out_of_range_are_usage_errors_naming_the_flag(
        argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stub-upstream", *argv]) == 2
    assert capsys.readouterr().err.startswith(f"cachesvc stub-upstream: {flag} ")


def test_stub_flags_reach_the_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[web.Application] = []
    monkeypatch.setattr(web, "run_app", lambda app, **kwargs: started.append(app))
    assert cli.main(["stub-upstream", "--latency", "lognormal", "--latency-ms", "80", "--latency-sd-ms", "30",
                     "--tokens-per-s", "40", "--error-rate", "0.1", "--max-concurrency", "8",
                     "--answer-tokens", "256", "--strict-max-tokens", "--seed", "42"]) == 0
    assert started[0][STUB_BEHAVIOUR] == StubBehaviour(
        latency="lognormal", latency_ms=80, latency_sd_ms=30, tokens_per_s=40, error_rate=0.1, max_concurrency=8,
        answer_tokens=256, strict_max_tokens=True, seed=42)
    with pytest.raises(SystemExit):
        cli.main(["stub-upstream", "--latency", "uniform"])  # argparse's choices name the flag too


async def test_stamped_answers_count_the_upstreams_calls() -> None:
    stub = await start_stub(behaviour=StubBehaviour(stamp_calls=True))
    server = stub.server
    try:
        texts = []
        async with aiohttp.ClientSession() as http:
            for stream in (False, True, False):
                body = {"model": "stub-model", "messages": [{"role": "user", "content": "same question"}],
                        "stream": stream}
                async with http.post(f"http://127.0.0.1:{server.port}/v1/chat/completions", json=body) as r:
                    raw = await r.text()
                texts.append(raw)
        assert "[upstream call 1]" in texts[0] and "upstream call 3]" in texts[2]
        events = [codec.loads(line[6:]) for line in texts[1].splitlines()
                  if line.startswith("data: {")]
        streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        assert streamed.endswith("[upstream call 2]")
        assert stub.stats.stamped == 3
    finally:
        await server.close()
