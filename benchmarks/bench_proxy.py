"""What the proxy costs and what it saves, over real HTTP on loopback.

Starts a stand-in upstream (fixed latency) and two proxies as separate processes: one caching, one with the cache
off (pure pass-through). Then measures, at concurrency 1, the added latency of a miss, of pass-through, of an
exact hit and of a semantic hit against calling the upstream directly (median and p99), the lookup cost by stage
(from the Server-Timing header), and at higher concurrency the requests per second each path sustains.

    python benchmarks/bench_proxy.py --requests 200 --concurrency 32

With --baseline-rev REV it compares this tree (after) with a git revision of it (before): REV's package is
exported into a temporary mirror and its proxies run with PYTHONPATH=<mirror>, next to this tree's, behind one
shared stub upstream. Rows alternate between the two and repeat (--repeats); long prompts (--long-words), which
the stub echoes, make long answers, so many SSE chunks pass through the relay and the replay.

    python benchmarks/bench_proxy.py --baseline-rev db2d799 --repeats 3
    python benchmarks/bench_proxy.py --smoke [--baseline-rev db2d799]   # tiny counts, well under a minute

Only the command line (`python -m cachesvc ...`) and HTTP are used, never cachesvc's modules.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
TASKS = ["reverse a list", "sort a dictionary by value", "read a file line by line", "parse JSON", "open a socket",
         "format a date", "split a string", "merge two dictionaries", "remove duplicates from a list",
         "count words in a text", "convert a string to an integer", "check if a file exists", "make an HTTP request",
         "create a thread pool", "compute a SHA-256 hash", "read environment variables", "zip two lists",
         "flatten a nested list", "catch an exception", "write a CSV file", "generate a random number",
         "get the current time", "sleep for one second", "copy a directory", "list files in a folder",
         "join paths", "trim whitespace", "lowercase a string", "find the maximum of a list", "reverse a string"]
LANGS = ["Python", "JavaScript", "Go", "Rust", "Java", "C#", "Ruby", "Kotlin", "Swift", "PHP", "TypeScript",
         "Scala", "Elixir", "Haskell", "Perl", "Lua", "Dart", "Julia", "R", "C++"]
# Filler for long prompts; "current" and "value" left out, together they read as a volatile (price) question.
FILLER = sorted({w.lower() for t in TASKS for w in t.split()} - {"current", "value"})


def questions() -> list[str]:
    return [f"How do I {task} in {lang}?" for lang, task in itertools.product(LANGS, TASKS)]


def variant(question: str) -> str:
    """A rewording the semantic tier should serve: different casing and punctuation, so not an exact hit."""
    return "please, " + question.lower().rstrip("?") + " ?"


def long_prompt(tag: str, words: int) -> str:
    """A distinct prompt of about `words` words (the stub echoes it, so the answer is as long); numbers in it keep
    two such prompts from being each other's semantic hit."""
    rng = random.Random(tag)
    filler = (rng.choice(FILLER) + (f" {rng.randrange(10**6)}" if k % 10 == 0 else "") for k in range(words))
    return f"Ticket {tag}: {rng.choice(questions())} Notes: " + " ".join(filler)


_LOGS: dict[subprocess.Popen[bytes], IO[bytes]] = {}  # each running process's stderr, for wait_ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process(args: list[str], env: dict[str, str] | None = None,
            cwd: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", **(env or {})}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "cachesvc", *args], env=env, cwd=cwd,
                                stdout=subprocess.DEVNULL, stderr=log)
        _LOGS[proc] = log  # read by wait_ready when the process dies
        try:
            yield proc
        finally:
            _LOGS.pop(proc, None)
            proc.terminate()
            proc.wait(timeout=20)


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout_s: float = 180,
                     proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log = _LOGS[proc]
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited ({proc.returncode}) before {url} "
                               f"answered:\n{tail}")
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


def body(question: str, stream: bool = False) -> dict[str, Any]:
    return {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": question}],
            **({"stream": True} if stream else {})}


@dataclass
class Row:
    """The requests of one path: each one's latency, response headers and body size."""

    latencies: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @staticmethod
    def total(rows: list[Row]) -> Row:
        return Row(*(sum((getattr(row, name) for row in rows), []) for name in ("latencies", "headers", "sizes")))

    def results(self) -> dict[str, int]:
        """How many responses said miss, hit/exact, hit/semantic, bypass (x-cachesvc-cache and -tier)."""
        kinds: dict[str, int] = {}
        for h in self.headers:
            key = h.get("x-cachesvc-cache", "-") + ("/" + h["x-cachesvc-tier"] if "x-cachesvc-tier" in h else "")
            kinds[key] = kinds.get(key, 0) + 1
        return kinds

    def summary(self) -> str:
        return " ".join(f"{kind}:{count}" for kind, count in sorted(self.results().items()))


async def timed(session: aiohttp.ClientSession, base: str, question: str, headers: dict[str, str] | None = None,
                stream: bool = False, row: Row | None = None) -> Row:
    """One request, its whole body read (a stream to its end, which must be `data: [DONE]`), added to `row`."""
    row = row if row is not None else Row()
    start = time.perf_counter()
    async with session.post(f"{base}/chat/completions", json=body(question, stream), headers=headers) as response:
        data = await response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{base}: HTTP {response.status}: {data[:300]!r}")
        if stream and not data.rstrip().endswith(b"data: [DONE]"):
            raise RuntimeError(f"{base}: stream did not end with data: [DONE]: ...{data[-200:]!r}")
        row.latencies.append(elapsed)
        row.headers.append(dict(response.headers))
        row.sizes.append(len(data))
    return row


async def sequential(session: aiohttp.ClientSession, base: str, items: list[str],
                     headers: dict[str, str] | None = None, stream: bool = False) -> Row:
    row = Row()
    for question in items:
        await timed(session, base, question, headers, stream, row)
    return row


async def throughput(session: aiohttp.ClientSession, base: str, items: list[str], concurrency: int,
                     stream: bool = False) -> tuple[float, Row]:
    queue, row = list(items), Row()

    async def worker() -> None:
        while queue:
            await timed(session, base, queue.pop(), stream=stream, row=row)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(items) / (time.perf_counter() - start), row


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
    with process(["stub-upstream", "--port", str(up), "--latency-ms", str(args.upstream_latency_ms)]) as p_up, \
            process(["serve", "--upstream", upstream, "--port", str(cached), "--log-level", "warning"]) as p_cached, \
            process(["serve", "--upstream", upstream, "--port", str(plain), "--no-cache", "--log-level", "warning"]) \
            as p_plain:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            for port, proc in ((up, p_up), (cached, p_cached), (plain, p_plain)):
                await wait_ready(session, f"http://127.0.0.1:{port}/" + ("v1/models" if port == up else "healthz"),
                                 proc=proc)
            proxy, passthrough = f"http://127.0.0.1:{cached}/v1", f"http://127.0.0.1:{plain}/v1"
            await sequential(session, proxy, ["warm up the model", "and the index"])

            rows: dict[str, Row] = {}
            rows["HTTP floor (upstream answering in 0 ms)"] = await sequential(
                session, upstream, fresh_a, {"x-stub-latency-ms": "0"})
            rows["upstream direct"] = await sequential(session, upstream, fresh_a)
            rows["proxy, cache off (pass-through)"] = await sequential(session, passthrough, fresh_a)
            rows["proxy miss (embed+search+store)"] = await sequential(session, proxy, warm)
            rows["proxy exact hit"] = await sequential(session, proxy, warm)
            rows["proxy semantic hit"] = await sequential(session, proxy, [variant(q) for q in warm])

            base = statistics.median(rows["upstream direct"].latencies)
            base99 = pct(rows["upstream direct"].latencies, 0.99)
            floor = statistics.median(rows["HTTP floor (upstream answering in 0 ms)"].latencies)
            floor99 = pct(rows["HTTP floor (upstream answering in 0 ms)"].latencies, 0.99)
            print(f"\nconcurrency 1, {n} requests each, upstream latency {args.upstream_latency_ms} ms\n")
            print("Added = this row minus the upstream called directly; for hits, minus the HTTP floor.\n")
            print("| path | median ms | p99 ms | added median ms | added p99 ms | cache results |")
            print("|---|---|---|---|---|---|")
            for name, row in rows.items():
                lat = row.latencies
                # A hit is compared with the HTTP floor (what any answer costs), everything else with the upstream.
                ref, ref99 = (floor, floor99) if "hit" in name else (base, base99)
                direct = name in ("upstream direct", "HTTP floor (upstream answering in 0 ms)")
                added = "" if direct else f"{(statistics.median(lat) - ref) * 1000:.2f}"
                added99 = "" if direct else f"{(pct(lat, 0.99) - ref99) * 1000:.2f}"
                print(f"| {name} | {statistics.median(lat) * 1000:.2f} | {pct(lat, 0.99) * 1000:.2f} | {added} | "
                      f"{added99} | {row.results()} |")

            print("\nlookup cost by stage (median ms, from Server-Timing)\n")
            print("| path | " + " | ".join(("exact", "embed", "classify", "search", "verify", "fetch")) + " |")
            print("|---|---|---|---|---|---|---|")
            for name in ("proxy miss (embed+search+store)", "proxy exact hit", "proxy semantic hit"):
                medians = stage_medians(rows[name].headers)
                cells = [f"{medians[s]:.3f}" if s in medians else "-" for s in
                         ("exact", "embed", "classify", "search", "verify", "fetch")]
                print(f"| {name} | " + " | ".join(cells) + " |")

            c = args.concurrency
            print(f"\nthroughput at concurrency {c} (requests/s)\n")
            print("| path | req/s |")
            print("|---|---|")
            for name, target, items in (("upstream direct", upstream, fresh_b * 2),
                                        ("proxy, cache off (pass-through)", passthrough, fresh_b * 2),
                                        ("proxy exact hits", proxy, warm * 4),
                                        ("proxy semantic hits", proxy, [variant(q) for q in warm] * 2)):
                print(f"| {name} | {(await throughput(session, target, items, c))[0]:.0f} |")


# --baseline-rev: this tree (after) against a revision of it (before), behind one stub upstream.

ROWS = [  # (path, proxy, prompt set, streamed, the cache result every response should carry); upstream: once
    ("upstream direct, short question", "upstream", "fresh", False, "-"),
    ("upstream direct, long answer", "upstream", "long_fresh", False, "-"),
    ("upstream direct, long answer, streamed", "upstream", "long_fresh", True, "-"),
    ("pass-through, short question", "plain", "fresh", False, "bypass"),
    ("pass-through, long answer", "plain", "long_fresh", False, "bypass"),
    ("pass-through, long answer, streamed", "plain", "long_fresh", True, "bypass"),
    ("miss, short question", "cached", "warm", False, "miss"),
    ("miss, long answer", "cached", "long_miss", False, "miss"),
    ("miss, long answer, streamed", "cached", "long_stream_miss", True, "miss"),
    ("exact hit, short question", "cached", "warm", False, "hit/exact"),
    ("exact hit, long answer", "cached", "long_miss", False, "hit/exact"),
    ("exact hit, long answer, streamed replay", "cached", "long_miss", True, "hit/exact"),
    ("semantic hit, short question", "cached", "variants", False, "hit/semantic"),
]
THROUGHPUT_ROWS = [  # (path, proxy, prompt set, copies of the set, streamed, expected cache result)
    ("pass-through, short questions", "plain", "fresh", 2, False, "bypass"),
    ("pass-through, long answers, streamed", "plain", "long_fresh", 2, True, "bypass"),
    ("exact hits, short questions", "cached", "warm", 4, False, "hit/exact"),
    ("exact hits, long answers", "cached", "long_miss", 8, False, "hit/exact"),
    ("exact hits, long answers, streamed replay", "cached", "long_miss", 8, True, "hit/exact"),
]
SIDES = ("before", "after")


def git(*cmd: str) -> bytes:
    done = subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, check=False)
    if done.returncode:
        raise SystemExit(f"git {' '.join(cmd)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


@contextmanager
def baseline_mirror(rev: str) -> Iterator[Path]:
    """An importable copy of REV's package in a temporary folder: its cachesvc/, with the folders its
    pyproject.toml's package-dir maps into it (policies/ -> cachesvc.policies, kernels/ -> cachesvc.kernels)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    mapped = tomllib.loads(git("show", f"{commit}:pyproject.toml").decode())["tool"]["setuptools"]["package-dir"]
    folders = {"cachesvc": "cachesvc"} | {pkg: folder for pkg, folder in mapped.items() if pkg != "cachesvc"}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-baseline-") as tmp:
        export, mirror = Path(tmp, "export"), Path(tmp, "mirror")
        with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", commit, *set(folders.values())))) as tar:
            tar.extractall(export, filter="data")
        for package, folder in sorted(folders.items()):  # cachesvc first, then the subpackages it holds
            shutil.move(export / folder, mirror / package.replace(".", "/"))
        print(f"before = {rev} ({commit[:12]}), mirror {mirror}: "
              + ", ".join(f"{folder}/ as {package}" for package, folder in folders.items()))
        yield mirror


def check_imports(side: str, env: dict[str, str], cwd: str, mirror: Path) -> None:
    """Fails unless `python -m cachesvc` under `env` imports cachesvc (and its policies) from inside the mirror
    (before) or from outside it (after)."""
    code = "import cachesvc, cachesvc.policies; print(cachesvc.__file__); print(cachesvc.policies.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=cwd, capture_output=True,
                          text=True, check=False)
    files = [Path(line) for line in done.stdout.split()]
    print(f"{side}: imports {', '.join(map(str, files)) or '?'}")
    if done.returncode or not files or any(f.is_relative_to(mirror) != (side == "before") for f in files):
        raise SystemExit(f"{side}: not the expected code (the mirror is {mirror})\n{done.stderr[-2000:]}")


def prompt_sets(args: argparse.Namespace, r: int) -> dict[str, list[str]]:
    """Repeat r's prompts: misses get prompts no earlier repeat sent, so they miss; hits reuse this repeat's."""
    n, all_questions = args.requests, questions()
    warm = all_questions[r * n:(r + 1) * n]
    return {"fresh": all_questions[-n:], "warm": warm, "variants": [variant(q) for q in warm],
            **{key: [long_prompt(f"{r}.{key}.{i}", args.long_words) for i in range(args.long_requests)]
               for key in ("long_fresh", "long_miss", "long_stream_miss")}}


async def run_compare(args: argparse.Namespace) -> None:
    if args.requests * args.repeats > len(questions()):
        raise SystemExit(f"--requests x --repeats at most {len(questions())}")
    ports = {("upstream", "upstream"): free_port()} | {(side, kind): free_port() for side in SIDES
                                                       for kind in ("cached", "plain")}
    bases = {key: f"http://127.0.0.1:{port}/v1" for key, port in ports.items()}
    upstream = bases[("upstream", "upstream")]
    with baseline_mirror(args.baseline_rev) as mirror, ExitStack() as stack:
        cwd = str(mirror.parent)  # not the checkout: `python -m` puts the working directory first on sys.path
        pythonpath = os.pathsep.join(filter(None, (str(mirror), os.environ.get("PYTHONPATH"))))
        envs = {"upstream": {}, "before": {"PYTHONPATH": pythonpath}, "after": dict(args.after_env)}
        for side in SIDES:
            check_imports(side, envs[side], cwd, mirror)
        procs = {}
        for (side, kind), port in ports.items():
            command = ["stub-upstream", "--latency-ms", str(args.upstream_latency_ms)] if kind == "upstream" else [
                "serve", "--upstream", upstream, "--log-level", "warning", *(["--no-cache"] * (kind == "plain"))]
            procs[(side, kind)] = stack.enter_context(process([*command, "--port", str(port)], envs[side], cwd))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            for key, base in bases.items():
                await wait_ready(session, base + "/models" if key[0] == "upstream" else base[:-3] + "/healthz",
                                 proc=procs[key])
            for key, stream, prompt in itertools.product(bases, (False, True), ("warm up", "the embedding model")):
                await timed(session, bases[key], long_prompt(prompt, args.long_words), stream=stream)

            lat: dict[tuple[str, str], list[Row]] = {}
            tput: dict[tuple[str, str], list[tuple[float, Row]]] = {}
            for r in range(args.repeats):
                sets = prompt_sets(args, r)
                order = SIDES if r % 2 == 0 else SIDES[::-1]  # which of the two goes first alternates
                for path, kind, key, stream, _ in ROWS:
                    for side in ("upstream",) if kind == "upstream" else order:
                        lat.setdefault((path, side), []).append(
                            await sequential(session, bases[(side, kind)], sets[key], stream=stream))
                for path, kind, key, copies, stream, _ in THROUGHPUT_ROWS:
                    for side in order:
                        tput.setdefault((path, side), []).append(await throughput(
                            session, bases[(side, kind)], sets[key] * copies, args.concurrency, stream))
    report(args, lat, tput)


def report(args: argparse.Namespace, lat: dict[tuple[str, str], list[Row]],
           tput: dict[tuple[str, str], list[tuple[float, Row]]]) -> None:
    def median_ms(rows: list[Row]) -> float:  # the median of the repeats' medians
        return statistics.median(statistics.median(row.latencies) for row in rows) * 1000

    def p99_ms(rows: list[Row]) -> float:  # over every request of every repeat
        return pct(Row.total(rows).latencies, 0.99) * 1000

    notes = []

    def results(path: str, side: str, row: Row, expected: str) -> str:
        if set(row.results()) != {expected}:
            notes.append(f"- {path} ({side}): expected {expected} on every response, got {row.summary()}")
        return row.summary()

    print(f"\nbefore = {args.baseline_rev}, after = this tree, {args.repeats} repeats (who goes first alternates); "
          f"per row and repeat {args.requests} short questions or {args.long_requests} long prompts of "
          f"{args.long_words} words (echoed back); upstream latency {args.upstream_latency_ms} ms\n"
          f"concurrency 1; median = median of the repeats' medians, p99 over all requests, "
          f"KB = median response body (after)\n")
    print("| path | before median ms | after median ms | after/before | before p99 ms | after p99 ms | KB | "
          "cache results before | cache results after |\n|---|---|---|---|---|---|---|---|---|")
    for path, kind, _, _, expected in ROWS:
        sides = ("upstream",) if kind == "upstream" else SIDES  # the reference: once, in both columns
        before, after = lat[(path, sides[0])], lat[(path, sides[-1])]
        ratio = "" if kind == "upstream" else f"{median_ms(after) / median_ms(before):.3f}"
        cells = [results(path, side, Row.total(lat[(path, side)]), expected) for side in sides]
        print(f"| {path} | {median_ms(before):.2f} | {median_ms(after):.2f} | {ratio} | {p99_ms(before):.2f} | "
              f"{p99_ms(after):.2f} | {statistics.median(Row.total(after).sizes) / 1024:.1f} | "
              + " | ".join(cells + [""] * (2 - len(cells))) + " |")
    print(f"\nthroughput at concurrency {args.concurrency} (requests/s, median over repeats)\n")
    print("| path | before req/s | after req/s | after/before | cache results before | cache results after |\n"
          "|---|---|---|---|---|---|")
    for path, _, _, _, _, expected in THROUGHPUT_ROWS:
        rps = {side: statistics.median(rate for rate, _ in tput[(path, side)]) for side in SIDES}
        print(f"| {path} | {rps['before']:.0f} | {rps['after']:.0f} | {rps['after'] / rps['before']:.3f} | "
              + " | ".join(results(path, side, Row.total([row for _, row in tput[(path, side)]]), expected)
                           for side in SIDES) + " |")
    print("\n" + ("Responses that were not what their row measures:\n" + "\n".join(notes) if notes else
                  "Every response carried its row's expected cache result (-, bypass, miss, hit/exact, hit/semantic)."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60, help="requests per latency row (at most 200)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--upstream-latency-ms", type=float, default=20.0)
    parser.add_argument("--baseline-rev", metavar="REV",
                        help="compare this tree (after) with git revision REV of it (before), side by side")
    parser.add_argument("--repeats", type=int, default=3, help="with --baseline-rev: rounds over every row")
    parser.add_argument("--long-requests", type=int, default=30,
                        help="with --baseline-rev: long-prompt requests per row and repeat")
    parser.add_argument("--long-words", type=int, default=500,
                        help="with --baseline-rev: words per long prompt (the stub echoes it: a long answer)")
    parser.add_argument("--after-env", metavar="KEY=VALUE", action="append", default=[],
                        type=lambda kv: tuple(kv.split("=", 1)) if "=" in kv else parser.error(f"not KEY=VALUE: {kv}"),
                        help="with --baseline-rev: an environment setting for this tree's proxies only (a config "
                             "key the baseline does not know, e.g. CACHESVC__CACHE__TARGET_PRECISION=0.7)")
    parser.add_argument("--smoke", action="store_true", help="tiny counts and short prompts, to check it runs")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.concurrency, args.repeats, args.long_requests, args.long_words = 4, 4, 2, 3, 40
    asyncio.run(run_compare(args) if args.baseline_rev else run(args))


if __name__ == "__main__":
    main()
