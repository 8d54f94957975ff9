"""Open loop through real locust processes against a slow stand-in upstream: arrivals leave on time whatever the
server does, and when the in-flight cap holds a request back, its wait is recorded and counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp.test_utils import TestServer

from cachesvc.loadtests.locust_process import Stage, run_stage
from cachesvc.loadtests.metrics import summarise
from cachesvc.upstreams.stub import create_stub_app

UPSTREAM_S = 0.5


def planned(path: Path, count: int) -> Path:
    with path.open("w") as f:
        for i in range(count):
            body = {"model": "stub-model", "messages": [{"role": "user", "content": f"question {i}"}],
                    "stream": i % 2 == 0, "max_tokens": 8}
            f.write(json.dumps({"id": f"r{i}", "body": body, "headers": {}, "truth": None}) + "\n")
    return path


async def run(tmp_path: Path, *, rate: float, count: int, max_inflight: int, name: str) -> list[dict]:
    stub = TestServer(create_stub_app(latency_ms=UPSTREAM_S * 1000), host="127.0.0.1")
    await stub.start_server()
    try:
        settings = {"target": f"http://127.0.0.1:{stub.port}/v1", "timeout_s": 10, "seed": 0,
                    "max_inflight": max_inflight, "requests_file": str(planned(tmp_path / f"{name}.jsonl", count))}
        stage = Stage(name, arrivals={"rate": rate, "process": "constant", "count": count}, duration_s=10)
        return await asyncio.to_thread(run_stage, stage, settings, tmp_path / name, planned=count, progress=None)
    finally:
        await stub.close()


async def test_arrivals_leave_on_time_under_a_slow_upstream(tmp_path: Path) -> None:
    # 20 requests at 20/s against an upstream that takes 0.5 s each: a closed loop of one user would need 10 s.
    records = await run(tmp_path, rate=20, count=20, max_inflight=64, name="on-time")
    assert len(records) == 20 and all(r["status"] == 200 for r in records)
    lateness = [r["sent_at"] - r["scheduled_at"] for r in records]
    assert max(lateness) < 0.1, lateness
    due = sorted(r["scheduled_at"] for r in records)
    assert [round(b - a, 2) for a, b in zip(due, due[1:])] == [0.05] * 19
    assert all(r["latency_s"] >= UPSTREAM_S * 0.9 for r in records)
    assert max(r["sent_at"] for r in records) - min(r["sent_at"] for r in records) < 1.5


async def test_a_request_held_back_by_the_cap_counts_its_wait(tmp_path: Path) -> None:
    # Two in flight at most, 8 arrivals 0.1 s apart, 0.5 s each: the queue grows, so late sends wait longer.
    records = await run(tmp_path, rate=10, count=8, max_inflight=2, name="capped")
    waits = [r["sent_at"] - r["scheduled_at"] for r in sorted(records, key=lambda r: r["scheduled_at"])]
    # Request i is due at 0.1 i and can leave only when a slot frees, at 0.5 (i // 2): r7 waits 1.5 - 0.7 = 0.8 s.
    expected = [max(0.0, UPSTREAM_S * (i // 2) - 0.1 * i) for i in range(8)]
    assert all(w >= e - 0.05 for w, e in zip(waits, expected)), (waits, expected)
    assert waits[0] < 0.1 and waits[-1] > 0.75, waits
    summary = summarise(records)
    assert summary.latency["wait_s"]["p99"] > 0.75
    # Latency is counted from the due time: the last request's includes its wait.
    assert summary.latency["latency_s"]["p99"] > UPSTREAM_S + 0.75
