"""SIGTERM on a real `cachesvc serve` process: new connections are refused at once, requests in flight (plain and
streamed) finish with their full body, the store is flushed (an answer stored by an in-flight request is a hit after
a restart on the same SQLite file), the process exits 0; a request past server.drain_timeout_s is cut and the exit
still comes within the bound. Real subprocesses on free loopback ports, bounded waits, killed in `finally`."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import free_port

STUB_LATENCY_MS = 1500
START_TIMEOUT_S = 90.0  # the embedding model loads in a few seconds; a first run also exports it to ONNX
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    with open(log, "ab") as out:
        popen = subprocess.Popen([sys.executable, "-m", "cachesvc", *args], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env or ENV)
    return Process(popen, log)


def get(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def wait_healthy(process: Process, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.popen.poll() is None, f"exited {process.popen.returncode}:\n{process.tail()}"
        try:
            status, body = get(port, "/healthz", timeout_s=1.0)
            if status == 200 and body.get("status") == "ok":
                return body
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"not healthy within {START_TIMEOUT_S} s:\n{process.tail()}")


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 503")  # answered "draining" would count as refusing too
    except OSError:
        return True


@dataclass
class Call:
    """One completion request on a thread of its own; what came back."""

    port: int
    content: str
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    body: bytes = b""
    error: BaseException | None = None
    done_at: float | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = {"model": "stub-model", "messages": [{"role": "user", "content": self.content}],
                       "stream": self.stream}
            conn.request("POST", "/v1/chat/completions", body=json.dumps(payload),
                         headers={"Content-Type": "application/json", "Authorization": "Bearer drain-test-key",
                                  **self.headers})
            response = conn.getresponse()
            self.status = response.status
            self.body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc
        finally:
            self.done_at = time.monotonic()
            conn.close()

    def join(self, timeout_s: float) -> Call:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"{self.content!r} still waiting after {timeout_s} s"
        return self


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = spawn(["stub-upstream", "--port", str(port), "--latency-ms", str(STUB_LATENCY_MS),
                     "--tokens-per-s", "20"], tmp_path / "stub.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(port, "/v1/models")[0] == 200:
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            assert time.monotonic() < deadline and process.popen.poll() is None, process.tail()
            time.sleep(0.1)
        yield port
    finally:
        process.stop()


def serve(stub_port: int, port: int, log: Path, *flags: str, env: dict[str, str] | None = None) -> Process:
    return spawn(["serve", "--upstream", f"http://127.0.0.1:{stub_port}/v1", "--port", str(port), *flags], log, env)


def test_sigterm_drains_in_flight_requests_flushes_the_store_and_exits_0(stub: int, tmp_path: Path) -> None:
    port, store = free_port(), tmp_path / "cache.sqlite3"
    flags = ("--store", "sqlite", "--store-path", str(store), "--drain-timeout", "10")
    proxy = serve(stub, port, tmp_path / "first.log", *flags)
    try:
        wait_healthy(proxy, port)
        plain = Call(port, "what is the tallest mountain on earth")
        streamed = Call(port, "name the largest ocean on the planet", stream=True)
        time.sleep(0.5)  # both reached the stub, which answers after 1.5 s (the stream then 20 pieces a second)
        signalled = time.monotonic()
        proxy.popen.send_signal(signal.SIGTERM)
        deadline = signalled + 1.0
        while not refuses(port):
            assert time.monotonic() < deadline, "still accepting connections 1 s after SIGTERM"
            time.sleep(0.02)
        assert plain.done_at is None and streamed.done_at is None  # refused while they were still in flight
        plain.join(20), streamed.join(20)
        assert proxy.popen.wait(timeout=20) == 0, proxy.tail()
        assert (plain.status, plain.error, streamed.status, streamed.error) == (200, None, 200, None), proxy.tail()
        answer = json.loads(plain.body)
        assert answer["choices"][0]["message"]["content"].startswith("Stub answer to: what is the tallest")
        events = [e for e in streamed.body.decode().split("\n\n") if e.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                       for e in events[:-1] if json.loads(e[6:])["choices"])
        assert text.startswith("Stub answer to: name the largest ocean")
        messages = [line["message"] for line in proxy.lines() if line["logger"] == "cachesvc.drain"]
        assert messages[0] == "SIGTERM: draining" and messages[-1] == "stopped", messages
        assert "draining 2 requests in flight, for up to 10.0 s" in messages
        assert not any("cutting" in m for m in messages)
    finally:
        proxy.stop()
    restarted = serve(stub, port, tmp_path / "second.log", *flags)  # the same file: what the drained ones stored
    try:
        assert wait_healthy(restarted, port)["entries"] == 2, restarted.tail()
        again = Call(port, "what is the tallest mountain on earth").join(20)
        assert again.status == 200 and json.loads(again.body)["choices"] == answer["choices"]
        access = [line for line in restarted.lines() if line["logger"] == "cachesvc.access"
                  and line["path"] == "/v1/chat/completions"]
        assert [line["cache"] for line in access] == ["hit"]
        restarted.popen.send_signal(signal.SIGTERM)
        assert restarted.popen.wait(timeout=20) == 0
    finally:
        restarted.stop()


def test_a_request_past_the_drain_bound_is_cut_and_the_exit_comes_within_it(stub: int, tmp_path: Path) -> None:
    port, drain_s = free_port(), 1.0
    env = {**ENV, "CACHESVC__SERVER__DRAIN_TIMEOUT_S": str(drain_s)}  # the variable, as a deployment sets it
    proxy = serve(stub, port, tmp_path / "serve.log", "--no-cache", env=env)
    try:
        wait_healthy(proxy, port)
        quick = Call(port, "finishes in time", headers={"x-stub-latency-ms": "700"})  # ~0.5 s after the signal
        slow = Call(port, "takes too long", headers={"x-stub-latency-ms": "30000"})
        stalled = Call(port, "a stream that stalls", stream=True,
                       headers={"x-stub-latency-ms": "0", "x-stub-chunk-delay-ms": "30000"})
        time.sleep(0.5)
        signalled = time.monotonic()
        proxy.popen.send_signal(signal.SIGTERM)
        assert proxy.popen.wait(timeout=drain_s + 5) == 0, proxy.tail()
        exited = time.monotonic() - signalled
        for call in (quick, slow, stalled):
            call.join(5)
        assert exited < drain_s + 2.5, exited  # the bound, the grace for cut requests to unwind, start-up slack
        assert (quick.status, quick.error) == (200, None) and b"Stub answer to: finishes in time" in quick.body
        assert slow.status is None and slow.error is not None  # the connection closed without an answer
        assert b"[DONE]" not in stalled.body and (stalled.error is not None or stalled.status == 200)
        assert stalled.error is not None, "a cut stream must not look complete"
        drain = [line for line in proxy.lines() if line["logger"] == "cachesvc.drain"]
        assert any(line.get("cut") == 2 and line["level"] == "warning" for line in drain), drain
        assert drain[-1]["message"] == "stopped"
    finally:
        proxy.stop()


def test_the_drain_bound_comes_from_config_env_or_flag_and_must_be_positive() -> None:
    from cachesvc.cli import build_parser, serve_overrides
    from cachesvc.config import load_config

    assert load_config(None, environ={}).server.drain_timeout_s == 30.0
    assert load_config(None, environ={"CACHESVC__SERVER__DRAIN_TIMEOUT_S": "2.5"}).server.drain_timeout_s == 2.5
    args = build_parser().parse_args(["serve", "--drain-timeout", "7"])
    assert load_config(None, serve_overrides(args), environ={}).server.drain_timeout_s == 7.0
    for bad in ("0", "-1"):
        with pytest.raises(ValueError, match="server.drain_timeout_s"):
            load_config(None, environ={"CACHESVC__SERVER__DRAIN_TIMEOUT_S": bad})
