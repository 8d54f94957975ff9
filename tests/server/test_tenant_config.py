"""tenants: in the config (errors name the key) and the resolver built from it: keys by SHA-256 or environment
variable, the trusted header honoured only from trusted sources, limits and entry quotas per tenant."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
from multidict import CIMultiDict

from cachesvc.config import config_from_dict
from cachesvc.metrics import Metrics
from cachesvc.server.tenants import ANONYMOUS, TenantLimits, TenantResolver, tenant_of_api_key

SHA_A = hashlib.sha256(b"sk-team-a").hexdigest()
SHA_B = hashlib.sha256(b"sk-team-b").hexdigest()


def tenants(raw: dict[str, Any], environ: dict[str, str] | None = None, metrics: Metrics | None = None,
            **server: Any) -> TenantResolver:
    config = config_from_dict({"tenants": raw, **({"server": server} if server else {})})
    return TenantResolver(config.tenants, metrics, environ=environ or {})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("raw", "message"), [
    ({"entries": [{"name": "a"}, {"name": "b"}, {"name": "c", "api_key_sha256": ["sk-plain-key"]}]},
     "tenants.entries[2].api_key_sha256[0] must be 64 hex digits"),
    ({"entries": [{"name": "a", "api_key_sha256": ["g" * 64]}]}, "tenants.entries[0].api_key_sha256[0]"),
    ({"entries": [{"api_key_sha256": [SHA_A]}]}, "tenants.entries[0].name must be"),
    ({"entries": [{"name": "a b"}]}, "tenants.entries[0].name must be"),
    ({"entries": [{"name": "a"}, {"name": "a"}]}, "tenants.entries: names must be unique"),
    ({"entries": [{"name": "a", "api_key_sha256": [SHA_A]}, {"name": "b", "api_key_sha256": [SHA_A.upper()]}]},
     "tenants.entries[1].api_key_sha256[0] is already a key of tenant 'a'"),
    ({"entries": [{"name": "a", "api_key_env": ["BAD NAME"]}]}, "tenants.entries[0].api_key_env[0]"),
    ({"entries": [{"name": "a", "requests_per_s": 0}]}, "tenants.entries[0].requests_per_s must be > 0"),
    ({"entries": [{"name": "a", "tokens_per_min": -5}]}, "tenants.entries[0].tokens_per_min must be > 0"),
    ({"entries": [{"name": "a", "max_entries": 1.5}]}, "tenants.entries[0].max_entries must be a number (int)"),
    ({"entries": [{"name": "a", "api_key": "sk-plain"}]}, "tenants.entries[0].api_key: unknown key"),
    ({"default": {"burst": 3}}, "tenants.default.burst needs tenants.default.requests_per_s"),
    ({"default": {"name": "x"}}, "tenants.default.name: unknown key"),
    ({"trusted_header": "x-team", "trusted_sources": ["10.0.0.0/33"]}, "tenants.trusted_sources[0] must be"),
    ({"trusted_header": "x-team", "trusted_sources": []}, "tenants.trusted_sources must list at least one"),
    ({"trusted_header": "Authorization"}, "tenants.trusted_header must not be a header that carries API keys"),
    ({"trusted_header": "x team"}, "tenants.trusted_header must be a header name"),
    ({"require_known_key": "yes"}, "tenants.require_known_key must be true or false"),
    ({"limiter_timeout_s": 0}, "tenants.limiter_timeout_s must be > 0"),
])
def test_config_errors_name_the_bad_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        config_from_dict({"tenants": raw})
    assert message in str(caught.value)
    assert "sk-plain" not in str(caught.value)  # a key pasted where its hash belongs is not echoed


def test_defaults_change_nothing() -> None:
    resolver = TenantResolver()
    assert resolver.resolve(bearer("sk-x"), "127.0.0.1").id == tenant_of_api_key("sk-x")
    assert resolver.resolve({}, None).id == ANONYMOUS
    assert resolver.resolve({"x-team": "blue"}, "127.0.0.1").id == ANONYMOUS  # no trusted header configured
    assert not resolver.resolve(bearer("sk-x"), None).limits.rate_limited
    assert resolver.max_entries("key:abc") is None


def test_keys_by_sha256_and_by_environment_variable_map_to_their_tenant() -> None:
    resolver = tenants({"entries": [
        {"name": "team-a", "api_key_sha256": [SHA_A.upper()], "requests_per_s": 5, "max_entries": 100},
        {"name": "team-b", "api_key_env": ["TEAM_B_KEY", "TEAM_B_OLD_KEY"], "tokens_per_min": 1000},
    ], "default": {"requests_per_s": 1, "max_entries": 10}},
        environ={"TEAM_B_KEY": "sk-team-b", "TEAM_B_OLD_KEY": " sk-team-b-old\n"})
    a = resolver.resolve({"api-key": "sk-team-a"}, "192.0.2.1")
    assert (a.id, a.label, a.known) == ("tenant:team-a", "team-a", True)
    assert a.limits == TenantLimits(max_entries=100, requests_per_s=5.0, burst=5, tokens_per_min=None)
    for key in ("sk-team-b", "sk-team-b-old"):
        b = resolver.resolve(bearer(key), None)
        assert (b.id, b.label, b.limits.tokens_per_min, b.limits.requests_per_s) == ("tenant:team-b", "team-b",
                                                                                      1000, None)
    other = resolver.resolve(bearer("sk-someone"), None)
    assert (other.id, other.label, other.known) == (tenant_of_api_key("sk-someone"), "other", False)
    assert other.limits == TenantLimits(max_entries=10, requests_per_s=1.0, burst=1)
    assert resolver.of_api_key("sk-team-b") == "tenant:team-b"  # admin invalidation by key finds the tenant
    assert resolver.of_api_key("sk-someone") == tenant_of_api_key("sk-someone")
    assert resolver.max_entries("tenant:team-a") == 100
    assert resolver.max_entries("tenant:team-b") is None  # listed without a quota: no quota of its own
    assert resolver.max_entries(other.id) == resolver.max_entries(ANONYMOUS) == 10
    assert resolver.max_entries("tenant:not-listed") == 10


@pytest.mark.parametrize(("environ", "problem"), [({}, "is not set"), ({"TEAM_KEY": "  "}, "is empty")])
def test_a_key_variable_missing_at_start_up_is_an_error_naming_it(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=rf"tenants\.entries\[0\]\.api_key_env\[0\]: environment variable "
                                         rf"TEAM_KEY {problem}"):
        tenants({"entries": [{"name": "t", "api_key_env": ["TEAM_KEY"]}]}, environ=environ)


def test_one_key_in_two_tenants_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"tenants\.entries\[1\]\.api_key_env\[0\].*already a key of tenant 'a'"):
        tenants({"entries": [{"name": "a", "api_key_sha256": [SHA_A]}, {"name": "b", "api_key_env": ["K"]}]},
                environ={"K": "sk-team-a"})


def test_trusted_header_is_honoured_only_from_trusted_sources(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    resolver = tenants({"trusted_header": "X-Team", "trusted_sources": ["127.0.0.1", "10.1.0.0/16", "::1"],
                        "entries": [{"name": "blue", "requests_per_s": 3}], "default": {"requests_per_s": 1}},
                       metrics=metrics)
    headers = CIMultiDict({**bearer("sk-x"), "x-team": "blue"})  # as aiohttp holds them: any case
    for peer in ("127.0.0.1", "10.1.200.3", "::1", "::ffff:127.0.0.1"):
        tenant = resolver.resolve(headers, peer)
        assert (tenant.id, tenant.label, tenant.limits.requests_per_s, tenant.known) == ("tenant:blue", "blue", 3,
                                                                                         True), peer
    green = resolver.resolve(CIMultiDict({"X-TEAM": "green"}), "127.0.0.1")  # not listed: the default limits
    assert (green.id, green.label, green.limits.requests_per_s, green.known) == ("tenant:green", "other", 1, True)
    with caplog.at_level(logging.WARNING, logger="cachesvc.server.tenants"):
        for peer in ("192.0.2.7", "192.0.2.7", "10.2.0.1", None, "not-an-address"):
            assert resolver.resolve(headers, peer).id == tenant_of_api_key("sk-x"), peer  # as if absent
        assert resolver.resolve(CIMultiDict({"x-team": "blue"}), "192.0.2.7").id == ANONYMOUS
    warned = [r.getMessage() for r in caplog.records]
    assert sum("192.0.2.7" in m for m in warned) == 1  # once per peer
    assert all("X-Team" in m and "sk-x" not in m for m in warned)
    assert "cachesvc_tenant_header_ignored_total 6.0" in metrics.render().decode()


def test_server_tenant_header_is_a_deprecated_alias_trusted_from_loopback() -> None:
    resolver = tenants({}, tenant_header="x-team")
    assert resolver.resolve({"x-team": "blue"}, "127.0.0.1").id == "tenant:blue"
    assert resolver.resolve({"x-team": "blue"}, "192.0.2.1").id == ANONYMOUS
    config = config_from_dict({"server": {"tenant_header": "x-team"}, "tenants": {"trusted_header": "x-team"}})
    assert config.tenants.trusted_header == "x-team"
    with pytest.raises(ValueError, match="server.tenant_header is a deprecated alias of tenants.trusted_header"):
        config_from_dict({"server": {"tenant_header": "x-team"}, "tenants": {"trusted_header": "x-org"}})


def test_burst_defaults_to_one_seconds_worth() -> None:
    resolver = tenants({"entries": [{"name": "slow", "api_key_sha256": [SHA_A], "requests_per_s": 0.2},
                                    {"name": "fast", "api_key_sha256": [SHA_B], "requests_per_s": 7.5, "burst": 2}]})
    assert resolver.resolve(bearer("sk-team-a"), None).limits.burst == 1
    assert resolver.resolve(bearer("sk-team-b"), None).limits.burst == 2
