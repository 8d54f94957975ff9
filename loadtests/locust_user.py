"""The locust side of ``cachesvc loadtest``: the file given to ``locust -f``, run in its own process (locust
patches the standard library with gevent on import: nothing else in cachesvc imports this module).

``ClosedLoopUser``: N users, each sends the next planned request as soon as its previous answer is in.
``OpenLoopUser``: one dispatcher per process sends each planned request at its arrival time, whatever the server
does, in its own greenlet, with at most ``max_inflight`` in flight; a request that could not be sent on time
records when it was due, and its wait counts (``metrics.py``).
The run's settings come from the JSON file named by ``CACHESVC_LOADTEST_SPEC``; with several workers each takes
every W-th planned request (``CACHESVC_LOADTEST_WORKER`` = its index) and the W-th share of the rate. Every
request becomes one JSON line in ``records-<worker>.jsonl``; locust's own statistics get a "chat" entry and a
"time to first token" entry per request, so its CSV and web UI show them too.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
import requests
from gevent.pool import Pool  # type: ignore[import-untyped]
from locust import User, constant, events, task
from locust.env import Environment

from cachesvc.loadtests.schedule import ArrivalSpec, arrival_times
from cachesvc.loadtests.timed_request import send


class _Run:
    """This process's share of the run, loaded once at locust's init."""

    def __init__(self) -> None:
        spec_path = os.environ.get("CACHESVC_LOADTEST_SPEC")
        if not spec_path:
            raise RuntimeError("CACHESVC_LOADTEST_SPEC must name the run's JSON settings (cachesvc loadtest sets it)")
        self.spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
        self.worker = int(os.environ.get("CACHESVC_LOADTEST_WORKER", "0"))
        self.workers = int(self.spec.get("workers") or 1)
        planned = [json.loads(line) for line in Path(self.spec["requests_file"]).read_text().splitlines() if line]
        self.planned = planned[self.worker::self.workers]
        self.next = 0
        self.inflight = 0  # closed loop: requests being answered; the last user out ends the run
        self.url = self.spec["target"].rstrip("/") + "/chat/completions"
        dual = self.spec.get("dual") or {}
        self.dual_url = dual["url"].rstrip("/") + "/chat/completions" if dual.get("url") else None
        self.dual_fraction = float(dual.get("fraction") or 0.0)
        self.api_key = os.environ.get("CACHESVC_LOADTEST_API_KEY")  # keys come in the environment, never a file
        self.dual_key = os.environ.get("CACHESVC_LOADTEST_DUAL_API_KEY")
        self.random = random.Random(int(self.spec.get("seed") or 0) * 1009 + self.worker)
        out = Path(self.spec["records_dir"])
        out.mkdir(parents=True, exist_ok=True)
        self.records = (out / f"records-{self.worker}.jsonl").open("a", buffering=1)
        self.finished = False

    def take(self) -> dict[str, Any] | None:
        """The next planned request of this process, or None when they are all sent."""
        if self.next >= len(self.planned):
            return None
        self.next += 1
        return self.planned[self.next - 1]

    def headers(self, planned: dict[str, Any]) -> dict[str, str]:
        headers = dict(planned.get("headers") or {})
        key = self.api_key
        if key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {key}"
        return headers


RUN: _Run | None = None


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global RUN
    if environment.runner is None or type(environment.runner).__name__ != "MasterRunner":
        RUN = _Run()


def _session(pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # a proxy from the environment would measure the wrong path
    return session


def _execute(environment: Environment, run: _Run, session: requests.Session, planned: dict[str, Any],
             scheduled_at: float | None, user: int) -> None:
    """Send one planned request (and, for a sampled few, its twin straight to the upstream) and record it."""
    timeout = float(run.spec.get("timeout_s") or 120.0)
    record = send(session, run.url, planned["body"], run.headers(planned), timeout_s=timeout)
    record.update({"id": planned.get("id"), "worker": run.worker, "user": user, "scheduled_at": scheduled_at,
                   "truth": planned.get("truth")})
    if run.dual_url and run.random.random() < run.dual_fraction:
        headers = {"Authorization": f"Bearer {run.dual_key}"} if run.dual_key else {}
        twin = send(session, run.dual_url, planned["body"], headers, timeout_s=timeout)
        record["dual"] = {"status": twin["status"], "answer": twin["answer"], "latency_s": twin["latency_s"]}
    run.records.write(json.dumps(record) + "\n")
    name = "chat (stream)" if record["stream"] else "chat"
    failure = None
    if record["error"] or not 200 <= record["status"] < 300:
        failure = RuntimeError(f"{record['status']}: {record['error']}")
    wait = max(0.0, record["sent_at"] - scheduled_at) if scheduled_at is not None else 0.0
    environment.events.request.fire(
        request_type="POST", name=name, response_time=(wait + record["latency_s"]) * 1000,
        response_length=len(record["answer"]), exception=failure, context={})
    if record["ttft_s"] is not None:
        environment.events.request.fire(
            request_type="TTFT", name="time to first token", response_time=(wait + record["ttft_s"]) * 1000,
            response_length=0, exception=None, context={})


def _finish(environment: Environment, run: _Run) -> None:
    run.records.flush()
    run.finished = True
    if environment.runner is not None:
        environment.runner.quit()


class ClosedLoopUser(User):
    """One of N concurrent users: the next planned request as soon as the previous answer is in."""

    wait_time = constant(0)

    def on_start(self) -> None:
        assert RUN is not None
        self.shared = RUN
        self.session = _session(1)
        self.index = random.getrandbits(31)
        self.think_s = float(RUN.spec.get("think_s") or 0.0)

    @task
    def next_request(self) -> None:
        planned = self.shared.take()
        if planned is None:
            # Quitting now would cut off the other users' requests still in flight: wait for them.
            if self.shared.inflight == 0 and not self.shared.finished:
                _finish(self.environment, self.shared)
            gevent.sleep(0.05)
            return
        self.shared.inflight += 1
        try:
            _execute(self.environment, self.shared, self.session, planned, None, self.index)
        finally:
            self.shared.inflight -= 1
        if self.think_s:
            gevent.sleep(self.think_s)


class OpenLoopUser(User):
    """The dispatcher of this process: planned requests at their arrival times, each in its own greenlet."""

    fixed_count = 1
    wait_time = constant(0)

    @task
    def dispatch(self) -> None:
        assert RUN is not None
        run = RUN
        arrivals = dict(run.spec["arrivals"])
        arrivals["rate"] = float(arrivals["rate"]) / run.workers
        arrivals["start_rate"] = float(arrivals.get("start_rate") or 0.0) / run.workers
        arrivals["seed"] = int(arrivals.get("seed") or 0) + run.worker
        arrivals["count"] = min(int(arrivals.get("count") or len(run.planned)), len(run.planned)) or None
        times = arrival_times(ArrivalSpec(**arrivals)) if arrivals["count"] else []
        limit = int(run.spec.get("max_inflight") or 256)
        pool = Pool(limit)
        session = _session(limit)
        t0 = time.time() + 0.05
        for at in times:
            planned = run.take()
            if planned is None:
                break
            due = t0 + at
            delay = due - time.time()
            if delay > 0:
                gevent.sleep(delay)
            pool.wait_available()  # full: this request is late, and its record says by how much
            pool.spawn(_execute, self.environment, run, session, planned, due, 0)
        pool.join(timeout=float(run.spec.get("timeout_s") or 120.0) + 5)
        _finish(self.environment, run)
        gevent.sleep(3600)  # the runner is quitting; never dispatch twice
