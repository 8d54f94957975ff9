"""The load test's arithmetic against values computed by hand on a recorded run (timings rounded to round
numbers so that every expectation below can be checked on paper)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cachesvc.loadtests.metrics import (
    Objectives,
    accuracy,
    break_even_hit_rate,
    dual_agreement,
    percentile,
    summarise,
    timed,
)

RUN = [json.loads(line) for line in (Path(__file__).parent / "data" / "recorded_run.jsonl").read_text().splitlines()]


def test_percentiles_interpolate_between_order_statistics() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)  # rank 2.7: 3 + 0.7 * (4 - 3)
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == pytest.approx(3.97)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_a_late_send_counts_its_wait() -> None:
    late = timed(RUN[1])  # due at 1000.5, sent at 1000.7, answered 0.3 s later
    assert late.wait_s == pytest.approx(0.2)
    assert late.latency_s == pytest.approx(0.5)
    assert late.ttft_s is None and late.tpot_s is None
    closed = timed({**RUN[1], "scheduled_at": None})
    assert closed.wait_s == 0 and closed.latency_s == pytest.approx(0.3)


def test_summary_of_the_recorded_run() -> None:
    s = summarise(RUN, objectives=Objectives.parse("ttft:200,e2e:1000"), bucket_s=1.0)
    # From the first due time (1000.0) to the last answer's end (1002.5 + 1.5 = 1004.0).
    assert s.duration_s == pytest.approx(4.0)
    assert (s.requests, s.ok) == (6, 5)
    assert s.errors_by_status == {"429": 1}
    assert s.requests_per_s == pytest.approx(5 / 4)
    assert s.output_tokens_per_s == pytest.approx((4 + 6 + 2 + 6 + 3) / 4)
    # TTFT of the streams that succeeded: 0.1, 0.01, 0.5 -> p50 0.1; p90 at rank 1.8: 0.1 + 0.8 * 0.4.
    assert s.latency["ttft_s"]["p50"] == pytest.approx(0.1)
    assert s.latency["ttft_s"]["p90"] == pytest.approx(0.42)
    # TPOT = (latency - ttft) / (tokens - 1): r0 0.3 / 3 = 0.1, r2 0.01 / 1, r5 1.0 / 2 = 0.5.
    assert s.latency["tpot_s"]["count"] == 3 and s.latency["tpot_s"]["p50"] == pytest.approx(0.1)
    assert s.latency["tpot_s"]["mean"] == pytest.approx((0.1 + 0.01 + 0.5) / 3)
    # Inter-token gaps: 0.1 x 3, 0.01, 0.5 x 2 -> six values, median (0.1 + 0.1) / 2.
    assert s.latency["itl_s"]["count"] == 6 and s.latency["itl_s"]["p50"] == pytest.approx(0.1)
    # End-to-end: 0.4, 0.5 (with the 0.2 s wait), 0.02, 0.01, 1.5.
    assert s.latency["latency_s"]["p50"] == pytest.approx(0.4)
    assert s.latency["latency_s"]["mean"] == pytest.approx((0.4 + 0.5 + 0.02 + 0.01 + 1.5) / 5)
    # Goodput: TTFT <= 200 ms where there is one and e2e <= 1 s: r0, r1, r2, r3 (r5 fails both, r4 failed).
    assert s.goodput_share == pytest.approx(4 / 6) and s.goodput_per_s == pytest.approx(1.0)
    assert s.outcomes == {"miss": 3, "hit/semantic": 2, "error": 1}
    assert s.by_category["code"]["hit_rate"] == pytest.approx(0.5)
    assert s.by_category["conversation"]["hit_rate"] == 0.0
    # Per-second buckets by due time: [1000, 1001) holds r0 and r1 (ok), [1002, 1003) the 429 and r5.
    assert s.series["throughput"]["requests/s"][:3] == [2.0, 2.0, 1.0]
    assert s.series["throughput"]["errors/s"][:3] == [0.0, 0.0, 1.0]
    assert s.series["hit_rate"]["code"][:2] == [0.0, 1.0]
    assert s.series["tiers"]["hit/semantic"][:3] == [0.0, 1.0, 0.0]


def test_accuracy_judges_each_hit_by_the_answer_it_served() -> None:
    table = accuracy(RUN)
    code = table["code"]
    # r2 served r0's answer (same truth key): right. r3 asked i0 but got r1's answer (i1): wrong.
    assert (code.requests, code.possible_hits, code.hits, code.right, code.wrong) == (4, 2, 2, 1, 1)
    assert code.precision == 0.5 and code.recall == 1.0 and code.wrong_ids == ["r3"]
    conversation = table["conversation"]  # the 429 is not counted; r5 is a first ask, missed as it must be
    assert (conversation.requests, conversation.possible_hits, conversation.hits) == (1, 0, 0)
    assert math.isnan(conversation.recall)


def test_hits_of_a_cache_without_headers_are_found_by_the_upstreams_stamp() -> None:
    bare = [{**r, "headers": {}} for r in RUN]
    code = accuracy(bare)["code"]
    assert (code.hits, code.right, code.wrong) == (2, 1, 1)


def test_a_hit_whose_source_is_not_in_the_run_is_unverified() -> None:
    code = accuracy(RUN[2:3])["code"]
    assert (code.hits, code.unverified, code.right, code.wrong) == (1, 1, 0, 0)
    assert math.isnan(code.precision)


def test_dual_send_compares_answers_without_the_upstreams_stamp() -> None:
    records = [
        {**RUN[2], "dual": {"status": 200, "answer": "Stub answer to: reverse a list [upstream call 9]"}},
        {**RUN[3], "dual": {"status": 200, "answer": "Stub answer to: reverse a list [upstream call 10]"}},
        {**RUN[0], "dual": {"status": 200, "answer": "Stub answer to: reverse a list [upstream call 11]"}},
        {**RUN[1], "dual": {"status": 500, "answer": ""}},
    ]
    out = dual_agreement(records, similarity=lambda a, b: [1.0 if x == y else 0.25 for x, y in zip(a, b)])
    assert out["hit_pairs"] == 2 and out["hit_exact_match"] == 0.5
    assert out["hit_similarity_mean"] == pytest.approx(0.625)
    assert out["miss_pairs"] == 1 and out["miss_exact_match"] == 1.0


def test_break_even_hit_rate() -> None:
    # L = 10 ms lookup, U = 1 s upstream, H = 1 ms hit: h = 0.01 / (1 + 0.01 - 0.001).
    assert break_even_hit_rate(0.01, 1.0, 0.001) == pytest.approx(0.01 / 1.009)
    assert break_even_hit_rate(0.0, 1.0, 0.001) == 0.0
    assert break_even_hit_rate(0.5, 0.1, 0.7) == math.inf  # a hit slower than a miss never pays
    s = summarise(RUN)
    # code misses: lookups 0.4 - 0.38 = 0.02 and 0.3 - 0.29 = 0.01 -> median 0.015; upstream median 0.335;
    # hits 0.02 and 0.01 -> 0.015.
    code = s.break_even["code"]
    assert code["lookup_s"] == pytest.approx(0.015) and code["upstream_s"] == pytest.approx(0.335)
    assert code["break_even_hit_rate"] == pytest.approx(0.015 / (0.335 + 0.015 - 0.015))


@pytest.mark.parametrize("text", ["ttft", "ttft:-1", "speed:10", "ttft:abc"])
def test_bad_objectives_name_the_problem(text: str) -> None:
    with pytest.raises(ValueError, match="objective"):
        Objectives.parse(text)


def test_no_records_is_an_error() -> None:
    with pytest.raises(ValueError, match="no requests"):
        summarise([])


def test_a_hit_that_finished_before_its_source_is_still_judged() -> None:
    # r2 waited on an identical request in flight and was answered a moment before the leader's record closed.
    leader = {**RUN[0], "latency_s": 1.5}
    follower = {**RUN[2], "sent_at": 1000.1, "scheduled_at": 1000.1, "latency_s": 1.3,
                "headers": {"x-cachesvc-cache": "hit", "x-cachesvc-tier": "inflight"}}
    code = accuracy([leader, follower])["code"]
    assert (code.hits, code.right, code.unverified) == (1, 1, 0)


def test_outcomes_of_a_target_without_headers_come_from_the_stamps() -> None:
    bare = [{**r, "headers": {}} for r in RUN]
    s = summarise(bare)
    assert s.outcomes == {"-": 3, "hit": 2, "error": 1}
    assert s.by_category["code"]["hit_rate"] == pytest.approx(0.5)
