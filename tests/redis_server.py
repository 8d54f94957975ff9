"""A real redis-server for tests: started on a free loopback port in a temporary folder, stopped at the end.

Skipped when no ``redis-server`` binary is found (``apt-get install -y redis-server`` on Debian), except when the
environment variable CI is set: there it fails, so that CI cannot pass by skipping the Redis tests.
``REDIS_SERVER=/path/to/redis-server`` picks another binary. Use the ``redis_server`` fixture (a conftest imports it),
or ``RedisServer`` directly for a server with AOF on (``appendonly=True``) that a test restarts.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 10.0  # until PING answers PONG (an AOF being loaded answers LOADING meanwhile)
STOP_TIMEOUT_S = 5.0  # after SIGTERM, before SIGKILL


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def redis_server_binary() -> str:
    """The redis-server binary, or a skip (a failure under CI) saying how to get one."""
    name = os.environ.get("REDIS_SERVER") or "redis-server"
    found = shutil.which(name)
    if not found:
        reason = f"no {name} binary found (install it: apt-get install -y redis-server; or set REDIS_SERVER=/path)"
        if in_ci():
            pytest.fail(f"{reason}; CI is set, so the Redis tests may not be skipped")
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 above) is free too; both must be under 65,536."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


def ask(port: int, command: bytes, password: str | None = None, timeout_s: float = 0.5) -> bytes:
    """One inline command over a raw socket (after AUTH with a password): its reply (up to 64 KiB), b"" when nothing
    answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            if password:
                s.sendall(b"AUTH " + password.encode() + b"\r\n")
                if not s.recv(256).startswith(b"+OK"):
                    return b""
            s.sendall(command + b"\r\n")
            return s.recv(65536)
    except OSError:
        return b""


def ping(port: int, password: str | None = None) -> bytes:
    """The first line of PING's reply (``+PONG``, ``-LOADING ...``), b"" when nothing answers."""
    return ask(port, b"PING", password).split(b"\r\n", 1)[0]


class RedisServer:
    """One redis-server process on 127.0.0.1; restartable on the same port and folder (its AOF, if on, kept)."""

    def __init__(self, directory: Path, *, appendonly: bool = False, appendfsync: str = "everysec",
                 port: int | None = None, binary: str | None = None, password: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.binary = binary or redis_server_binary()
        self.directory = directory
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.password = password  # --requirepass (no spaces: sent inline)
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._log = directory / "redis.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync,
                "--dir", str(self.directory), "--daemonize", "no", "--logfile", "",
                *(["--requirepass", self.password] if self.password else []), *self.extra_args]

    def start(self) -> RedisServer:
        """Start it and wait (bounded) until it answers PING; a failure shows the end of its log."""
        assert self.process is None, "already running"
        if ping(self.port):
            raise RuntimeError(f"port {self.port} on 127.0.0.1 is already taken")
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.directory)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers(self.process.pid):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {START_TIMEOUT_S} s:\n"
                           + self.log_tail())

    def _answers(self, pid: int) -> bool:
        """PING answers PONG, and the server answering is ours (not some other one that took the port)."""
        return (ping(self.port, self.password) == b"+PONG"
                and f"process_id:{pid}\r\n".encode() in ask(self.port, b"INFO server", self.password))

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with ``kill``: a crash), a bounded wait, then SIGKILL; idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self, *, kill: bool = False) -> RedisServer:
        """Stop and start again on the same port and folder."""
        self.stop(kill=kill)
        return self.start()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self._log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def run_server(directory: Path, **options: Any) -> Iterator[RedisServer]:
    """A started server for the length of a fixture; always stopped."""
    server = RedisServer(directory, **options)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server (no persistence) for one test."""
    yield from run_server(tmp_path / "redis")


@pytest.fixture
def redis_server_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server with AOF on (appendfsync always) for one test; restartable."""
    yield from run_server(tmp_path / "redis-aof", appendonly=True, appendfsync="always")


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """A Redis Cluster of three masters on loopback ports (no replicas), made with redis-cli --cluster create."""
    binary = redis_server_binary()
    cli = shutil.which(os.path.join(os.path.dirname(binary), "redis-cli")) or shutil.which("redis-cli")
    if cli is None:
        reason = "no redis-cli binary found (Debian's redis-tools, installed with redis-server)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    nodes = [RedisServer(tmp_path / f"node{i}", binary=binary, port=free_cluster_port(),
                         extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                     "--cluster-node-timeout", "2000")) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes], "--cluster-replicas",
                        "0", "--cluster-yes"], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"cluster_state:ok" not in ask(nodes[0].port, b"CLUSTER INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
