"""Memory and latency of a `cachesvc serve` process (its own process, a stand-in upstream) before and after ten
questions of 3.5 MB each, and a short question after them: with `cache.max_query_chars` the lookup work per
request is bounded, so memory stays at its level and the proxy keeps answering.

    python benchmarks/bench_huge_questions.py [--questions 10] [--mb 3.5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import free_port, process, wait_ready


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS")


async def ask(session: aiohttp.ClientSession, base: str, text: str) -> tuple[float, dict[str, str]]:
    body = {"model": "stub-model", "temperature": 0, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    async with session.post(f"{base}/chat/completions", json=body) as response:
        await response.read()
        assert response.status == 200, response.status
        return time.perf_counter() - started, dict(response.headers)


async def run(args: argparse.Namespace) -> None:
    up, px = free_port(), free_port()
    words = int(args.mb * 1_000_000 / 5)
    with process(["stub-upstream", "--port", str(up), "--latency-ms", "1"]), \
            process(["serve", "--upstream", f"http://127.0.0.1:{up}/v1", "--port", str(px),
                     "--log-level", "warning"]) as proxy:
        base = f"http://127.0.0.1:{px}/v1"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://127.0.0.1:{px}/healthz", proc=proxy)
            for question in ("warm up", "What is the capital of France?"):
                await ask(session, base, question)
            before = peak = rss_mib(proxy.pid)
            seconds = []
            for i in range(args.questions):
                took, headers = await ask(session, base, f"{i} " + "word " * words)
                seconds.append(took)
                peak = max(peak, rss_mib(proxy.pid))
            await asyncio.sleep(2)
            after = rss_mib(proxy.pid)
            short, _ = await ask(session, base, "What is the capital of Peru?")
    print(f"\n| RSS after warm-up MiB | {args.questions} questions of {args.mb} MB: median s | peak RSS MiB | "
          f"RSS after MiB | x-cachesvc-semantic | a short question afterwards ms |\n|---:|---:|---:|---:|---|---:|")
    print(f"| {before} | {sorted(seconds)[len(seconds) // 2]:.2f} | {peak} | {after} | "
          f"{headers.get('x-cachesvc-semantic')} | {short * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--mb", type=float, default=3.5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
