"""One function decides a request's tenant; admin invalidation names tenants the same way."""

from __future__ import annotations

from cachesvc.server.tenants import ANONYMOUS, tenant_named, tenant_of, tenant_of_api_key


def test_credentials_decide_the_tenant_and_never_appear_in_it() -> None:
    a, b = tenant_of({"Authorization": "Bearer sk-a"}), tenant_of({"Authorization": "Bearer sk-b"})
    assert a != b and a.startswith("key:") and "sk-a" not in a
    assert tenant_of({}) == ANONYMOUS
    assert tenant_of_api_key("sk-a") == a


def test_a_configured_tenant_header_wins_only_when_configured() -> None:
    headers = {"Authorization": "Bearer sk-a", "x-team": "blue"}
    assert tenant_of(headers, "x-team") == "tenant:blue" == tenant_named("blue")
    assert tenant_of(headers) == tenant_of({"Authorization": "Bearer sk-a"})
    assert tenant_of({"Authorization": "Bearer sk-a"}, "x-team") == tenant_of_api_key("sk-a")


def test_admin_names_pass_through_when_already_ids() -> None:
    key = tenant_of_api_key("sk-a")
    assert tenant_named(key) == key and tenant_named(ANONYMOUS) == ANONYMOUS
