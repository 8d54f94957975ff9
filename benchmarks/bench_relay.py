"""What relaying a long stream in tiny pieces costs, over real HTTP on loopback.

A stand-in upstream (`python -m cachesvc stub-upstream`) streams answers of N bytes of content in chunks of 1 to 4
characters each (its `x-stub-answer-bytes` and `x-stub-piece-chars` headers), as a token stream would: a 2 MB
answer is some 840,000 chunks, about 180 MB of SSE. Each answer is read whole, to its `data: [DONE]`, from the
upstream directly, through a proxy with the cache off (`serve --no-cache`: relay only) and through a proxy with
the cache on (a miss: relay, rebuild the answer, store it; past `cache.max_entry_bytes` it is not stored), each a
separate process. Every request asks a question no earlier one asked, so the caching proxy always misses. A row
gives the median over the repeats of each path's seconds and its ratio to the upstream called directly.

    python benchmarks/bench_relay.py                          # 256 KB, 1 MB and 2 MB answers, 3 repeats
    python benchmarks/bench_relay.py --sizes 64K,256K --repeats 5
    python benchmarks/bench_relay.py --baseline-rev REV       # also REV's proxies (before), next to this tree's
    python benchmarks/bench_relay.py --smoke                  # small answers, one repeat, to check it runs

With --baseline-rev, REV's package is exported into a temporary mirror (as bench_proxy.py does) and its two
proxies run next to this tree's behind the same upstream; the upstream is always this tree's stub. Only the
command line (`python -m cachesvc ...`) and HTTP are used, never cachesvc's modules.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import baseline_mirror, check_imports, free_port, process, wait_ready

PATHS = {"plain": "proxy, cache off", "cached": "proxy, cache on (miss)"}


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    sizes: set[int] = field(default_factory=set)  # bytes of each stream
    events: set[int] = field(default_factory=set)  # SSE events of each stream, [DONE] included
    results: set[str] = field(default_factory=set)  # x-cachesvc-cache of each response


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024}
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)


def label(size: int) -> str:
    return f"{size / 2**20:g} MB" if size >= 2**20 else f"{size / 1024:g} KB"


async def read_answer(session: aiohttp.ClientSession, base: str, prompt: str, size: int, piece_chars: int,
                      sample: Sample) -> None:
    """One streamed answer of `size` bytes, read whole; it must end in `data: [DONE]`."""
    body = {"model": "stub-model", "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": prompt}]}
    headers = {"x-stub-answer-bytes": str(size), "x-stub-piece-chars": str(piece_chars), "x-stub-latency-ms": "0"}
    start = time.perf_counter()
    async with session.post(f"{base}/chat/completions", json=body, headers=headers) as response:
        data = await response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200 or not data.rstrip().endswith(b"data: [DONE]"):
            raise RuntimeError(f"{base}: HTTP {response.status}, a stream that ends in ...{data[-200:]!r}")
        sample.results.add(response.headers.get("x-cachesvc-cache", "-"))
    sample.seconds.append(elapsed)
    sample.sizes.add(len(data))
    sample.events.add(data.count(b"\n\n"))


async def run(args: argparse.Namespace) -> None:
    sides = ("after",) if not args.baseline_rev else ("before", "after")
    ports = {("upstream", "direct"): free_port()} | {(side, kind): free_port() for side in sides for kind in PATHS}
    bases = {key: f"http://127.0.0.1:{port}/v1" for key, port in ports.items()}
    upstream = bases[("upstream", "direct")]
    with ExitStack() as stack:
        envs: dict[str, dict[str, str]] = {"upstream": {}, "after": {}}
        cwd = None
        if args.baseline_rev:
            mirror = stack.enter_context(baseline_mirror(args.baseline_rev))
            cwd = str(mirror.parent)  # not the checkout: `python -m` puts the working directory first on sys.path
            envs["before"] = {"PYTHONPATH": os.pathsep.join(filter(None, (str(mirror), os.environ.get("PYTHONPATH"))))}
            for side in sides:
                check_imports(side, envs[side], cwd, mirror)
        procs = {}
        for (side, kind), port in ports.items():
            command = ["stub-upstream", "--latency-ms", "0"] if side == "upstream" else [
                "serve", "--upstream", upstream, "--log-level", "warning", *(["--no-cache"] * (kind == "plain"))]
            procs[(side, kind)] = stack.enter_context(process([*command, "--port", str(port)], envs[side], cwd))
        timeout = aiohttp.ClientTimeout(total=None, sock_read=args.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for key, base in bases.items():
                await wait_ready(session, base + "/models" if key[0] == "upstream" else base[:-3] + "/healthz",
                                 proc=procs[key])
            for key, base in bases.items():  # warm up: the embedding model, the classifier, the connections
                await read_answer(session, base, f"warm up {key}", 4096, args.piece_chars, Sample())
            samples: Samples = {}
            keys = list(bases)
            for r in range(args.repeats):
                for size in args.sizes:
                    for i in range(len(keys)):  # who goes first rotates with the repeat
                        key = keys[(i + r) % len(keys)]
                        sample = samples.setdefault((size, key), Sample())
                        await read_answer(session, bases[key], f"relay bench {r} {size} {key[0]} {key[1]}", size,
                                          args.piece_chars, sample)
                        print(f"  repeat {r + 1}/{args.repeats} {label(size)} {key[0]} {key[1]}: "
                              f"{sample.seconds[-1]:.2f} s", file=sys.stderr, flush=True)
    report(args, sides, samples)


Samples = dict[tuple[int, tuple[str, str]], Sample]  # (answer size, (side, path)) -> its requests


def report(args: argparse.Namespace, sides: tuple[str, ...], samples: Samples) -> None:
    print(f"\nstreamed answers in chunks of 1-{args.piece_chars} characters, read whole; median of {args.repeats} "
          f"repeat(s), seconds; ratio = the path's median / the upstream's direct median\n")
    columns = [(side, kind) for side in sides for kind in PATHS]
    names = [f"{PATHS[kind]}{' (' + side + ')' if len(sides) > 1 else ''}" for side, kind in columns]
    print("| answer | stream MB | events | direct s | " + " | ".join(f"{n} s | ratio" for n in names) + " |")
    print("|---|---|---|---|" + "---|---|" * len(columns))
    notes = []
    for size in args.sizes:
        direct = samples[(size, ("upstream", "direct"))]
        base = statistics.median(direct.seconds)
        (stream_bytes,), (events,) = direct.sizes, direct.events
        cells = []
        for key in columns:
            sample = samples[(size, key)]
            median = statistics.median(sample.seconds)
            cells.append(f"{median:.2f} | {median / base:.2f}x")
            if sample.sizes != direct.sizes or sample.events != direct.events:
                notes.append(f"- {label(size)}, {key}: streams of {sorted(sample.sizes)} bytes and "
                             f"{sorted(sample.events)} events; direct {stream_bytes} bytes, {events} events")
            if key[1] == "cached" and sample.results != {"miss"}:
                notes.append(f"- {label(size)}, {key}: x-cachesvc-cache {sorted(sample.results)}, expected miss")
        print(f"| {label(size)} | {stream_bytes / 2**20:.1f} | {events:,} | {base:.2f} | "
              + " | ".join(cells) + " |")
    print("\n" + ("Not what the row measures:\n" + "\n".join(notes) if notes else
                  "Every stream arrived whole (as many bytes and events as the upstream's own), every request to "
                  "the caching proxy was a miss."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256K,1M,2M", help="answer sizes in bytes of content, comma-separated")
    parser.add_argument("--piece-chars", type=int, default=4, help="chunks carry 1..K characters of content")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-rev", metavar="REV", help="also run git revision REV's proxies (before)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="longest silence allowed within a stream")
    parser.add_argument("--smoke", action="store_true", help="16 KB and 64 KB answers, one repeat")
    args: Any = parser.parse_args()
    if args.smoke:
        args.sizes, args.repeats = "16K,64K", 1
    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
