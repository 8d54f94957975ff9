"""Soak run: mixed traffic through two `cachesvc serve` replicas sharing one Redis (AOF on, fsync always), with Redis
killed and restarted, then a replica killed and restarted, in the middle. Not part of the test suite.

Reports the error rate (answers that were not 200, and requests a dead replica could not take, which a load balancer
would have sent elsewhere), each replica's memory (RSS) after warm-up, at its peak and at the end, the entries lost
(questions answered as a miss while their replica reported itself healthy before and after, asked again at the end:
each must be a hit), and the change feed's propagation delay from the replicas' own histograms.

Every category's quota is raised to ``--max-entries`` (a million): the shipped ones (20,000 entries for
``default``) evict the least recently used entries by design once a long run has written more, and the end check
cannot tell such an eviction from a loss. The summary counts the evictions each replica made, by reason (a quota
eviction there means the run outgrew ``--max-entries``), and the periods each replica was not healthy.

    python -m cachesvc.loadtests.soak_replicas --minutes 30
    python -m cachesvc.loadtests.soak_replicas --minutes 2 --out /tmp/soak   # a short try
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cachesvc.config import CacheConfig

TOPICS = ["sort a list", "read a file line by line", "parse JSON", "open a TCP socket", "format a date",
          "join strings", "reverse a string", "merge two dictionaries", "count words in a text", "define a class",
          "handle an exception", "write a unit test", "run a subprocess", "make an HTTP request", "use a regex"]
LANGUAGES = ["Python", "Go", "Rust", "JavaScript", "Java", "C#", "Ruby", "Kotlin"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Replica:
    name: str
    port: int
    command: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    rss: list[tuple[float, float, int]] = field(default_factory=list)  # (t, MiB, pid)
    healthy: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.healthy = False


def redis_command(binary: str, port: int, directory: Path) -> list[str]:
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(directory), "--maxmemory-policy", "volatile-ttl"]


async def wait_healthy(http: aiohttp.ClientSession, replica: Replica, timeout_s: float) -> float:
    """Seconds until /healthz says ok; raises after timeout_s."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            async with http.get(f"{replica.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                if r.status == 200 and (await r.json()).get("status") == "ok":
                    return time.monotonic() - started
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{replica.name} not healthy within {timeout_s} s; see {replica.log}")


def histogram_quantiles(metrics_text: str, name: str, qs: tuple[float, ...]) -> dict[float, float | None]:
    """Quantiles (upper bucket bounds) of a Prometheus histogram in a /metrics page."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    out: dict[float, float | None] = {}
    for q in qs:
        out[q] = next((bound for bound, count in buckets if total and count >= q * total), None)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise SystemExit("redis-server not found (apt-get install -y redis-server)")
    work = Path(args.out or tempfile.mkdtemp(prefix="cachesvc-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    redis_port, stub_port = free_port(), free_port()
    redis_dir = work / "redis"
    redis_dir.mkdir(exist_ok=True)
    redis_log = work / "redis.log"
    procs: list[subprocess.Popen[bytes]] = []

    def start_redis() -> subprocess.Popen[bytes]:
        with open(redis_log, "ab") as log:
            p = subprocess.Popen(redis_command(redis_binary, redis_port, redis_dir), stdout=log,
                                 stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    redis = start_redis()
    python = sys.executable
    with open(work / "stub.log", "ab") as log:
        stub = subprocess.Popen([python, "-m", "cachesvc", "stub-upstream", "--port", str(stub_port),
                                 "--latency-ms", str(args.upstream_ms)], stdout=log, stderr=subprocess.STDOUT)
    procs.append(stub)
    config_file = work / "replica.json"  # JSON is YAML: every category's quota above what the run can write
    config_file.write_text(json.dumps({"cache": {"categories": {
        name: {"max_entries": args.max_entries} for name in CacheConfig().categories}}}))
    env_cmd = [python, "-m", "cachesvc", "serve", "--config", str(config_file), "--upstream",
               f"http://127.0.0.1:{stub_port}/v1", "--store", "redis", "--redis-url",
               f"redis://127.0.0.1:{redis_port}/0", "--log-level", "warning"]
    replicas = [Replica(n, p, [*env_cmd, "--port", str(p)], work / f"{n}.log")
                for n, p in (("a", free_port()), ("b", free_port()))]
    results: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    stop = asyncio.Event()
    timeline: list[tuple[float, str, bool]] = []  # (t, replica, /healthz said ok)
    ttls = {name: policy.ttl_s for name, policy in CacheConfig().categories.items()}
    try:
        async with aiohttp.ClientSession() as http:
            for replica in replicas:
                replica.start()
            for replica in replicas:
                await wait_healthy(http, replica, 180)
                replica.healthy = True
            started = time.monotonic()
            duration = args.minutes * 60
            rng = random.Random(0)

            async def health_loop() -> None:
                while not stop.is_set():
                    for replica in replicas:
                        try:
                            async with http.get(f"{replica.url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                                replica.healthy = r.status == 200 and (await r.json()).get("status") == "ok"
                        except (aiohttp.ClientError, TimeoutError, ValueError):
                            replica.healthy = False
                        timeline.append((time.monotonic() - started, replica.name, replica.healthy))
                        if replica.process is not None:
                            rss = rss_mib(replica.process.pid)
                            if rss is not None:
                                replica.rss.append((time.monotonic() - started, rss, replica.process.pid))
                    await asyncio.sleep(0.25)

            async def worker(seed: int) -> None:
                wr = random.Random(seed)
                n = 0
                while not stop.is_set():
                    n += 1
                    live = [r for r in replicas if r.healthy] or replicas
                    replica = wr.choice(live)
                    if wr.random() < 0.6:  # a popular question, sometimes paraphrased
                        topic, lang = wr.choice(TOPICS), wr.choice(LANGUAGES[:3])
                        text = f"How do I {topic} in {lang}?" if wr.random() < 0.5 else f"how to {topic} in {lang}"
                    else:
                        text = f"Question {seed}-{n}: how do I {wr.choice(TOPICS)} with item {wr.randrange(10**9)}?"
                    body = {"model": "stub-model", "temperature": 0, "stream": wr.random() < 0.3,
                            "messages": [{"role": "user", "content": text}]}
                    healthy_before = replica.healthy
                    t0 = time.monotonic()
                    row: dict[str, Any] = {"t": t0 - started, "replica": replica.name, "text": text}
                    try:
                        async with http.post(f"{replica.url}/v1/chat/completions", json=body,
                                             timeout=aiohttp.ClientTimeout(total=30)) as r:
                            payload = await r.read()
                            row |= {"status": r.status, "cache": r.headers.get("x-cachesvc-cache"),
                                    "category": r.headers.get("x-cachesvc-category"),
                                    "complete": (b"[DONE]" in payload) if body["stream"] else r.status == 200}
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        row |= {"status": 0, "error": type(exc).__name__}
                    row |= {"s": time.monotonic() - t0, "healthy": healthy_before}
                    results.append(row)
                    await asyncio.sleep(wr.expovariate(1 / args.think_s))

            async def chaos() -> None:
                await asyncio.sleep(duration / 3)
                events.append({"t": time.monotonic() - started, "event": "redis killed (SIGKILL)"})
                redis.kill()
                redis.wait(10)
                await asyncio.sleep(args.outage_s)
                start_redis()
                events.append({"t": time.monotonic() - started, "event": "redis restarted (AOF)"})
                await asyncio.sleep(duration / 3 - args.outage_s)
                victim = replicas[1]
                events.append({"t": time.monotonic() - started, "event": f"replica {victim.name} killed (SIGKILL)"})
                victim.kill()
                await asyncio.sleep(2)
                victim.start()
                back_s = await wait_healthy(http, victim, 180)
                victim.healthy = True
                events.append({"t": time.monotonic() - started, "event": f"replica {victim.name} back",
                               "restart_to_healthy_s": round(back_s, 1)})

            tasks = [asyncio.create_task(health_loop()), asyncio.create_task(chaos())]
            tasks += [asyncio.create_task(worker(i)) for i in range(args.concurrency)]
            await asyncio.sleep(duration)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

            # every miss answered while its replica was healthy must now be a hit (exact), through either replica
            # (healthy: every /healthz sample of its replica from 0.5 s before it to 1 s after it said ok, so the
            # store took the write; still within its category's TTL at the end)
            end = time.monotonic() - started
            acknowledged = {r["text"] for r in results if r.get("status") == 200 and r.get("cache") == "miss"
                            and r.get("complete") and _healthy_throughout(timeline, r)
                            and end - r["t"] < ttls.get(r.get("category") or "default", 0)}
            # a 30-minute run acknowledges tens of thousands: check a seeded sample of them, 16 at a time
            checked = sorted(acknowledged)
            if len(checked) > args.verify_max:
                checked = rng.sample(checked, args.verify_max)
            lost: list[str] = []
            gate = asyncio.Semaphore(16)

            async def check(text: str) -> None:
                body = {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": text}]}
                async with gate, http.post(f"{rng.choice(replicas).url}/v1/chat/completions", json=body) as r:
                    await r.read()
                    if r.headers.get("x-cachesvc-cache") != "hit":
                        lost.append(text)

            await asyncio.gather(*(check(text) for text in checked))
            feed, evictions, entries = {}, {}, {}
            for replica in replicas:
                async with http.get(f"{replica.url}/metrics") as r:
                    page = await r.text()
                feed[replica.name] = histogram_quantiles(page, "cachesvc_feed_propagation_seconds", (0.5, 0.9, 0.99))
                evictions[replica.name] = counter_by_label(page, "cachesvc_cache_evictions_total", "reason")
                entries[replica.name] = sum(counter_by_label(page, "cachesvc_cache_entries", "category").values())
    finally:
        for replica in replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
                try:
                    replica.process.wait(40)
                except subprocess.TimeoutExpired:
                    replica.process.kill()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    total = len(results)
    failed = [r for r in results if r.get("status") != 200 or not r.get("complete")]
    refused = [r for r in failed if r.get("status") == 0]
    summary: dict[str, Any] = {
        "minutes": args.minutes, "concurrency": args.concurrency, "requests": total,
        "hits": sum(1 for r in results if r.get("cache") == "hit"),
        "errors": len(failed) - len(refused), "error_rate": (len(failed) - len(refused)) / max(1, total),
        "refused_by_a_dead_replica": len(refused),
        "acknowledged_entries": len(acknowledged), "checked": len(checked), "entries_lost": len(lost),
        "lost_examples": lost[:5],
        "events": events,
        "memory_mib": {r.name: _memory(r.rss) for r in replicas},
        "propagation_upper_bound_s": feed,
        "evictions_by_reason": evictions,
        "entries_at_end": entries,
        "unhealthy_periods_s": {r.name: unhealthy_periods(timeline, r.name) for r in replicas},
        "p50_latency_ms": _median([r["s"] * 1000 for r in results if r.get("status") == 200]),
        "work_dir": str(work),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def counter_by_label(metrics_text: str, name: str, label: str) -> dict[str, float]:
    """A Prometheus counter's (or gauge's) samples in a /metrics page, summed by one label's value."""
    sums: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") and f'{label}="' in line:
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            sums[value] = sums.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def unhealthy_periods(timeline: list[tuple[float, str, bool]], name: str) -> list[tuple[float, float]]:
    """The (from, to) seconds of each run of /healthz samples of one replica that did not say ok."""
    periods: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for t, who, ok in timeline:
        if who != name:
            continue
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            periods.append((round(start, 1), round(t, 1)))
            start = None
        last = t
    if start is not None:
        periods.append((round(start, 1), round(last, 1)))
    return periods


def _healthy_throughout(timeline: list[tuple[float, str, bool]], row: dict[str, Any]) -> bool:
    start, finish = row["t"] - 0.5, row["t"] + row["s"] + 1.0
    samples = [ok for t, name, ok in timeline if name == row["replica"] and start <= t <= finish]
    return bool(samples) and all(samples) and any(t > finish - 0.5 for t, name, _ in timeline
                                                    if name == row["replica"])


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return round(values[len(values) // 2], 1) if values else None


def _memory(samples: list[tuple[float, float, int]]) -> list[dict[str, float]]:
    """Per process of the replica (a restart makes a second): RSS a minute into its life, its peak, its last."""
    out = []
    for pid in dict.fromkeys(p for _, _, p in samples):
        mine = [(t, m) for t, m, p in samples if p == pid]
        warm = [m for t, m in mine if t - mine[0][0] <= 60]
        out.append({"from_s": round(mine[0][0], 1), "to_s": round(mine[-1][0], 1), "after_warmup": round(warm[-1], 1),
                    "peak": round(max(m for _, m in mine), 1), "end": round(mine[-1][1], 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--think-s", type=float, default=0.05, help="mean pause between a worker's requests")
    parser.add_argument("--upstream-ms", type=float, default=50.0, help="the stand-in upstream's latency")
    parser.add_argument("--outage-s", type=float, default=10.0, help="how long Redis stays down")
    parser.add_argument("--verify-max", type=int, default=5000,
                        help="acknowledged entries asked again at the end (a seeded sample when there are more)")
    parser.add_argument("--max-entries", type=int, default=1_000_000,
                        help="every category's quota (above what the run writes, so nothing is evicted)")
    parser.add_argument("--out", help="folder for the logs and summary.json (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or not 1 <= args.concurrency <= 256:
        parser.error("--minutes must be > 0 and --concurrency in 1..256")
    summary = asyncio.run(run(args))
    print(json.dumps(summary, indent=2))
    return 0 if summary["entries_lost"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
