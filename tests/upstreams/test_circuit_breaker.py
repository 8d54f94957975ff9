"""The circuit breaker's states on a fake clock: opens after N failures in a row, one probe after open_s."""

from __future__ import annotations

from cachesvc.upstreams.circuit_breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 3, open_s: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(failures, open_s, clock=clock), clock


def test_opens_after_failures_in_a_row_only() -> None:
    b, _ = breaker(3)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    b.record_success()  # a success in between resets the count
    for _ in range(2):
        b.record_failure()
    assert b.state == "closed" and b.allow() and b.consecutive_failures == 2
    b.record_failure()
    assert b.state == "open"
    assert not b.allow() and not b.ready()


def test_open_fails_fast_until_open_s_then_lets_one_probe_through() -> None:
    b, clock = breaker(1, open_s=10.0)
    b.record_failure()
    assert b.retry_after_s() == 10.0
    clock.now += 9.5
    assert not b.allow() and b.retry_after_s() == 0.5
    clock.now += 0.5
    assert b.ready() and b.state == "open"  # asking does not take the probe
    assert b.allow() and b.state == "half_open"  # this one is the probe
    assert not b.allow() and not b.ready()  # one probe at a time
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_a_failed_probe_opens_it_again_for_another_open_s() -> None:
    b, clock = breaker(2, open_s=5.0)
    b.record_failure()
    b.record_failure()
    clock.now += 5.0
    assert b.allow()
    b.record_failure()
    assert b.state == "open" and b.retry_after_s() == 5.0
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow() and b.state == "half_open"


def test_a_probe_without_verdict_lets_the_next_one_through() -> None:
    b, clock = breaker(1, open_s=1.0)
    b.record_failure()
    clock.now += 1.0
    assert b.allow() and not b.allow()
    b.release()  # the probe was cancelled
    assert b.state == "half_open" and b.allow()


def test_release_while_closed_changes_nothing() -> None:
    b, _ = breaker(2)
    b.record_failure()
    b.release()
    assert b.state == "closed" and b.consecutive_failures == 1


def test_zero_failures_is_no_breaker() -> None:
    b, _ = breaker(0)
    for _ in range(100):
        b.record_failure()
    assert b.state == "closed" and b.allow()
