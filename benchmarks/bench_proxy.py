"""What the proxy costs and what it saves, over real HTTP on loopback.

Starts a stand-in upstream (fixed latency) and two proxies as separate processes: one caching, one with the cache
off (pure pass-through). Then measures, at concurrency 1, the added latency of a miss, of pass-through, of an
exact hit and of a semantic hit against calling the upstream directly (median and p99), the lookup cost by stage
(from the Server-Timing header), and at higher concurrency the requests per second each path sustains.

    python benchmarks/bench_proxy.py --requests 200 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import aiohttp

TASKS = ["reverse a list", "sort a dictionary by value", "read a file line by line", "parse JSON", "open a socket",
         "format a date", "split a string", "merge two dictionaries", "remove duplicates from a list",
         "count words in a text", "convert a string to an integer", "check if a file exists", "make an HTTP request",
         "create a thread pool", "compute a SHA-256 hash", "read environment variables", "zip two lists",
         "flatten a nested list", "catch an exception", "write a CSV file", "generate a random number",
         "get the current time", "sleep for one second", "copy a directory", "list files in a folder",
         "join paths", "trim whitespace", "lowercase a string", "find the maximum of a list", "reverse a string"]
LANGS = ["Python", "JavaScript", "Go", "Rust", "Java", "C#", "Ruby", "Kotlin", "Swift", "PHP", "TypeScript",
         "Scala", "Elixir", "Haskell", "Perl", "Lua", "Dart", "Julia", "R", "C++"]


def questions() -> list[str]:
    return [f"How do I {task} in {lang}?" for lang, task in itertools.product(LANGS, TASKS)]


def variant(question: str) -> str:
    """A rewording the semantic tier should serve: different casing and punctuation, so not an exact hit."""
    return "please, " + question.lower().rstrip("?") + " ?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cachesvc", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


def body(question: str) -> dict[str, Any]:
    return {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": question}]}


async def timed(session: aiohttp.ClientSession, base: str, question: str,
                headers: dict[str, str] | None = None) -> tuple[float, dict[str, str]]:
    start = time.perf_counter()
    async with session.post(f"{base}/chat/completions", json=body(question), headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{base}: HTTP {response.status}")
        return time.perf_counter() - start, dict(response.headers)


async def sequential(session: aiohttp.ClientSession, base: str, items: list[str],
                     headers: dict[str, str] | None = None) -> tuple[list[float], list[dict]]:
    latencies, headers_seen = [], []
    for question in items:
        latency, h = await timed(session, base, question, headers)
        latencies.append(latency)
        headers_seen.append(h)
    return latencies, headers_seen


async def throughput(session: aiohttp.ClientSession, base: str, items: list[str], concurrency: int) -> float:
    queue = list(items)

    async def worker() -> None:
        while queue:
            await timed(session, base, queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(items) / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def stage_medians(headers: list[dict[str, str]]) -> dict[str, float]:
    stages: dict[str, list[float]] = {}
    for h in headers:
        for part in filter(None, (p.strip() for p in h.get("Server-Timing", "").split(","))):
            name, _, dur = part.partition(";dur=")
            stages.setdefault(name, []).append(float(dur))
    return {name: statistics.median(values) for name, values in stages.items()}


async def run(args: argparse.Namespace) -> None:
    up, cached, plain = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up}/v1"
    n = args.requests
    all_questions = questions()
    if len(all_questions) < 3 * n:
        raise SystemExit(f"--requests at most {len(all_questions) // 3}")
    warm, fresh_a, fresh_b = all_questions[:n], all_questions[n:2 * n], all_questions[2 * n:3 * n]
    with process(["stub-upstream", "--port", str(up), "--latency-ms", str(args.upstream_latency_ms)]), \
            process(["serve", "--upstream", upstream, "--port", str(cached), "--log-level", "warning"]), \
            process(["serve", "--upstream", upstream, "--port", str(plain), "--no-cache", "--log-level", "warning"]):
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            for port in (up, cached, plain):
                await wait_ready(session, f"http://127.0.0.1:{port}/" + ("v1/models" if port == up else "healthz"))
            proxy, passthrough = f"http://127.0.0.1:{cached}/v1", f"http://127.0.0.1:{plain}/v1"
            await sequential(session, proxy, ["warm up the model", "and the index"])

            rows: dict[str, tuple[list[float], list[dict]]] = {}
            rows["HTTP floor (upstream answering in 0 ms)"] = await sequential(
                session, upstream, fresh_a, {"x-stub-latency-ms": "0"})
            rows["upstream direct"] = await sequential(session, upstream, fresh_a)
            rows["proxy, cache off (pass-through)"] = await sequential(session, passthrough, fresh_a)
            rows["proxy miss (embed+search+store)"] = await sequential(session, proxy, warm)
            rows["proxy exact hit"] = await sequential(session, proxy, warm)
            rows["proxy semantic hit"] = await sequential(session, proxy, [variant(q) for q in warm])

            base = statistics.median(rows["upstream direct"][0])
            base99 = pct(rows["upstream direct"][0], 0.99)
            floor = statistics.median(rows["HTTP floor (upstream answering in 0 ms)"][0])
            floor99 = pct(rows["HTTP floor (upstream answering in 0 ms)"][0], 0.99)
            print(f"\nconcurrency 1, {n} requests each, upstream latency {args.upstream_latency_ms} ms\n")
            print("Added = this row minus the upstream called directly; for hits, minus the HTTP floor.\n")
            print("| path | median ms | p99 ms | added median ms | added p99 ms | cache results |")
            print("|---|---|---|---|---|---|")
            for name, (lat, hdrs) in rows.items():
                kinds: dict[str, int] = {}
                for h in hdrs:
                    key = h.get("x-cachesvc-cache", "-") + ("/" + h["x-cachesvc-tier"] if "x-cachesvc-tier" in h else "")
                    kinds[key] = kinds.get(key, 0) + 1
                # A hit is compared with the HTTP floor (what any answer costs), everything else with the upstream.
                ref, ref99 = (floor, floor99) if "hit" in name else (base, base99)
                direct = name in ("upstream direct", "HTTP floor (upstream answering in 0 ms)")
                added = "" if direct else f"{(statistics.median(lat) - ref) * 1000:.2f}"
                added99 = "" if direct else f"{(pct(lat, 0.99) - ref99) * 1000:.2f}"
                print(f"| {name} | {statistics.median(lat) * 1000:.2f} | {pct(lat, 0.99) * 1000:.2f} | {added} | "
                      f"{added99} | {kinds} |")

            print("\nlookup cost by stage (median ms, from Server-Timing)\n")
            print("| path | " + " | ".join(("exact", "embed", "classify", "search", "verify", "fetch")) + " |")
            print("|---|---|---|---|---|---|---|")
            for name in ("proxy miss (embed+search+store)", "proxy exact hit", "proxy semantic hit"):
                medians = stage_medians(rows[name][1])
                cells = [f"{medians[s]:.3f}" if s in medians else "-" for s in
                         ("exact", "embed", "classify", "search", "verify", "fetch")]
                print(f"| {name} | " + " | ".join(cells) + " |")

            c = args.concurrency
            print(f"\nthroughput at concurrency {c} (requests/s)\n")
            print("| path | req/s |")
            print("|---|---|")
            print(f"| upstream direct | {await throughput(session, upstream, fresh_b * 2, c):.0f} |")
            print(f"| proxy, cache off (pass-through) | {await throughput(session, passthrough, fresh_b * 2, c):.0f} |")
            print(f"| proxy exact hits | {await throughput(session, proxy, warm * 4, c):.0f} |")
            print(f"| proxy semantic hits | {await throughput(session, proxy, [variant(q) for q in warm] * 2, c):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60, help="requests per latency row (at most 200)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--upstream-latency-ms", type=float, default=20.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
