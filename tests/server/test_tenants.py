"""One function decides a request's tenant, however the client presents its key; admin names tenants the same way."""

from __future__ import annotations

import pytest

from cachesvc.server.tenants import ANONYMOUS, api_key_of, tenant_named, tenant_of, tenant_of_api_key


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer sk-a"}, {"Authorization": "bearer sk-a"}, {"Authorization": "BEARER  sk-a "},
    {"Authorization": "sk-a"}, {"api-key": "sk-a"}, {"x-api-key": "sk-a"}, {"x-api-key": " sk-a", "api-key": ""},
])
def test_every_way_of_sending_a_key_is_the_same_tenant(headers: dict[str, str]) -> None:
    assert api_key_of(headers) == "sk-a"
    assert tenant_of(headers) == tenant_of_api_key("sk-a")


def test_credentials_decide_the_tenant_and_never_appear_in_it() -> None:
    a, b = tenant_of({"Authorization": "Bearer sk-a"}), tenant_of({"api-key": "sk-b"})
    assert a != b and a.startswith("key:") and "sk-a" not in a
    for no_key in ({}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer  "},
                   {"api-key": "  "}):
        assert tenant_of(no_key) == ANONYMOUS, no_key
    assert tenant_of({"Authorization": "Bearer sk-a", "x-api-key": "sk-b"}) == a  # Authorization first


def test_undecodable_key_bytes_still_give_a_tenant() -> None:
    """aiohttp decodes header bytes as UTF-8 with surrogateescape: such a key hashes, it does not raise."""
    odd = b"\xff\xfe-key".decode("utf-8", "surrogateescape")
    assert tenant_of({"Authorization": f"Bearer {odd}"}).startswith("key:")
    assert tenant_of({"Authorization": f"Bearer {odd}"}) != tenant_of({"Authorization": "Bearer -key"})


def test_a_configured_tenant_header_wins_only_when_configured() -> None:
    headers = {"Authorization": "Bearer sk-a", "x-team": "blue"}
    assert tenant_of(headers, "x-team") == "tenant:blue" == tenant_named("blue")
    assert tenant_of(headers) == tenant_of({"Authorization": "Bearer sk-a"})
    assert tenant_of({"Authorization": "Bearer sk-a"}, "x-team") == tenant_of_api_key("sk-a")
    assert tenant_of({"x-team": "key:abc"}, "x-team") == "tenant:key:abc"  # a header never names a key's tenant


def test_admin_names_pass_through_when_already_ids() -> None:
    key = tenant_of_api_key("sk-a")
    assert tenant_named(key) == key and tenant_named(ANONYMOUS) == ANONYMOUS
