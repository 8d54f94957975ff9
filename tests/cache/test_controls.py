from __future__ import annotations

import pytest

from cachesvc.cache.controls import CacheControls, parse_controls
from cachesvc.openai.errors import RequestError
from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES


def controls(headers: dict[str, str] | None = None, **options: object) -> CacheControls:
    body = {"cachesvc": options} if options else {}
    return parse_controls(headers or {}, body, DEFAULT_CATEGORIES)


def test_defaults_read_and_write() -> None:
    c = controls()
    assert c.may_read and c.may_write and c.max_age_s is None


def test_cache_control_directives() -> None:
    c = controls({"Cache-Control": "no-cache, max-age=30"})
    assert not c.may_read and c.may_write and c.max_age_s == 30
    c = controls({"Cache-Control": "No-Store"})
    assert not c.may_read and not c.may_write
    assert controls({"Cache-Control": "max-age=0"}).max_age_s == 0


def test_body_options_and_header_precedence() -> None:
    c = controls({"x-cachesvc-ttl": "60"}, ttl=5, namespace="ns", category="code", sampled=True, no_cache=True)
    assert (c.ttl_s, c.namespace, c.category, c.sampled, c.no_cache) == (60, "ns", "code", True, True)


@pytest.mark.parametrize(("headers", "options"), [
    ({"Cache-Control": "max-age=-1"}, {}),
    ({"x-cachesvc-ttl": "abc"}, {}),
    ({}, {"ttl": 0}),
    ({}, {"no_store": "yes"}),
    ({}, {"namespace": "x" * 65}),
    ({}, {"category": "weather"}),
    ({"x-cachesvc-sampled": "perhaps"}, {}),
])
def test_malformed_controls_are_refused(headers: dict[str, str], options: dict[str, object]) -> None:
    with pytest.raises(RequestError) as info:
        controls(headers, **options)
    assert info.value.status == 400


def test_seconds_are_plain_finite_decimals() -> None:
    for header in ({"x-cachesvc-ttl": "inf"}, {"x-cachesvc-ttl": "nan"}, {"x-cachesvc-ttl": "1_000"},
                   {"x-cachesvc-ttl": "\u0663"}, {"Cache-Control": "max-age=1e309"}, {"x-cachesvc-ttl": "-5"}):
        with pytest.raises(RequestError) as refused:
            parse_controls(header, {}, DEFAULT_CATEGORIES)
        assert refused.value.status == 400, header
    for option in ({"ttl": float("inf")}, {"max_age": float("nan")}):
        with pytest.raises(RequestError):
            parse_controls({}, {"cachesvc": option}, DEFAULT_CATEGORIES)
    assert parse_controls({"x-cachesvc-ttl": " 1.5 "}, {}, DEFAULT_CATEGORIES).ttl_s == 1.5
    assert parse_controls({"Cache-Control": 'max-age="30"'}, {}, DEFAULT_CATEGORIES).max_age_s == 30
