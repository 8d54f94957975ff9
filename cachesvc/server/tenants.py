"""Which tenant a request belongs to: answers are never shared across tenants. One function decides it, for the
completions path and for admin invalidation alike."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

ANONYMOUS = "anonymous"
_PREFIXES = ("tenant:", "key:", ANONYMOUS)


def tenant_of(headers: Mapping[str, str], tenant_header: str | None = None) -> str:
    """The trusted tenant header when configured, else a hash of the client's credentials, else anonymous."""
    if tenant_header and headers.get(tenant_header):
        return "tenant:" + headers[tenant_header]
    auth = headers.get("Authorization")
    if auth:
        return "key:" + hashlib.sha256(auth.encode()).hexdigest()[:32]
    return ANONYMOUS


def tenant_of_api_key(api_key: str) -> str:
    """The tenant of a client that sends ``api_key`` the way the OpenAI SDKs do."""
    return tenant_of({"Authorization": f"Bearer {api_key}"})


def tenant_named(name: str) -> str:
    """A tenant as an operator names it: an id as ``tenant_of`` returns it, or a tenant header's value."""
    return name if name.startswith(_PREFIXES) else "tenant:" + name
