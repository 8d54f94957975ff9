"""A bounded schemathesis run against the proxy's own OpenAPI description (GET /openapi.json).

The proxy runs on loopback in front of the stand-in upstream, on an event loop of its own in a background thread
(schemathesis sends its requests synchronously, with requests). Every operation of the document is exercised with
valid and invalid data; each response must not be a server error and must conform to the document (status code,
content type, headers and body)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES
from cachesvc.server.openapi import build_openapi
from tests.conftest import Proxy, Stub, proxy_config, start_proxy, start_stub
from tests.hostile.conftest import Tally

CASE = "13. Every endpoint of /openapi.json under schemathesis: no 5xx, responses as documented"

ADMIN_KEY = "admin-secret"  # what tests.conftest.proxy_config sets
# Per operation and generation mode: the whole file takes about 15 s on 2 cores. CACHESVC_SCHEMATHESIS_EXAMPLES=500
# for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("CACHESVC_SCHEMATHESIS_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


class BackgroundProxy:
    """The stand-in upstream and the proxy in front of it, served from an event loop in a thread of their own."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray]) -> None:
        self._encode = encode
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy-under-test", daemon=True)
        self.stub: Stub | None = None
        self.proxy: Proxy | None = None

    def __enter__(self) -> BackgroundProxy:
        self._thread.start()
        self.stub, self.proxy = self._run(self._start(), timeout_s=60)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run(self._close(), timeout_s=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def root(self) -> str:
        assert self.proxy is not None
        return self.proxy.root

    def _run(self, coroutine: Any, *, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=timeout_s)

    async def _start(self) -> tuple[Stub, Proxy]:
        stub = await start_stub()
        return stub, await start_proxy(proxy_config(stub.url), self._encode)

    async def _close(self) -> None:
        if self.proxy is not None:
            await self.proxy.server.close()
        if self.stub is not None:
            await self.stub.server.close()


@pytest.fixture(scope="module")
def served(encode: Callable[[list[str]], np.ndarray]) -> Iterator[BackgroundProxy]:
    with BackgroundProxy(encode) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(served: BackgroundProxy) -> Any:
    schema = schemathesis.openapi.from_url(f"{served.root}/openapi.json")
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])  # no stateful phase: no links
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    if os.environ.get("CI"):  # the same cases on every CI run, as hypothesis's own "ci" profile does
        schema.config.seed = 0
    return schema


def test_the_document_is_valid_openapi_and_served(served: BackgroundProxy) -> None:
    response = requests.get(f"{served.root}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    validate(document)  # openapi-spec-validator: raises on an invalid OpenAPI 3.1 document
    schemathesis.openapi.from_dict(document).validate()  # and schemathesis's own check of it
    assert document == build_openapi(DEFAULT_CATEGORIES, version=document["info"]["version"])
    paths = document["paths"]
    for path, method in [("/v1/chat/completions", "post"), ("/v1/completions", "post"), ("/v1/models", "get"),
                         ("/v1/{path}", "get"), ("/v1/{path}", "post"), ("/healthz", "get"), ("/metrics", "get"),
                         ("/admin/stats", "get"), ("/admin/invalidate", "post"), ("/openapi.json", "get"),
                         ("/v1/feedback", "post")]:
        assert method in paths[path], (method, path)
    chat = paths["/v1/chat/completions"]["post"]
    headers = {p["$ref"].rsplit("/", 1)[-1] for p in chat["parameters"]}
    assert headers == {"CacheControl", "CacheTtl", "CacheNamespace", "CacheCategory", "CacheSampled"}
    assert "x-cachesvc-cache" in chat["responses"]["200"]["headers"]
    assert set(document["components"]["schemas"]["CacheOptions"]["properties"]) == {
        "no_cache", "no_store", "max_age", "ttl", "namespace", "category", "sampled"}


def test_the_document_names_the_configured_categories() -> None:
    document = build_openapi(["default", "legal"])
    validate(document)
    options = document["components"]["schemas"]["CacheOptions"]["properties"]
    assert options["category"]["enum"] == ["default", "legal"]
    assert document["components"]["parameters"]["CacheCategory"]["schema"]["enum"] == ["default", "legal"]


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case: Any, served: BackgroundProxy, tally: Tally) -> None:
    tally.inputs += 1
    headers = {"x-admin-key": ADMIN_KEY} if case.path.startswith("/admin") else None
    model = case.body.get("model") if isinstance(case.body, dict) else None
    if isinstance(model, str) and model.strip() and len(model) % 4:
        # Most valid model names become one the stand-in serves, so answers (and hits) get checked, not only the
        # upstream's 404 for a model it does not know.
        case.body["model"] = "stub-model"
    case.call_and_validate(base_url=served.root, headers=headers, checks=CHECKS, timeout=30)
