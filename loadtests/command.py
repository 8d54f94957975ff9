"""``cachesvc loadtest``: measure any OpenAI-compatible endpoint under a workload with ground truth, in closed loop
(``--users N``) or open loop (``--rate R``), a comma list of either making a sweep that stops at saturation, and
write a self-contained report (HTML with plots, plus CSV and JSON)."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BUILTIN_WORKLOAD = "builtin"
SECRET_ENV = {"api_key": "CACHESVC_LOADTEST_API_KEY", "dual_api_key": "CACHESVC_LOADTEST_DUAL_API_KEY"}
SECRET_FLAGS = ("--api-key", "--dual-api-key")
LIMITS = {"requests": 10_000_000, "workers": 64, "max_inflight": 100_000, "tenants": 10_000, "max_tokens": 1_000_000}
MAX_USERS = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("--target", required=True, help="base URL of the endpoint, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--workload", default=BUILTIN_WORKLOAD,
                        help="'builtin' (the intents shipped with cachesvc), an intents JSONL file "
                             "(intent_id, category, sibling_of, ttl_class, paraphrases), or replay:FILE (one "
                             "request per line)")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--users", default=None, help="closed loop: concurrent users (a comma list sweeps them)")
    load.add_argument("--rate", default=None, help="open loop: requests per second (a comma list sweeps them)")
    parser.add_argument("--arrival", choices=("poisson", "constant"), default="poisson")
    parser.add_argument("--max-inflight", type=int, default=256, help="open loop: cap on requests in flight")
    parser.add_argument("--ramp", type=float, default=0.0, help="open loop: seconds to ramp the rate up from 0")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per stage at most")
    parser.add_argument("--requests", type=int, default=200, help="planned requests (a stage ends when all are sent)")
    parser.add_argument("--report", type=Path, default=None, help="report folder (default ./loadtest-<time>)")
    parser.add_argument("--workers", type=int, default=1, help="locust worker processes (distributed mode)")
    parser.add_argument("--model", default=None,
                        help="model to ask (default: the first the target lists); a comma list NAME[:WEIGHT],... "
                             "mixes several, e.g. an adapter pool and one of its adapters: assistants:3,code:1")
    parser.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY; tenants get their own)")
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--stream-fraction", type=float, default=0.5)
    parser.add_argument("--multi-turn-fraction", type=float, default=0.1)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slo", default=None, help="goodput objectives in ms, e.g. ttft:500,tpot:50,e2e:2000")
    parser.add_argument("--dual-send", default=None, metavar="URL",
                        help="also send a sample of requests straight to this upstream and compare the answers")
    parser.add_argument("--dual-fraction", type=float, default=0.1)
    parser.add_argument("--dual-api-key", default=None)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--bucket", type=float, default=None, help="seconds per point of the time series")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run every stage, write the report, print where it is; 2 on a bad argument. ``argv`` is the command line
    as given (the report shows it)."""
    try:
        plan = _plan(args)
    except (ValueError, OSError) as exc:
        print(f"cachesvc loadtest: {exc}", file=sys.stderr)
        return 2
    command = shlex.join(["cachesvc", *_redacted(argv if argv is not None else ["loadtest"])])
    return _execute(args, command, *plan)


def _redacted(argv: list[str]) -> list[str]:
    """The command line with the values of key flags replaced by ``***`` (for the report)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] in SECRET_FLAGS:
            out.append("***")
        elif arg.startswith(tuple(f + "=" for f in SECRET_FLAGS)):
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
    return out


def _values(text: str, name: str, kind: type) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name} takes a number or a comma list of numbers, not {text!r}") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ValueError(f"--{name} values must be positive")
    return values


def _plan(args: argparse.Namespace) -> tuple[list[Any], list[dict[str, Any]], dict[str, Any], Path]:
    from cachesvc.loadtests.locust_process import Stage
    from cachesvc.loadtests.metrics import Objectives

    Objectives.parse(args.slo)
    if not args.target.startswith(("http://", "https://")):
        raise ValueError(f"--target must be an http(s) URL, not {args.target!r}")
    for name, limit in LIMITS.items():
        if not 1 <= getattr(args, name) <= limit:
            raise ValueError(f"--{name.replace('_', '-')} must be within 1..{limit}")
    if not 0 <= args.dual_fraction <= 1 or not 0 <= args.stream_fraction <= 1:
        raise ValueError("--dual-fraction and --stream-fraction must be within 0..1")
    if args.duration <= 0 or args.timeout <= 0:
        raise ValueError("--duration and --timeout must be positive")
    stages: list[Stage] = []
    if args.rate is not None:
        for rate in _values(args.rate, "rate", float):
            arrivals = {"rate": rate, "process": args.arrival, "ramp_s": args.ramp, "duration_s": args.duration,
                        "count": args.requests, "seed": args.seed}
            stages.append(Stage(f"{rate:g}/s", arrivals=arrivals, duration_s=args.duration + args.ramp))
    else:
        for users in _values(args.users or "4", "users", int):
            if users > MAX_USERS:
                raise ValueError(f"--users must be at most {MAX_USERS}")
            stages.append(Stage(f"{users} users", users=users, duration_s=args.duration))
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    models = _models(args.model) if args.model else ((_first_model(args.target, api_key), 1.0),)
    planned = _planned(args, models)
    report = args.report or Path(f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}")
    # Keys never enter a file: run.json, the report and its config hold none; locust gets them in its environment.
    settings = {"target": args.target, "timeout_s": args.timeout, "seed": args.seed,
                "max_inflight": args.max_inflight,
                "dual": {"url": args.dual_send, "fraction": args.dual_fraction} if args.dual_send else None,
                "secrets": {SECRET_ENV["api_key"]: api_key or "", SECRET_ENV["dual_api_key"]: args.dual_api_key or ""}}
    return stages, planned, settings, report


def _models(text: str) -> tuple[tuple[str, float], ...]:
    """``"a:3,b"`` as ((a, 3.0), (b, 1.0)); names are kept verbatim, weights must be positive."""
    out = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"--model weight must be a number, not {weight!r}") from None
        if not name or not (value > 0 and math.isfinite(value)) or len(name) > 256:
            raise ValueError(f"--model takes NAME[:WEIGHT],... with positive weights, not {part!r}")
        out.append((name, value))
    return tuple(out)


def _first_model(target: str, api_key: str | None) -> str:
    """The first model ``GET /models`` lists (bounded read, short timeout)."""
    request = urllib.request.Request(target.rstrip("/") + "/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data = json.loads(response.read(1 << 20))
        return str(data["data"][0]["id"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"could not read a model from {target}/models ({exc}); name one with --model") from None


def _planned(args: argparse.Namespace, models: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    """The planned requests as locust's process reads them: ``id``, ``body``, ``headers``, ``truth``."""
    from importlib.resources import files

    from cachesvc.loadtests import workload

    if args.workload.startswith("replay:"):
        requests = workload.replay_requests(Path(args.workload.removeprefix("replay:")))
    else:
        path = Path(str(files("cachesvc.loadtests") / "data" / "intents.jsonl")) \
            if args.workload == BUILTIN_WORKLOAD else Path(args.workload)
        spec = workload.WorkloadSpec(
            requests=args.requests, seed=args.seed, stream_fraction=args.stream_fraction,
            multi_turn_fraction=args.multi_turn_fraction, tenants=args.tenants, models=models,
            max_tokens=args.max_tokens)
        requests = workload.generate(spec, workload.load_intents(path))
    out = []
    for r in requests[: args.requests]:
        body = dict(r.body)
        body.setdefault("model", models[0][0])
        truth = {"intent": r.intent, "category": r.category, "truth_key": r.truth_key,
                 "first_of_key": r.first_of_key, "trap_of": r.trap_of, "tenant": r.tenant}
        out.append({"id": r.id, "body": body, "headers": dict(r.headers), "truth": truth})
    if not out:
        raise ValueError("the workload has no requests")
    return out


def _execute(args: argparse.Namespace, command: str, stages: list[Any], planned: list[dict[str, Any]],
             settings: dict[str, Any], report: Path) -> int:
    from cachesvc.loadtests.locust_process import run_stage
    from cachesvc.loadtests.metrics import Objectives, summarise
    from cachesvc.loadtests.report import write_report
    from cachesvc.loadtests.report_document import stage_charts, stage_tables, sweep_charts, sweep_table
    from cachesvc.loadtests.schedule import saturation

    report.mkdir(parents=True, exist_ok=True)
    requests_file = report / "requests.jsonl"
    requests_file.write_text("".join(json.dumps(p) + "\n" for p in planned))
    settings = {**settings, "requests_file": str(requests_file)}
    objectives = Objectives.parse(args.slo)
    similarity = _similarity if args.dual_send else None
    config = {k: ("***" if k in SECRET_ENV and v else str(v) if isinstance(v, Path) else v)
              for k, v in vars(args).items() if k != "func"}
    done: list[tuple[str, float, Any, str]] = []
    first_p99 = 0.0
    last_records: list[dict[str, Any]] = []
    for stage in stages:
        folder = report / "stages" / _slug(stage.name) if len(stages) > 1 else report
        records = run_stage(stage, settings, folder / "raw", workers=args.workers, planned=len(planned))
        summary = summarise(records, objectives=objectives, bucket_s=args.bucket, similarity=similarity)
        offered = float(stage.arrivals["rate"]) if stage.arrivals else float(stage.users or 0)
        p99 = summary.latency["latency_s"]["p99"]
        first_p99 = first_p99 or (p99 if not math.isnan(p99) else 0.0)
        verdict = saturation(offered if stage.arrivals else 0.0, summary.requests_per_s, p99, first_p99,
                             1 - summary.ok / summary.requests)
        if not stage.arrivals and done and summary.requests_per_s < 1.1 * done[-1][2].requests_per_s:
            verdict = type(verdict)(True, "throughput grew under 10% over the previous stage")
        done.append((stage.name, offered, summary, verdict.reason if len(stages) > 1 else "-"))
        last_records = records
        _print_stage(stage.name, summary)
        if len(stages) > 1:
            write_report(folder, _document(f"Stage {stage.name}", command, config, stage_tables(summary),
                                           stage_charts(summary, records), planned), records)
        if len(stages) > 1 and verdict.saturated:
            print(f"saturated at {stage.name}: {verdict.reason}", file=sys.stderr)
            break
    if len(stages) > 1:
        open_loop = bool(stages[0].arrivals)
        document = _document("cachesvc loadtest: sweep", command, config, [sweep_table(done)],
                             sweep_charts(done, open_loop=open_loop), planned)
        document["notes"].append("Each stage's own report is in stages/<stage>/report.html. Stages share the "
                                 "planned stream, so later stages meet a cache the earlier ones filled.")
        html = write_report(report, document, None)
    else:
        summary = done[0][2]
        html = write_report(report, _document("cachesvc loadtest", command, config, stage_tables(summary),
                                              stage_charts(summary, last_records), planned), last_records)
    print(f"report: {html}")
    return 0


def _document(title: str, command: str, config: dict[str, Any], tables: list[dict[str, Any]],
              charts: list[dict[str, Any]], planned: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": title, "subtitle": f"target {config.get('target')}", "command": command, "config": config,
            "notes": [f"Workload: {len(planned)} planned requests ({config.get('workload')})."],
            "tables": [workload_table(planned), *tables], "charts": charts}


def workload_table(planned: list[dict[str, Any]]) -> dict[str, Any]:
    """Per category: planned requests, possible hits (asked before), look-alike traps, streamed and multi-turn."""
    rows: dict[str, list[int]] = {}
    for p in planned:
        truth = p.get("truth") or {}
        row = rows.setdefault(str(truth.get("category") or "-"), [0, 0, 0, 0, 0])
        user_turns = sum(1 for m in p["body"].get("messages", []) if isinstance(m, dict) and m.get("role") == "user")
        for i, flag in enumerate((True, truth.get("first_of_key") is False, truth.get("trap_of") is not None,
                                  bool(p["body"].get("stream")), user_turns > 1)):
            row[i] += bool(flag)
    return {"title": "Workload", "columns": ["category", "requests", "possible hits", "look-alike traps", "streamed",
                                             "multi-turn"],
            "rows": [[name, *values] for name, values in sorted(rows.items())],
            "note": "Possible hits: requests whose intent the same tenant asked before of the same model."}


def _print_stage(name: str, summary: Any) -> None:
    lat, ttft = summary.latency["latency_s"], summary.latency["ttft_s"]
    hits = sum(v for k, v in summary.outcomes.items() if k.startswith("hit"))
    print(f"{name}: {summary.ok}/{summary.requests} ok, {summary.requests_per_s:.2f} req/s, "
          f"{summary.output_tokens_per_s:.1f} tok/s, latency p50 {lat['p50'] * 1000:.1f} ms p99 "
          f"{lat['p99'] * 1000:.1f} ms, TTFT p50 {ttft['p50'] * 1000:.1f} ms, hits {hits}", flush=True)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-") or "stage"


def _similarity(left: list[str], right: list[str]) -> list[float]:
    """Cosine similarity of answer pairs under cachesvc's embedding model (loaded once, in this process)."""
    import numpy as np

    from cachesvc.config import EmbeddingConfig
    from cachesvc.embedding.encoders import load_encoder

    encode, _ = load_encoder(EmbeddingConfig())
    a = np.asarray(encode(left), dtype=np.float64)
    b = np.asarray(encode(right), dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return [float(x) for x in (a * b).sum(axis=1) / np.maximum(norms, 1e-12)]

