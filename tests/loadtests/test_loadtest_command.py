"""`cachesvc loadtest` end to end, headless, through real locust processes: against the stand-in upstream, our
proxy in front of it (both loop modes, with ground truth), and the reference model server."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cachesvc.cli import main
from tests.conftest import proxy_config, start_proxy, start_stub


async def loadtest(*args: str) -> int:
    return await asyncio.to_thread(main, ["loadtest", *args])


def summary(report: Path) -> dict[str, Any]:
    return json.loads((report / "summary.json").read_text())


def table(document: dict[str, Any], title: str) -> dict[str, list[Any]]:
    """A report table as {first column: row}."""
    found = next(t for t in document["tables"] if t["title"].startswith(title))
    return {str(row[0]): row for row in found["rows"]}


async def test_closed_loop_against_the_stand_in(tmp_path: Path) -> None:
    stub = await start_stub(latency_ms=20)
    try:
        code = await loadtest("--target", stub.url, "--users", "4", "--requests", "40", "--duration", "30",
                              "--report", str(tmp_path), "--slo", "e2e:5000")
    finally:
        await stub.server.close()
    assert code == 0
    assert stub.stats.completions == 40
    document = summary(tmp_path)
    throughput = next(t for t in document["tables"] if t["title"] == "Throughput")
    assert throughput["rows"][0][1:3] == [40, 40]
    workload = table(document, "Workload")
    assert sum(row[1] for row in workload.values()) == 40 and sum(row[4] for row in workload.values()) > 0
    assert (tmp_path / "report.html").read_text().count("<svg") >= 4
    with (tmp_path / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and {r["status"] for r in rows} == {"200"}
    streamed = [r for r in rows if r["stream"] == "true"]
    assert streamed and all(float(r["ttft_s"]) > 0.015 for r in streamed)
    assert "cachesvc loadtest" in document["command"]


async def test_open_loop_through_the_proxy_reports_hits_and_their_accuracy(
        tmp_path: Path, encode: Callable[[list[str]], np.ndarray]) -> None:
    stub = await start_stub(latency_ms=30)
    # no online agreement checks: a sampled hit (1% by default) would ask the upstream once more in the background
    proxy = await start_proxy(proxy_config(stub.url, **{"cache.agreement.sample_rate": 0.0}), encode)
    try:
        code = await loadtest("--target", proxy.base_url, "--rate", "40", "--requests", "120", "--duration", "20",
                              "--report", str(tmp_path), "--model", "stub-model", "--tenants", "2")
    finally:
        await proxy.server.close()
        await stub.server.close()
    assert code == 0
    document = summary(tmp_path)
    outcomes = table(document, "Cache outcomes")
    assert sum(row[1] for name, row in outcomes.items() if name.startswith("hit")) > 10, outcomes
    accuracy = table(document, "Cache accuracy")["all"]
    requests, possible, hits, right, wrong = accuracy[1:6]
    assert requests == 120 and possible > 0 and hits == right + wrong + accuracy[6]
    assert right > wrong, accuracy
    assert stub.stats.completions == 120 - hits
    latency = table(document, "Latency")
    assert latency["wait before sending (open loop)"][5] < 100  # p99 wait in ms: arrivals left on time
    assert "Break-even hit rate" in [t["title"] for t in document["tables"]]


async def test_a_rate_sweep_stops_at_saturation(tmp_path: Path) -> None:
    # The stand-in answers 429 past 2 in flight, each in 0.2 s: about 10 requests/s at most.
    stub = await start_stub(latency_ms=200, max_concurrency=2)
    try:
        code = await loadtest("--target", stub.url, "--rate", "2,40,80", "--requests", "60", "--duration", "3",
                              "--report", str(tmp_path))
    finally:
        await stub.server.close()
    assert code == 0
    sweep = table(summary(tmp_path), "Sweep")
    assert list(sweep) == ["2/s", "40/s"], sweep  # 40/s saturates; 80/s is never run
    assert "errors" in sweep["40/s"][-1] or "offered" in sweep["40/s"][-1]
    assert (tmp_path / "stages" / "40-s" / "report.html").exists()


@pytest.mark.parametrize("flags, message", [
    (["--users", "0"], "positive"),
    (["--workers", "1000"], "1..64"),
    (["--rate", "fast"], "comma list"),
    (["--slo", "speed:3"], "objective"),
    (["--dual-fraction", "2"], "0..1"),
])
async def test_bad_flags_exit_2_naming_the_problem(flags: list[str], message: str, capsys: Any) -> None:
    code = await loadtest("--target", "http://127.0.0.1:9/v1", "--model", "m", *flags)
    assert code == 2
    assert message in capsys.readouterr().err


async def test_against_the_reference_model_server(tmp_path: Path, smollm2: Any) -> None:
    from tests.model_server.test_api import start_server

    server = await start_server(smollm2)
    try:
        url = f"http://127.0.0.1:{server.port}/v1"
        code = await loadtest("--target", url, "--users", "2", "--requests", "6", "--max-tokens", "4",
                              "--duration", "60", "--report", str(tmp_path), "--timeout", "60")
    finally:
        await server.close()
    assert code == 0
    document = summary(tmp_path)
    assert next(t for t in document["tables"] if t["title"] == "Throughput")["rows"][0][2] == 6
    latency = table(document, "Latency")
    assert latency["end-to-end latency"][1] == 6


async def test_dual_send_compares_hits_with_the_upstreams_fresh_answers(
        tmp_path: Path, encode: Callable[[list[str]], np.ndarray]) -> None:
    from cachesvc.upstreams.stub import StubBehaviour

    stub = await start_stub(behaviour=StubBehaviour(stamp_calls=True, latency_ms=10))
    proxy = await start_proxy(proxy_config(stub.url), encode)
    try:
        code = await loadtest("--target", proxy.base_url, "--users", "2", "--requests", "40", "--duration", "30",
                              "--report", str(tmp_path), "--model", "stub-model", "--dual-send", stub.url,
                              "--dual-fraction", "1")
    finally:
        await proxy.server.close()
        await stub.server.close()
    assert code == 0
    dual = table(summary(tmp_path), "Dual-send")
    hits, misses = dual["hit"], dual["miss"]
    assert hits[1] > 0 and misses[1] > 0
    assert misses[2] == 1.0  # a miss is the upstream's own answer to the same prompt (its stamp aside)
    assert misses[3] == pytest.approx(1.0, abs=1e-6)
    # An exact hit is the same prompt's answer; a semantic hit answered another paraphrase, so it may differ.
    assert 0.0 <= hits[2] <= 1.0 and hits[3] > 0.5
    assert stub.stats.completions == 40 + 40 - hits[1]  # every request sent twice, less the proxy's hits


async def test_distributed_workers_share_the_stream(tmp_path: Path) -> None:
    stub = await start_stub(latency_ms=10)
    try:
        code = await loadtest("--target", stub.url, "--users", "4", "--requests", "30", "--duration", "30",
                              "--report", str(tmp_path), "--workers", "2")
    finally:
        await stub.server.close()
    assert code == 0
    with (tmp_path / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["id"] for r in rows) == sorted({r["id"] for r in rows}) and len(rows) == 30
    assert {r["worker"] for r in rows} == {"0", "1"}
    assert stub.stats.completions == 30


async def test_open_loop_through_the_proxy_with_its_embedded_model_server(
        tmp_path: Path, smollm2: Any, encode: Callable[[list[str]], np.ndarray]) -> None:
    from cachesvc.config import config_from_dict

    proxy = await start_proxy(config_from_dict({}), encode, model=smollm2)
    engine = proxy.services.model_engine
    for _ in range(600):  # bounded: 30 s
        if engine.status != "loading":
            break
        await asyncio.sleep(0.05)
    try:
        code = await loadtest("--target", proxy.base_url, "--rate", "2", "--requests", "8", "--max-tokens", "4",
                              "--duration", "60", "--report", str(tmp_path), "--timeout", "60")
    finally:
        await proxy.server.close()
    assert code == 0
    document = summary(tmp_path)
    assert next(t for t in document["tables"] if t["title"] == "Throughput")["rows"][0][1:3] == [8, 8]
    outcomes = table(document, "Cache outcomes")
    assert sum(row[1] for row in outcomes.values()) == 8 and "miss" in outcomes


async def test_several_models_are_mixed_by_weight(tmp_path: Path) -> None:
    stub = await start_stub()
    try:
        code = await loadtest("--target", stub.url, "--users", "2", "--requests", "60", "--duration", "30",
                              "--report", str(tmp_path), "--model", "stub-model:3,other-model:1")
    finally:
        await stub.server.close()
    assert code == 0
    models = [body["model"] for body in stub.stats.requests]
    assert len(models) == 60 and 30 < models.count("stub-model") < 57 and models.count("other-model") > 3


async def test_a_reused_report_folder_counts_only_the_new_run(tmp_path: Path) -> None:
    stub = await start_stub(latency_ms=5)
    try:
        for _ in range(2):
            code = await loadtest("--target", stub.url, "--users", "2", "--requests", "20", "--duration", "30",
                                  "--report", str(tmp_path))
            assert code == 0
    finally:
        await stub.server.close()
    assert stub.stats.completions == 40
    throughput = next(t for t in summary(tmp_path)["tables"] if t["title"] == "Throughput")
    assert throughput["rows"][0][1:3] == [20, 20]


async def test_api_keys_reach_the_target_but_no_file(tmp_path: Path) -> None:
    stub = await start_stub(latency_ms=5)
    try:
        code = await loadtest("--target", stub.url, "--users", "2", "--requests", "6", "--duration", "30",
                              "--report", str(tmp_path), "--api-key", "sk-very-secret-1", "--workload", "replay:"
                              + str(write_replay(tmp_path / "replay.jsonl")), "--dual-send", stub.url,
                              "--dual-api-key=sk-very-secret-2", "--dual-fraction", "1")
    finally:
        await stub.server.close()
    assert code == 0
    sent = {h.get("Authorization") or h.get("authorization") for h in stub.stats.headers}
    assert sent == {"Bearer sk-very-secret-1", "Bearer sk-very-secret-2"}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "sk-very-secret" not in text, path


def write_replay(path: Path) -> Path:
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "a question"}], "max_tokens": 4}
    path.write_text("".join(json.dumps({"body": body}) + "\n" for _ in range(6)))
    return path
