"""Which tenant a request belongs to: answers are never shared across tenants. One function decides it, for the
completions path and for admin invalidation alike.

A client's key counts however the client presents it: ``Authorization`` with any scheme in any case
(``Bearer X`` and ``bearer X`` are one tenant), Azure's ``api-key`` or Anthropic-style ``x-api-key``. Only a hash of
the key is kept. Requests with no key at all share the anonymous tenant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

ANONYMOUS = "anonymous"
KEY_HEADERS = ("api-key", "x-api-key")  # besides Authorization, in this order
_PREFIXES = ("tenant:", "key:", ANONYMOUS)


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: the credentials of ``Authorization`` (after its scheme), else ``api-key``, else
    ``x-api-key``; None when there is none."""
    auth = headers.get("Authorization", "").strip()
    if auth:
        scheme, _, credentials = auth.partition(" ")
        if credentials.strip():
            return credentials.strip()
        if scheme.lower() != "bearer":  # a bare key, sent without a scheme
            return scheme
    for name in KEY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return value
    return None


def tenant_of(headers: Mapping[str, str], tenant_header: str | None = None) -> str:
    """The trusted tenant header when configured, else a hash of the client's key, else anonymous."""
    if tenant_header and headers.get(tenant_header):
        return "tenant:" + headers[tenant_header]
    key = api_key_of(headers)
    return ANONYMOUS if key is None else tenant_of_api_key(key)


def tenant_of_api_key(api_key: str) -> str:
    """The tenant of a client that sends ``api_key`` (any of the ways ``api_key_of`` reads)."""
    digest = hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).hexdigest()
    return "key:" + digest[:32]


def tenant_named(name: str) -> str:
    """A tenant as an operator or a trusted gateway names it: an id as ``tenant_of`` returns it, or a name."""
    return name if name.startswith(_PREFIXES) else "tenant:" + name
