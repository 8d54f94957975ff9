"""Keys never reach logs, metrics or the store: the redaction filter on its own, then the proxy in-process with a
stand-in upstream, driven through hits, misses, streams, an upstream error, an unhandled error whose traceback
carries the outgoing headers, and admin calls, with its SQLite store or a password-protected Redis; every log line,
/metrics and every byte the store holds are searched for the client's key, the upstream's key, the admin key and
the Redis password."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from cachesvc.server.log_redaction import REDACTED, RedactingFilter, Redactor, configured_secrets, redaction_for
from cachesvc.server.request_log import install_logging
from cachesvc.server.upstream_relay import UpstreamRelay
from tests.conftest import Proxy, Stub, proxy_config, start_proxy
from tests.redis_server import RedisServer, run_server

CLIENT_KEY = "client-secret-Lm42xq"
CLIENT_SK_KEY = "sk-proj-clientKey8812abc"
UPSTREAM_KEY = "upstream-secret-Zq81wp"
ADMIN_KEY = "admin-secret-Hx3kk"
REDIS_PASSWORD = "redis-pass-Vb77"
SECRETS = (CLIENT_KEY, CLIENT_SK_KEY, UPSTREAM_KEY, ADMIN_KEY, REDIS_PASSWORD)


def test_the_redactor_scrubs_tokens_keys_url_passwords_and_configured_secrets() -> None:
    redactor = Redactor([UPSTREAM_KEY, "abc"])  # too short to scrub verbatim
    text = redactor.scrub(f"Authorization: Bearer {CLIENT_KEY}, bearer\t{CLIENT_KEY}; Basic dXNlcjpwYXNz "
                          f"key={CLIENT_SK_KEY} up={UPSTREAM_KEY} redis://user:{REDIS_PASSWORD}@h:6379/0 abc")
    for secret in (CLIENT_KEY, CLIENT_SK_KEY, UPSTREAM_KEY, REDIS_PASSWORD, "dXNlcjpwYXNz"):
        assert secret not in text
    assert f"Bearer {REDACTED}" in text and f"redis://user:{REDACTED}@h:6379/0" in text and text.endswith("abc")


def test_the_filter_scrubs_arguments_extras_and_tracebacks() -> None:
    scrub = RedactingFilter(Redactor([UPSTREAM_KEY]))
    try:
        raise RuntimeError(f"headers {{'Authorization': 'Bearer {UPSTREAM_KEY}'}}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("cachesvc", logging.ERROR, __file__, 1, "sent %s to %s", (UPSTREAM_KEY, "x"), exc_info)
    record.header = f"Bearer {CLIENT_KEY}"
    assert scrub.filter(record)
    assert record.getMessage() == f"sent {REDACTED} to x"
    assert CLIENT_KEY not in record.header and UPSTREAM_KEY not in (record.exc_text or "")
    assert "RuntimeError" in (record.exc_text or "")
    bad = logging.LogRecord("cachesvc", logging.INFO, __file__, 1, "%d items", (UPSTREAM_KEY,), None)
    assert scrub.filter(bad) and UPSTREAM_KEY not in bad.getMessage()  # arguments that do not fit the format


def test_the_configured_secrets_include_env_named_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REDIS_PASSWORD", REDIS_PASSWORD)
    monkeypatch.setenv("TEST_TENANT_KEY", "tenant-key-7f3a")
    config = proxy_config("http://127.0.0.1:9/v1", **{
        "upstreams": [{"url": "http://127.0.0.1:9/v1", "api_key": UPSTREAM_KEY}],
        "server.admin_key": ADMIN_KEY,
        "tenants.entries": [{"name": "team-a", "api_key_env": ["TEST_TENANT_KEY"]}],
        "cache.store": {"kind": "redis", "url": "redis://u:url-pass-1%40x@127.0.0.1:6379/0",
                        "password_env": "TEST_REDIS_PASSWORD"}})
    assert {UPSTREAM_KEY, ADMIN_KEY, REDIS_PASSWORD, "url-pass-1@x", "url-pass-1%40x",
            "tenant-key-7f3a"} <= configured_secrets(config)


@pytest.fixture
def all_logs() -> Iterator[io.StringIO]:
    """Everything logged anywhere, as `cachesvc serve` writes it (JSON, debug); installed per test below."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    buffer = io.StringIO()
    yield buffer
    root.handlers[:] = saved
    root.setLevel(level)


async def drive(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> str:
    """Requests down every path that could leak a key; the text of /metrics."""
    url = f"{proxy.base_url}/chat/completions"
    client = {"Authorization": f"Bearer {CLIENT_KEY}"}

    def body(text: str, stream: bool = False) -> dict[str, Any]:
        return {"model": "stub-model", "messages": [{"role": "user", "content": text}], "stream": stream}

    async with aiohttp.ClientSession() as session:
        for headers, payload, status in (
            (client, body("what is the boiling point of water"), 200),  # miss, stored
            (client, body("what is the boiling point of water"), 200),  # hit
            (client, body("name three primary colours", stream=True), 200),  # a stream, stored
            ({"api-key": CLIENT_SK_KEY}, body("how far away is the moon"), 200),
            ({**client, "x-stub-fail": "500"}, body("an upstream failure"), 500),
            ({**client, "x-stub-fail": "401"}, body("an upstream refusal"), 401),
        ):
            async with session.post(url, json=payload, headers=headers) as response:
                assert response.status == status, await response.text()
                await response.read()
        for headers in ({"x-admin-key": ADMIN_KEY}, {"Authorization": f"Bearer {ADMIN_KEY}"},
                        {"x-admin-key": "wrong-" + ADMIN_KEY}):
            async with session.get(f"{proxy.root}/admin/stats", headers=headers) as response:
                await response.read()

        async def leaky(self: UpstreamRelay, ctx: Any, *args: Any, **kwargs: Any) -> Any:
            # A library error that quotes the request it failed on: the outgoing headers, with the upstream's key.
            raise RuntimeError(f"failed sending {ctx.upstream.headers_for(ctx.http.headers)}")

        monkeypatch.setattr(UpstreamRelay, "forward", leaky)
        async with session.post(url, json=body("this one breaks inside"), headers=client) as response:
            assert response.status == 500
        async with session.get(f"{proxy.root}/metrics") as response:
            return await response.text()


def assert_nowhere(what: str, text: str | bytes) -> None:
    for secret in SECRETS:
        needle: Any = secret.encode() if isinstance(text, bytes) else secret
        assert needle not in text, f"{secret!r} found in {what}"


async def start(config: Any, encode: Callable[[list[str]], np.ndarray], logs: io.StringIO) -> Proxy:
    install_logging("debug", "json", redaction_for(config), stream=logs)
    return await start_proxy(config, encode)


async def test_no_key_in_logs_metrics_or_the_sqlite_store(
        stub: Stub, encode: Callable[[list[str]], np.ndarray], tmp_path: Path, all_logs: io.StringIO,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = proxy_config(stub.url, **{
        "upstreams": [{"url": stub.url, "api_key": UPSTREAM_KEY}], "server.admin_key": ADMIN_KEY,
        "cache.store": {"kind": "sqlite", "path": str(tmp_path / "store" / "cache.sqlite3")}})
    proxy = await start(config, encode, all_logs)
    try:
        metrics = await drive(proxy, monkeypatch)
        assert len(proxy.services.cache) >= 3
    finally:
        await proxy.server.close()  # the store is closed: everything it wrote is on disk
    assert any(h.get("Authorization") == f"Bearer {UPSTREAM_KEY}" for h in stub.stats.headers)  # it did go out
    logs = all_logs.getvalue()
    assert "failed sending" in logs and '"status":500' in logs  # the leaky error and the upstream error were logged
    assert_nowhere("the logs", logs)
    assert_nowhere("/metrics", metrics)
    files = list((tmp_path / "store").iterdir())
    assert files
    for path in files:
        assert_nowhere(str(path), path.read_bytes())


def redis_values(url: str) -> Iterator[tuple[bytes, bytes]]:
    """Every key of the server, with every value it holds (whatever its type), as raw bytes."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                parts: list[Any] = [client.get(key)]
            elif kind == "hash":
                parts = [item for pair in client.hgetall(key).items() for item in pair]
            elif kind == "set":
                parts = list(client.smembers(key))
            elif kind == "zset":
                parts = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "list":
                parts = client.lrange(key, 0, -1)
            elif kind == "stream":
                parts = [item for _, fields in client.xrange(key) for pair in fields.items() for item in pair]
            else:
                raise AssertionError(f"unexpected Redis type {kind} at {key!r}")
            yield key, b"\0".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)
    finally:
        client.close()


async def test_no_key_in_logs_metrics_or_the_redis_store(
        stub: Stub, encode: Callable[[list[str]], np.ndarray], tmp_path: Path, all_logs: io.StringIO,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for server in run_server(tmp_path / "redis", password=REDIS_PASSWORD):
        await check_redis(server, stub, encode, all_logs, monkeypatch)


async def check_redis(server: RedisServer, stub: Stub, encode: Callable[[list[str]], np.ndarray],
                      all_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    config = proxy_config(stub.url, **{
        "upstreams": [{"url": stub.url, "api_key": UPSTREAM_KEY}], "server.admin_key": ADMIN_KEY,
        "cache.store": {"kind": "redis", "url": server.url}})
    proxy = await start(config, encode, all_logs)
    try:
        metrics = await drive(proxy, monkeypatch)
        assert len(proxy.services.cache) >= 3
    finally:
        await proxy.server.close()
    assert_nowhere("the logs", all_logs.getvalue())
    assert_nowhere("/metrics", metrics)
    values = list(redis_values(server.url))
    assert len(values) >= 3
    for key, value in values:
        assert_nowhere("a Redis key", key)
        assert_nowhere(f"the Redis value at {key!r}", value)
