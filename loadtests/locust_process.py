"""Start locust in its own processes for one load stage, show live progress, and collect the records.

One process in the usual case; with ``workers`` > 1, a master and that many workers (locust's distributed mode),
each worker sending its own share. The records come back as JSON lines, one file per worker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cachesvc.loadtests.metrics import percentile

GRACE_S = 30.0  # past the stage's planned end, how long locust may take to drain before it is stopped


@dataclass(frozen=True)
class Stage:
    """One load stage: ``users`` concurrent (closed loop) or ``arrivals`` (open loop: an ArrivalSpec's fields)."""

    name: str
    users: int | None = None
    arrivals: dict[str, Any] | None = None
    duration_s: float = 60.0

    @property
    def mode(self) -> str:
        return "open" if self.arrivals is not None else "closed"


def locustfile() -> str:
    """The path locust's ``-f`` takes: this package's user classes."""
    spec = importlib.util.find_spec("cachesvc.loadtests.locust_user")
    if spec is None or spec.origin is None:
        raise RuntimeError("cachesvc.loadtests.locust_user is not installed")
    return spec.origin


def run_stage(stage: Stage, settings: dict[str, Any], out: Path, *, planned: int, workers: int = 1,
              progress: TextIO | None | str = "stderr",
              clock: Callable[[], float] = time.monotonic) -> list[dict[str, Any]]:
    """Run one stage to its end (every planned request sent, or its duration passed) and return its records.
    Progress lines go to ``progress``: the ``sys.stderr`` of the moment by default, None for none."""
    if isinstance(progress, str):
        progress = sys.stderr
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("records-*.jsonl"):  # a reused folder: an earlier run's records must not count
        stale.unlink()
    secrets = {k: v for k, v in (settings.get("secrets") or {}).items() if v}
    spec = {**{k: v for k, v in settings.items() if k != "secrets"}, "records_dir": str(out), "workers": workers,
            "arrivals": stage.arrivals}
    spec_path = out / "run.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    users = stage.users if stage.mode == "closed" else workers
    assert users is not None
    user_class = "ClosedLoopUser" if stage.mode == "closed" else "OpenLoopUser"
    base = [sys.executable, "-m", "locust", "-f", locustfile(), "--headless", "--only-summary", "--skip-log-setup",
            "--loglevel", "WARNING", "--host", settings["target"]]
    env = {**os.environ, **secrets, "CACHESVC_LOADTEST_SPEC": str(spec_path), "PYTHONUNBUFFERED": "1"}
    log = (out / "locust.log").open("w")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if workers <= 1:
            command = [*base, "-u", str(users), "-r", str(users), "--run-time", f"{int(stage.duration_s) + 1}s",
                       "--csv", str(out / "locust"), "--stop-timeout", str(int(settings.get("timeout_s", 120))),
                       user_class]
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        else:
            port = int(settings.get("master_port") or _free_port())
            master = [*base, "--master", "--expect-workers", str(workers), "--master-bind-host", "127.0.0.1",
                      "--master-bind-port", str(port), "-u", str(users), "-r", str(users), "--run-time",
                      f"{int(stage.duration_s) + 1}s", "--csv", str(out / "locust"), user_class]
            processes.append(subprocess.Popen(master, env=env, stdout=log, stderr=subprocess.STDOUT))
            for index in range(workers):
                worker = [sys.executable, "-m", "locust", "-f", locustfile(), "--worker", "--master-host",
                          "127.0.0.1", "--master-port", str(port), "--skip-log-setup", "--loglevel", "WARNING",
                          user_class]
                processes.append(subprocess.Popen(worker, env={**env, "CACHESVC_LOADTEST_WORKER": str(index)},
                                                  stdout=log, stderr=subprocess.STDOUT))
        _watch(processes, out, stage, planned, progress, clock)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
    records = read_records(out)
    if not records:
        raise RuntimeError(f"locust recorded no request; its log: {out / 'locust.log'}\n"
                           + (out / "locust.log").read_text()[-2000:])
    return records


def read_records(out: Path) -> list[dict[str, Any]]:
    """Every worker's records, in send order (a line cut off by a stopped worker is skipped)."""
    records = []
    for path in sorted(out.glob("records-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return sorted(records, key=lambda r: float(r["sent_at"]))


def _watch(processes: list[subprocess.Popen[bytes]], out: Path, stage: Stage, planned: int, progress: TextIO | None,
           clock: Callable[[], float]) -> None:
    """Wait for the stage to end, printing a status line every second: elapsed and remaining time, the current
    rate, p50/p99 latency of the last few seconds, errors."""
    started = clock()
    deadline = started + stage.duration_s + GRACE_S
    offsets: dict[Path, int] = {}
    recent: list[tuple[float, float, bool]] = []  # (end time, latency, ok)
    done = errors = 0
    while clock() < deadline:
        if all(p.poll() is not None for p in processes[:1]) or done >= planned:
            break
        time.sleep(1.0)
        for path in out.glob("records-*.jsonl"):
            with path.open() as f:
                f.seek(offsets.get(path, 0))
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            offsets[path] = offsets.get(path, 0) + len(complete.encode())
            for line in complete.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                ok = not record.get("error") and 200 <= int(record.get("status") or 0) < 300
                done += 1
                errors += not ok
                recent.append((float(record["sent_at"]) + float(record["latency_s"]), float(record["latency_s"]), ok))
        now = time.time()
        recent = [r for r in recent if r[0] > now - 5.0]
        if progress is not None:
            latencies = [r[1] for r in recent if r[2]]
            elapsed = clock() - started
            line = (f"[{stage.name}] {elapsed:5.0f} s / {stage.duration_s:.0f} s  {done}/{planned} requests  "
                    f"{len(recent) / 5.0:6.1f} req/s  p50 {_ms(percentile(latencies, 50))}  "
                    f"p99 {_ms(percentile(latencies, 99))}  errors {errors}")
            end = "\r" if progress.isatty() else "\n"
            progress.write(line + end)
            progress.flush()
    if progress is not None and progress.isatty():
        progress.write("\n")


def _ms(seconds: float) -> str:
    return "   - ms" if seconds != seconds else f"{seconds * 1000:5.0f} ms"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
