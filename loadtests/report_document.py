"""A run's numbers as the report's document: titled tables and charts (``report.py`` renders any such document)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cachesvc.loadtests.metrics import PERCENTILES, Summary, Timed, timed


def _ms(seconds: float) -> float | None:
    return None if seconds is None or math.isnan(seconds) else round(seconds * 1000, 2)


def _share(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def stage_tables(summary: Summary) -> list[dict[str, Any]]:
    """Throughput, latency percentiles, errors, cache outcomes, accuracy, dual-send and break-even tables."""
    tables: list[dict[str, Any]] = [{
        "title": "Throughput",
        "columns": ["duration s", "requests", "succeeded", "requests/s", "output tokens/s", "goodput/s",
                    "goodput share"],
        "rows": [[round(summary.duration_s, 2), summary.requests, summary.ok, round(summary.requests_per_s, 3),
                  round(summary.output_tokens_per_s, 2), round(summary.goodput_per_s, 3),
                  _share(summary.goodput_share)]],
        "note": "Goodput counts the requests that met every objective given with --slo.",
    }, {
        "title": "Latency (ms)",
        "columns": ["metric", "count", "mean", *[f"p{q}" for q in PERCENTILES]],
        "rows": [[name, int(row["count"]), _ms(row["mean"]), *[_ms(row[f"p{q}"]) for q in PERCENTILES]]
                 for name, row in (("time to first token", summary.latency["ttft_s"]),
                                   ("inter-token latency", summary.latency["itl_s"]),
                                   ("time per output token", summary.latency["tpot_s"]),
                                   ("end-to-end latency", summary.latency["latency_s"]),
                                   ("wait before sending (open loop)", summary.latency["wait_s"]))],
        "note": "Open loop counts from each request's due time, so a late send adds its wait (no coordinated "
                "omission). Time to first token is for streamed requests.",
    }]
    if summary.errors_by_status:
        tables.append({"title": "Errors by status", "columns": ["status", "requests"],
                       "rows": [[k, v] for k, v in sorted(summary.errors_by_status.items())]})
    tables.append({"title": "Cache outcomes", "columns": ["outcome", "requests", "share"],
                   "rows": [[k, v, _share(v / summary.requests)] for k, v in sorted(summary.outcomes.items())],
                   "note": "From the x-cachesvc-cache and x-cachesvc-tier headers; '-' means the target sent none."})
    tables.append({"title": "By category", "columns": ["category", "requests", "hit rate", "exact hits",
                                                       "semantic hits", "latency p50 ms"],
                   "rows": [[k, int(v["requests"]), _share(v["hit_rate"]), int(v["exact_hits"]),
                             int(v["semantic_hits"]), _ms(v["latency_p50_s"])]
                            for k, v in summary.by_category.items()]})
    if summary.accuracy:
        rows = []
        for name, a in sorted(summary.accuracy.items()):
            rows.append([name, a.requests, a.possible_hits, a.hits, a.right, a.wrong, a.unverified,
                         _share(a.precision), _share(a.recall), f"{a.traps_served} / {a.traps}"])
        total = _total_accuracy(summary)
        rows.append(["all", *total])
        tables.append({
            "title": "Cache accuracy against ground truth",
            "columns": ["category", "requests", "possible hits", "hits", "right", "wrong", "unverified", "precision",
                        "recall", "look-alikes served / asked"],
            "rows": rows,
            "note": "A possible hit is a request whose intent (same tenant, model and conversation) was asked "
                    "before. A hit is right when the answer it served was generated for the same intent.",
        })
    if summary.dual.get("hit_pairs") or summary.dual.get("miss_pairs"):
        d = summary.dual
        tables.append({
            "title": "Dual-send: answers through the target against the upstream's fresh ones",
            "columns": ["answers", "pairs", "identical", "mean embedding similarity", "p10 similarity"],
            "rows": [[kind, int(d.get(f"{kind}_pairs", 0)), _share(d.get(f"{kind}_exact_match", math.nan)),
                      _share(d.get(f"{kind}_similarity_mean", math.nan)),
                      _share(d.get(f"{kind}_similarity_p10", math.nan))] for kind in ("hit", "miss")],
            "note": "Misses show how much the upstream's own answers vary; a hit is suspect when it differs more.",
        })
    if summary.break_even:
        tables.append({
            "title": "Break-even hit rate",
            "columns": ["category", "lookup on a miss ms", "upstream ms", "hit ms", "break-even hit rate"],
            "rows": [[k, _ms(v["lookup_s"]), _ms(v["upstream_s"]), _ms(v["hit_s"]),
                      _share(v["break_even_hit_rate"])] for k, v in summary.break_even.items()],
            "note": "Caching lowers the mean latency above h = L / (U + L - H): L the lookup (embedding and "
                    "search) a miss pays, U the upstream's time, H a hit's time, all measured in this run.",
        })
    return tables


def _total_accuracy(summary: Summary) -> list[Any]:
    rows = list(summary.accuracy.values())
    right, wrong = sum(a.right for a in rows), sum(a.wrong for a in rows)
    possible, on_possible = sum(a.possible_hits for a in rows), sum(a.hits_on_possible for a in rows)
    return [sum(a.requests for a in rows), possible, sum(a.hits for a in rows), right, wrong,
            sum(a.unverified for a in rows), _share(right / (right + wrong)) if right + wrong else None,
            _share(on_possible / possible) if possible else None,
            f"{sum(a.traps_served for a in rows)} / {sum(a.traps for a in rows)}"]


def stage_charts(summary: Summary, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Throughput, latency percentiles and hit rate over time; TTFT, ITL and latency distributions."""
    series = summary.series

    def lines(name: str) -> dict[str, dict[str, list[float]]]:
        x = series[name]["x"]
        return {k: {"x": x, "y": v} for k, v in series[name].items() if k != "x"}

    rows: list[Timed] = [timed(r) for r in records]
    ok = [t for t in rows if t.ok]
    charts: list[dict[str, Any]] = [
        {"title": "Throughput over time", "kind": "line", "x_label": "seconds", "y_label": "per second",
         "series": lines("throughput")},
        {"title": "Latency percentiles over time", "kind": "line", "x_label": "seconds", "y_label": "seconds",
         "log_y": True, "series": lines("latency")},
        {"title": "Hit rate over time, by category", "kind": "line", "x_label": "seconds", "y_label": "hit rate",
         "series": lines("hit_rate")},
        {"title": "Hits by tier over time", "kind": "line", "x_label": "seconds", "y_label": "share of answers",
         "series": lines("tiers")},
        {"title": "Time to first token and end-to-end latency", "kind": "distribution", "x_label": "seconds",
         "y_label": "requests", "log_x": True,
         "series": {"time to first token": [t.ttft_s for t in ok if t.ttft_s is not None],
                    "end-to-end": [t.latency_s for t in ok if t.latency_s is not None]}},
        {"title": "Inter-token latency", "kind": "distribution", "x_label": "seconds", "y_label": "gaps",
         "log_x": True, "series": {"inter-token latency": [g for t in ok for g in t.gaps_s if g > 0]}},
    ]
    if summary.errors_by_status:
        charts.append({"title": "Errors by status", "kind": "bar", "x_label": "status", "y_label": "requests",
                       "series": {"errors": {k: float(v) for k, v in summary.errors_by_status.items()}}})
    return charts


def sweep_table(stages: Sequence[tuple[str, float, Summary, str]]) -> dict[str, Any]:
    """One row per sweep stage: the offered load, what was achieved, latency, and the saturation verdict."""
    return {
        "title": "Sweep",
        "columns": ["stage", "offered", "requests/s", "output tokens/s", "TTFT p50 ms", "latency p50 ms",
                    "latency p99 ms", "errors", "verdict"],
        "rows": [[name, offered, round(s.requests_per_s, 3), round(s.output_tokens_per_s, 2),
                  _ms(s.latency["ttft_s"]["p50"]), _ms(s.latency["latency_s"]["p50"]),
                  _ms(s.latency["latency_s"]["p99"]), s.requests - s.ok, verdict]
                 for name, offered, s, verdict in stages],
    }


def sweep_charts(stages: Sequence[tuple[str, float, Summary, str]], *, open_loop: bool) -> list[dict[str, Any]]:
    """Throughput and latency against the offered load (requests/s in open loop, users in closed loop)."""
    x = [offered for _, offered, _, _ in stages]
    label = "offered requests/s" if open_loop else "concurrent users"
    throughput = {"achieved": {"x": x, "y": [s.requests_per_s for _, _, s, _ in stages]}}
    if open_loop:
        throughput["offered"] = {"x": x, "y": x}
    return [
        {"title": "Achieved throughput against offered load", "kind": "line", "x_label": label,
         "y_label": "requests/s", "series": throughput},
        {"title": "Latency against offered load", "kind": "line", "x_label": label, "y_label": "seconds",
         "log_y": True, "series": {f"p{q}": {"x": x, "y": [s.latency["latency_s"][f"p{q}"] for _, _, s, _ in stages]}
                                   for q in PERCENTILES}},
    ]
