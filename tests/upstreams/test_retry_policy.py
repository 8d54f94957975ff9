"""The retry policy: full-jitter backoff within its cap, Retry-After honoured up to its cap and the budget."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from cachesvc.config import UpstreamRetryConfig, config_from_dict
from cachesvc.upstreams.retry_policy import RetryPolicy, parse_retry_after


def policy(draw: float = 0.5, **settings: object) -> RetryPolicy:
    return RetryPolicy(UpstreamRetryConfig(**settings), random=lambda: draw)  # type: ignore[arg-type]


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999999])
def test_backoff_is_full_jitter_under_a_doubling_ceiling_and_the_cap(draw: float) -> None:
    retry = policy(draw, backoff_base_s=0.1, backoff_cap_s=0.5, retries=10)
    ceilings = [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    for n, ceiling in enumerate(ceilings):
        assert retry.backoff_s(n) == pytest.approx(draw * ceiling)
    assert retry.backoff_s(10_000) == pytest.approx(draw * 0.5)  # no overflow far out


def test_jitter_spreads_the_waits() -> None:
    rng = random.Random(7)
    retry = RetryPolicy(UpstreamRetryConfig(backoff_base_s=1.0, backoff_cap_s=1.0), random=rng.random)
    waits = [retry.backoff_s(0) for _ in range(200)]
    assert all(0 <= w < 1.0 for w in waits)
    assert min(waits) < 0.1 and max(waits) > 0.9  # the whole range, not a fixed delay


def test_no_retry_past_the_count() -> None:
    retry = policy(retries=2)
    assert retry.delay_s(0, None, 0.0) is not None
    assert retry.delay_s(1, None, 0.0) is not None
    assert retry.delay_s(2, None, 0.0) is None
    assert policy(retries=0).delay_s(0, None, 0.0) is None


def test_retry_after_is_waited_for_exactly() -> None:
    retry = policy(draw=0.9, max_retry_after_s=30.0)
    assert retry.delay_s(0, 0.2, 0.0) == 0.2
    assert retry.delay_s(0, 0.0, 0.0) == 0.0
    assert retry.delay_s(1, 30.0, 0.0) == 30.0


def test_retry_after_past_the_cap_or_the_budget_is_no_retry() -> None:
    retry = policy(max_retry_after_s=5.0, budget_s=10.0)
    assert retry.delay_s(0, 5.01, 0.0) is None  # past the cap: pass the 429 on
    assert retry.delay_s(0, 4.0, 6.5) is None  # would end past the budget
    assert retry.delay_s(0, 4.0, 5.9) == 4.0
    assert policy(draw=0.99, backoff_base_s=2.0, backoff_cap_s=2.0, budget_s=1.0).delay_s(0, None, 0.0) is None


def test_statuses_retried_and_non_idempotent_calls() -> None:
    retry = policy()
    assert [s for s in (200, 400, 404, 429, 500, 502, 503, 504) if retry.retries_status(s)] == [429, 502, 503, 504]
    assert [s for s in (429, 502, 503, 504) if retry.retries_status(s, idempotent=False)] == [429]
    assert policy(statuses=[500]).retries_status(500) and not policy(statuses=[500]).retries_status(503)


@pytest.mark.parametrize(("header", "seconds"), [
    ("0", 0.0), ("3", 3.0), (" 120 ", 120.0), ("0.2", 0.2),
    (None, None), ("", None), ("soon", None), ("-1", None), ("nan", None), ("inf", None),
])
def test_parse_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_date() -> None:
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2025, 3, 1, 12, 0, 7, tzinfo=UTC), usegmt=True)  # "Sat, 01 Mar 2025 ... GMT"
    assert parse_retry_after(later, now=now) == pytest.approx(7.0)
    assert parse_retry_after("Sat, 01 Mar 2025 11:59:00 GMT", now=now) == 0.0  # in the past: go now
    assert parse_retry_after("Sat, 01 Mar 2025 12:00:05 -0000", now=now) == pytest.approx(5.0)  # no zone: GMT
    assert parse_retry_after("Sat, 99 Foo 2025 12:00:05 GMT", now=now) is None


@pytest.mark.parametrize(("settings", "named"), [
    ({"retry": {"retries": -1}}, "upstreams[0].retry.retries"),
    ({"retry": {"backoff_base_s": 0}}, "upstreams[0].retry.backoff_base_s"),
    ({"retry": {"backoff_base_s": 1.0, "backoff_cap_s": 0.5}}, "upstreams[0].retry.backoff_cap_s"),
    ({"retry": {"max_retry_after_s": -1}}, "upstreams[0].retry.max_retry_after_s"),
    ({"retry": {"budget_s": 0}}, "upstreams[0].retry.budget_s"),
    ({"retry": {"statuses": [429, 404]}}, "upstreams[0].retry.statuses[1]"),
    ({"retry": {"statuses": ["soon"]}}, "upstreams[0].retry.statuses[0]"),
    ({"retry": {"jitter": "full"}}, "upstreams[0].retry.jitter"),
    ({"breaker": {"failures": -1}}, "upstreams[0].breaker.failures"),
    ({"breaker": {"open_s": 0}}, "upstreams[0].breaker.open_s"),
])
def test_bad_settings_are_refused_naming_the_key(settings: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        config_from_dict({"upstreams": [{"url": "http://127.0.0.1:9/v1", **settings}]})


def test_defaults() -> None:
    upstream = config_from_dict({"upstreams": [{"url": "http://127.0.0.1:9/v1"}]}).upstreams[0]
    assert (upstream.retry.retries, upstream.retry.statuses, upstream.retry.connect_errors,
            upstream.retry.unanswered) == (2, [429, 502, 503, 504], True, False)
    assert (upstream.breaker.failures, upstream.breaker.open_s) == (5, 10.0)
