"""The soak run's own arithmetic (the run itself is long and outside the suite): quantiles from a Prometheus
histogram, a counter summed by label, which answers count as acknowledged, unhealthy periods, memory per
process."""

from __future__ import annotations

from cachesvc.loadtests.soak_replicas import (
    _healthy_throughout,
    _memory,
    counter_by_label,
    histogram_quantiles,
    unhealthy_periods,
)

PAGE = """# HELP cachesvc_feed_propagation_seconds x
cachesvc_feed_propagation_seconds_bucket{le="0.001"} 10.0
cachesvc_feed_propagation_seconds_bucket{le="0.005"} 90.0
cachesvc_feed_propagation_seconds_bucket{le="0.01"} 99.0
cachesvc_feed_propagation_seconds_bucket{le="+Inf"} 100.0
cachesvc_feed_propagation_seconds_count 100.0
"""


def test_quantiles_are_the_upper_bounds_of_the_buckets_reaching_them() -> None:
    q = histogram_quantiles(PAGE, "cachesvc_feed_propagation_seconds", (0.05, 0.5, 0.99, 1.0))
    assert q == {0.05: 0.001, 0.5: 0.005, 0.99: 0.01, 1.0: float("inf")}
    assert histogram_quantiles("", "cachesvc_feed_propagation_seconds", (0.5,)) == {0.5: None}


def test_an_answer_counts_as_acknowledged_only_if_its_replica_was_healthy_around_it() -> None:
    timeline = [(t / 4, "a", True) for t in range(40)] + [(t / 4, "b", t < 20) for t in range(40)]
    assert _healthy_throughout(timeline, {"t": 2.0, "s": 0.1, "replica": "a"})
    assert not _healthy_throughout(timeline, {"t": 4.6, "s": 0.1, "replica": "b"}), "b went down 1 s after"
    assert not _healthy_throughout(timeline, {"t": 9.8, "s": 0.1, "replica": "a"}), "no sample after it"


def test_memory_is_reported_per_process() -> None:
    samples = [(float(t), 100.0 + t, 1) for t in range(0, 120, 10)] + [(130.0, 90.0, 2), (140.0, 95.0, 2)]
    first, second = _memory(samples)
    assert first == {"from_s": 0.0, "to_s": 110.0, "after_warmup": 160.0, "peak": 210.0, "end": 210.0}
    assert second["from_s"] == 130.0 and second["peak"] == 95.0


def test_a_counter_is_summed_by_one_label() -> None:
    page = """# TYPE cachesvc_cache_evictions_total counter
cachesvc_cache_evictions_total{category="code",reason="quota"} 3.0
cachesvc_cache_evictions_total{category="default",reason="quota"} 4.0
cachesvc_cache_evictions_total{category="code",reason="replica"} 2.0
cachesvc_cache_evictions_created{category="code",reason="quota"} 1.7e9
"""
    assert counter_by_label(page, "cachesvc_cache_evictions_total", "reason") == {"quota": 7.0, "replica": 2.0}
    assert counter_by_label("", "cachesvc_cache_evictions_total", "reason") == {}


def test_unhealthy_periods_per_replica() -> None:
    oks = [True, False, False, True, True, False, False]
    timeline = [(float(t), "a", ok) for t, ok in enumerate(oks)] + [(float(t), "b", True) for t in range(7)]
    assert unhealthy_periods(timeline, "a") == [(1.0, 3.0), (5.0, 6.0)]  # the last one still open at the end
    assert unhealthy_periods(timeline, "b") == []
