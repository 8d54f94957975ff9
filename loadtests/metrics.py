"""The numbers of a load test, from the per-request records the load generator writes (one JSON object per line).

A record: ``id`` (the planned request's), ``worker``, ``scheduled_at`` (wall-clock seconds the request was due,
open loop only), ``sent_at`` (when it was sent), ``ttft_s`` (sent to the first content piece, streams),
``latency_s`` (sent to the end of the answer), ``gaps_s`` (seconds between consecutive content pieces),
``output_tokens`` (the usage block's, else the content pieces counted), ``status`` (0: no response), ``error``,
``stream``, ``headers`` (the response's ``x-cachesvc-*``), ``answer`` (its text, bounded), ``truth`` (the
workload's ground truth: ``intent``, ``category``, ``truth_key``, ``first_of_key``, ``trap_of``) and ``dual``
(``{"status", "answer"}`` of the same request sent straight to the upstream, for a sampled few).

Open loop counts from the due time: a request sent late adds its wait to its time to first token and its latency,
so a slow server cannot hide its queue by slowing the load generator down (no coordinated omission).
Percentiles interpolate linearly between order statistics (numpy's default), so the tests can compute them by hand.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 90, 99)
STAMP = re.compile(r"\[upstream call (\d+)\]")  # what the stand-in upstream writes into each answer it generates


@dataclass(frozen=True)
class Objectives:
    """Service-level objectives for goodput, in seconds; ``None`` leaves a metric unchecked."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    latency_s: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Objectives:
        """``"ttft:500,tpot:50,e2e:2000"`` in milliseconds (vLLM's ``--goodput`` spelling)."""
        if not text:
            return cls()
        names = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "latency_s", "e2el": "latency_s", "latency": "latency_s"}
        values: dict[str, float] = {}
        for part in text.split(","):
            key, _, number = part.partition(":")
            if key.strip() not in names:
                raise ValueError(f"unknown objective {key.strip()!r}; expected ttft, tpot or e2e (milliseconds)")
            try:
                ms = float(number)
            except ValueError:
                raise ValueError(f"objective {key.strip()!r} needs a number of milliseconds, not {number!r}") from None
            if not (ms > 0 and math.isfinite(ms)):
                raise ValueError(f"objective {key.strip()!r} must be a positive number of milliseconds")
            values[names[key.strip()]] = ms / 1000
        return cls(**values)

    def met(self, request: Timed) -> bool:
        """Whether a successful request met every objective that applies to it."""
        checks = ((self.ttft_s, request.ttft_s), (self.tpot_s, request.tpot_s), (self.latency_s, request.latency_s))
        return request.ok and all(limit is None or value is None or value <= limit for limit, value in checks)


@dataclass(frozen=True)
class Timed:
    """One record's timings, counted from when it was due (open loop) or sent (closed loop)."""

    start: float  # due time in open loop, else the send time (wall clock)
    wait_s: float
    ttft_s: float | None
    latency_s: float | None
    tpot_s: float | None
    gaps_s: tuple[float, ...]
    output_tokens: int
    ok: bool
    status: int
    outcome: str  # hit/exact, hit/semantic, hit/inflight, hit (no tier), miss, bypass, error, "-" (not a cache)
    category: str


def timed(record: Mapping[str, Any]) -> Timed:
    """The derived timings of one record."""
    sent = float(record["sent_at"])
    scheduled = record.get("scheduled_at")
    wait = max(0.0, sent - float(scheduled)) if scheduled is not None else 0.0
    ttft = record.get("ttft_s")
    latency = record.get("latency_s")
    tokens = int(record.get("output_tokens") or 0)
    ok = 200 <= int(record.get("status") or 0) < 300 and not record.get("error")
    tpot = None
    if ok and ttft is not None and latency is not None and tokens > 1:
        tpot = (float(latency) - float(ttft)) / (tokens - 1)
    return Timed(
        start=float(scheduled) if scheduled is not None else sent, wait_s=wait,
        ttft_s=wait + float(ttft) if ttft is not None and ok else None,
        latency_s=wait + float(latency) if latency is not None and ok else None,
        tpot_s=tpot, gaps_s=tuple(float(g) for g in record.get("gaps_s") or ()) if ok else (),
        output_tokens=tokens if ok else 0, ok=ok, status=int(record.get("status") or 0),
        outcome=outcome(record), category=category_of(record),
    )


def outcome(record: Mapping[str, Any]) -> str:
    """What the cache did, from cachesvc's headers (``-`` when the target sends none)."""
    if not 200 <= int(record.get("status") or 0) < 300 or record.get("error"):
        return "error"
    headers = record.get("headers") or {}
    result = headers.get("x-cachesvc-cache")
    if result is None:
        return "-"
    if result == "hit":
        tier = headers.get("x-cachesvc-tier")
        return f"hit/{tier}" if tier else "hit"
    return str(result)


def category_of(record: Mapping[str, Any]) -> str:
    """The workload's category when known, else the one the proxy assigned, else ``-``."""
    truth = record.get("truth") or {}
    return str(truth.get("category") or (record.get("headers") or {}).get("x-cachesvc-category") or "-")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile, linear between order statistics; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float]) -> dict[str, float]:
    """Count, mean and the report's percentiles of ``values``."""
    row = {"count": float(len(values)), "mean": sum(values) / len(values) if values else math.nan}
    row.update({f"p{q}": percentile(values, q) for q in PERCENTILES})
    return row


@dataclass
class Accuracy:
    """Ground-truth cache accuracy of one category."""

    requests: int = 0
    possible_hits: int = 0  # an earlier request had the same truth key: a correct cache could serve it
    hits: int = 0
    right: int = 0
    wrong: int = 0
    unverified: int = 0  # a hit whose source answer is not in the run (e.g. cached before it started)
    hits_on_possible: int = 0
    traps: int = 0
    traps_served: int = 0  # a look-alike answered from its original's entry
    wrong_ids: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        verified = self.right + self.wrong
        return self.right / verified if verified else math.nan

    @property
    def recall(self) -> float:
        return self.hits_on_possible / self.possible_hits if self.possible_hits else math.nan


def is_hit(record: Mapping[str, Any], seen_stamps: set[str]) -> bool:
    """A cache hit: cachesvc's header says so, or (any other cache) the answer carries an upstream call's stamp
    that an earlier answer already carried, so the upstream did not generate it for this request."""
    result = outcome(record)
    if result.startswith("hit"):
        return True
    if result != "-":
        return False
    stamp = STAMP.search(str(record.get("answer") or ""))
    return stamp is not None and stamp.group(1) in seen_stamps


def accuracy(records: Sequence[Mapping[str, Any]]) -> dict[str, Accuracy]:
    """Per category: possible hits, hits, and whether each hit was right, judged by ground truth.

    A hit's source is the generated answer with the same text (the upstream's stamp makes it unique when the
    target is the stand-in): right when that answer was generated for a request of the same truth key. Sources
    are gathered from the whole run first, so a hit that finished before its source (a request that waited on an
    identical one in flight) is still judged."""
    table: dict[str, Accuracy] = defaultdict(Accuracy)
    sources: dict[str, set[str]] = defaultdict(set)  # answer text -> truth keys it was generated for
    seen_stamps: set[str] = set()
    judged: list[tuple[Mapping[str, Any], bool]] = []
    for record in sorted(records, key=lambda r: float(r["sent_at"]) + float(r.get("latency_s") or 0.0)):
        truth = record.get("truth") or {}
        if not truth.get("truth_key") or outcome(record) == "error":
            continue
        hit = is_hit(record, seen_stamps)
        judged.append((record, hit))
        if not hit:
            answer = str(record.get("answer") or "")
            sources[answer].add(str(truth["truth_key"]))
            stamp = STAMP.search(answer)
            if stamp:
                seen_stamps.add(stamp.group(1))
    for record, hit in judged:
        truth = record["truth"]
        row = table[str(truth.get("category") or "-")]
        row.requests += 1
        possible = not truth.get("first_of_key", True)
        row.possible_hits += possible
        row.traps += truth.get("trap_of") is not None
        if not hit:
            continue
        row.hits += 1
        row.hits_on_possible += possible
        keys = sources.get(str(record.get("answer") or ""))
        if not keys:
            row.unverified += 1
        elif truth["truth_key"] in keys:
            row.right += 1
        else:
            row.wrong += 1
            row.traps_served += truth.get("trap_of") is not None
            if len(row.wrong_ids) < 20:
                row.wrong_ids.append(str(record.get("id")))
    return dict(table)


def dual_agreement(records: Iterable[Mapping[str, Any]],
                   similarity: Callable[[list[str], list[str]], list[float]] | None = None) -> dict[str, float]:
    """For sampled requests also sent straight to the upstream: how often the proxy's answer differs from the
    upstream's fresh one, for hits (the question dual-send answers) and for misses (the upstream's own
    variability: the floor a hit is compared against)."""
    pairs: dict[str, list[tuple[str, str]]] = {"hit": [], "miss": []}
    for record in records:
        dual = record.get("dual")
        if not dual or outcome(record) == "error" or not 200 <= int(dual.get("status") or 0) < 300:
            continue
        kind = "hit" if outcome(record).startswith("hit") else "miss"
        pairs[kind].append((_unstamped(str(record.get("answer") or "")), _unstamped(str(dual.get("answer") or ""))))
    out: dict[str, float] = {}
    for kind, rows in pairs.items():
        out[f"{kind}_pairs"] = float(len(rows))
        out[f"{kind}_exact_match"] = sum(a == b for a, b in rows) / len(rows) if rows else math.nan
        if similarity is not None and rows:
            scores = similarity([a for a, _ in rows], [b for _, b in rows])
            out[f"{kind}_similarity_mean"] = sum(scores) / len(scores)
            out[f"{kind}_similarity_p10"] = percentile(scores, 10)
    return out


def _unstamped(text: str) -> str:
    return STAMP.sub("", text).rstrip()


def break_even_hit_rate(lookup_s: float, upstream_s: float, hit_s: float) -> float:
    """The hit rate above which caching lowers the mean latency.

    Without the cache a request takes the upstream's time U; with it, a hit takes H and a miss pays the lookup L
    (embedding and search) on top of U: h H + (1 - h)(U + L) = U gives h = L / (U + L - H)."""
    denominator = upstream_s + lookup_s - hit_s
    if lookup_s <= 0:
        return 0.0
    return lookup_s / denominator if denominator > 0 else math.inf


@dataclass(frozen=True)
class Summary:
    """Everything the report shows, computed once from the records."""

    duration_s: float
    requests: int
    ok: int
    errors_by_status: dict[str, int]
    requests_per_s: float
    output_tokens_per_s: float
    goodput_per_s: float
    goodput_share: float
    latency: dict[str, dict[str, float]]
    outcomes: dict[str, int]
    by_category: dict[str, dict[str, float]]
    accuracy: dict[str, Accuracy]
    dual: dict[str, float]
    break_even: dict[str, dict[str, float]]
    series: dict[str, dict[str, list[float]]]


def summarise(records: Sequence[Mapping[str, Any]], *, objectives: Objectives | None = None,
              bucket_s: float | None = None,
              similarity: Callable[[list[str], list[str]], list[float]] | None = None) -> Summary:
    """The whole run's numbers: totals, percentiles, cache outcomes and accuracy, time series, break-even."""
    objectives = objectives or Objectives()
    rows = _with_stamp_hits(records, [timed(r) for r in records])
    if not rows:
        raise ValueError("no requests were recorded")
    start = min(t.start for t in rows)
    end = max(float(r["sent_at"]) + float(r.get("latency_s") or 0.0) for r in records)
    duration = max(end - start, 1e-9)
    ok = [t for t in rows if t.ok]
    errors = Counter("no response" if t.status == 0 else str(t.status) for t in rows if not t.ok)
    good = sum(objectives.met(t) for t in rows)
    latency = {
        "ttft_s": distribution([t.ttft_s for t in ok if t.ttft_s is not None]),
        "itl_s": distribution([g for t in ok for g in t.gaps_s]),
        "tpot_s": distribution([t.tpot_s for t in ok if t.tpot_s is not None]),
        "latency_s": distribution([t.latency_s for t in ok if t.latency_s is not None]),
        "wait_s": distribution([t.wait_s for t in rows]),
    }
    return Summary(
        duration_s=duration, requests=len(rows), ok=len(ok), errors_by_status=dict(errors),
        requests_per_s=len(ok) / duration, output_tokens_per_s=sum(t.output_tokens for t in ok) / duration,
        goodput_per_s=good / duration, goodput_share=good / len(rows), latency=latency,
        outcomes=dict(Counter(t.outcome for t in rows)), by_category=_by_category(rows),
        accuracy=accuracy(records), dual=dual_agreement(records, similarity),
        break_even=_break_even(rows, records), series=_series(rows, start, duration, bucket_s),
    )


def _with_stamp_hits(records: Sequence[Mapping[str, Any]], rows: list[Timed]) -> list[Timed]:
    """A target that sends no cache headers (outcome ``-``): its hits, found by the upstream's repeated stamps."""
    if not any(t.outcome == "-" for t in rows):
        return rows
    seen: set[str] = set()
    order = sorted(range(len(records)), key=lambda i: float(records[i]["sent_at"]) + float(
        records[i].get("latency_s") or 0.0))
    out = list(rows)
    for i in order:
        if out[i].outcome != "-":
            continue
        if is_hit(records[i], seen):
            out[i] = dataclasses.replace(out[i], outcome="hit")
        else:
            stamp = STAMP.search(str(records[i].get("answer") or ""))
            if stamp:
                seen.add(stamp.group(1))
    return out


def _by_category(rows: Sequence[Timed]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[Timed]] = defaultdict(list)
    for t in rows:
        groups[t.category].append(t)
    out = {}
    for name, members in sorted(groups.items()):
        served = [t for t in members if t.ok]
        hits = [t for t in served if t.outcome.startswith("hit")]
        out[name] = {
            "requests": float(len(members)), "hit_rate": len(hits) / len(served) if served else math.nan,
            "exact_hits": float(sum(t.outcome == "hit/exact" for t in served)),
            "semantic_hits": float(sum(t.outcome == "hit/semantic" for t in served)),
            "latency_p50_s": percentile([t.latency_s for t in served if t.latency_s is not None], 50),
        }
    return out


def _break_even(rows: Sequence[Timed], records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per category: the measured lookup cost on a miss (the proxy's time beyond the upstream's, from
    ``x-cachesvc-upstream-ms``), the upstream's time, a hit's time, and the break-even hit rate they give."""
    lookups: dict[str, list[float]] = defaultdict(list)
    upstream: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[float]] = defaultdict(list)
    for t, record in zip(rows, records, strict=True):
        if not t.ok or t.latency_s is None:
            continue
        own = t.latency_s - t.wait_s
        if t.outcome == "miss":
            header = (record.get("headers") or {}).get("x-cachesvc-upstream-ms")
            try:
                upstream_s = float(str(header)) / 1000
            except (TypeError, ValueError):
                continue
            lookups[t.category].append(max(0.0, own - upstream_s))
            upstream[t.category].append(upstream_s)
        elif t.outcome.startswith("hit"):
            hits[t.category].append(own)
    out = {}
    for name in sorted(set(lookups) | set(hits)):
        lookup, up, hit = (percentile(v.get(name, []), 50) for v in (lookups, upstream, hits))
        out[name] = {"lookup_s": lookup, "upstream_s": up, "hit_s": hit,
                     "break_even_hit_rate": break_even_hit_rate(lookup, up, hit)
                     if not any(math.isnan(x) for x in (lookup, up, hit)) else math.nan}
    return out


def _series(rows: Sequence[Timed], start: float, duration: float,
            bucket_s: float | None) -> dict[str, dict[str, list[float]]]:
    """Per time bucket (by due or send time): requests/s, output tokens/s, errors/s, latency and TTFT percentiles,
    and the hit rate overall and per category."""
    width = bucket_s or max(1.0, duration / 60)
    count = max(1, math.ceil(duration / width))
    buckets: list[list[Timed]] = [[] for _ in range(count)]
    for t in rows:
        buckets[min(count - 1, int((t.start - start) / width))].append(t)
    x = [(i + 0.5) * width for i in range(count)]

    def per(fn: Callable[[list[Timed]], float]) -> list[float]:
        return [fn(b) for b in buckets]

    def hit_rate(members: list[Timed]) -> float:
        served = [t for t in members if t.ok]
        return sum(t.outcome.startswith("hit") for t in served) / len(served) if served else math.nan

    series: dict[str, dict[str, list[float]]] = {
        "throughput": {"x": x, "requests/s": per(lambda b: sum(t.ok for t in b) / width),
                       "errors/s": per(lambda b: sum(not t.ok for t in b) / width),
                       "output tokens/s": per(lambda b: sum(t.output_tokens for t in b) / width)},
        "latency": {"x": x},
        "hit_rate": {"x": x, "all": per(hit_rate)},
    }
    for q in PERCENTILES:
        series["latency"][f"latency p{q}"] = [
            percentile([t.latency_s for t in b if t.latency_s is not None], q) for b in buckets]
        series["latency"][f"TTFT p{q}"] = [
            percentile([t.ttft_s for t in b if t.ttft_s is not None], q) for b in buckets]
    series["tiers"] = {"x": x}
    for tier in sorted({t.outcome for t in rows if t.outcome.startswith("hit")}):
        series["tiers"][tier] = [sum(t.outcome == tier for t in b) / max(1, sum(t.ok for t in b)) for b in buckets]
    for name in sorted({t.category for t in rows}):
        series["hit_rate"][name] = [hit_rate([t for t in b if t.category == name]) for b in buckets]
    return series
