"""The SGLang pager against a loopback stand-in that answers as SGLang does: round trips (endpoints at the root,
``{success, error_message, loaded_adapters}`` answers, ``base:adapter`` model names), every error kind, timeouts, an
unreachable server, the API key, bounded bodies and a restarted server."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cachesvc.upstreams.adapter_pager import MAX_MESSAGE_CHARS, PagerError, make_pager
from cachesvc.upstreams.sglang_pager import SglangPager
from tests.upstreams.lora_servers import (
    BASE_MODEL,
    BROKEN_PATH,
    CODE_PATH,
    EMPTY_PATH,
    HUGE_BODY_BYTES,
    LEGAL_PATH,
    MISSING_PATH,
    SglangServer,
    closed_port,
)

KEY = "sk-sglang-secret-9876543210"


@pytest.fixture
async def sglang() -> AsyncIterator[SglangServer]:
    server = await SglangServer().start()
    yield server
    await server.close()


@pytest.fixture
async def pager(sglang: SglangServer) -> AsyncIterator[SglangPager]:
    async with make_pager("sglang", sglang.url, timeout_s=5, load_timeout_s=5) as pager:
        assert isinstance(pager, SglangPager)
        yield pager


async def chat(server: SglangServer, model: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/chat/completions",
                             json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
            return r.status, await r.json()


async def failure(call: Any) -> PagerError:
    with pytest.raises(PagerError) as caught:
        await call
    return caught.value


async def test_load_list_use_unload(sglang: SglangServer, pager: SglangPager) -> None:
    assert await pager.loaded() == set() and pager.last_reported is None
    seconds = await pager.load("code", CODE_PATH)
    assert 0 <= seconds < 5
    assert ("load", {"lora_name": "code", "lora_path": CODE_PATH, "pinned": False}) in sglang.bodies
    assert pager.last_reported == {"code"}  # from the answer's loaded_adapters
    await pager.load("legal", LEGAL_PATH)
    assert sglang.adapters == {"code": CODE_PATH, "legal": LEGAL_PATH} and pager.last_reported == {"code", "legal"}
    assert await pager.loaded() == {"code", "legal"}  # from /v1/models: the served model's card has no parent

    model = pager.model_field(BASE_MODEL, "code")
    assert model == f"{BASE_MODEL}:code"
    status, answer = await chat(sglang, model)
    assert status == 200 and answer["model"] == model

    await pager.unload("code")
    assert pager.last_reported == {"legal"} and await pager.loaded() == {"legal"}
    status, error = await chat(sglang, model)
    assert status == 400 and error["message"].startswith("The following requested LoRA adapters are not loaded: code")
    # the root, not /v1, for the update routes; /v1/models for the listing
    assert sglang.calls == {"load": 2, "unload": 1, "models": 3, "chat": 2}


async def test_duplicate_name(pager: SglangPager) -> None:
    await pager.load("code", CODE_PATH)
    error = await failure(pager.load("code", LEGAL_PATH))
    assert (error.kind, error.status) == ("duplicate", 400)
    assert error.message == "Failed to load LoRA adapter code because it is already loaded"
    assert pager.last_reported == {"code"}


@pytest.mark.parametrize("path", [MISSING_PATH, EMPTY_PATH])
async def test_no_adapter_at_the_path_is_not_found(sglang: SglangServer, pager: SglangPager, path: str) -> None:
    error = await failure(pager.load("m", path))
    assert (error.kind, error.status) == ("not_found", 400)
    assert path in error.message and "m" not in sglang.adapters


async def test_refusals(pager: SglangPager) -> None:
    error = await failure(pager.load("big", BROKEN_PATH))
    assert (error.kind, error.status) == ("refused", 400) and "is incompatible with" in error.message


async def test_a_full_server_refuses() -> None:
    server = await SglangServer(max_loaded=1).start()
    try:
        async with make_pager("sglang", server.url) as pager:
            await pager.load("code", CODE_PATH)
            error = await failure(pager.load("legal", LEGAL_PATH))
            assert (error.kind, error.status) == ("refused", 400)
            assert "Maximum number of loaded LoRA adapters is 1" in error.message
    finally:
        await server.close()


async def test_lora_not_enabled_is_refused() -> None:
    server = await SglangServer(enable_lora=False).start()
    try:
        async with make_pager("sglang", server.url) as pager:
            for call in (pager.load("code", CODE_PATH), pager.unload("code")):
                error = await failure(call)
                assert (error.kind, error.status) == ("refused", 400) and "--enable-lora" in error.message
    finally:
        await server.close()


async def test_unload_of_an_unknown_name(pager: SglangPager) -> None:
    await pager.load("code", CODE_PATH)
    error = await failure(pager.unload("ghost"))
    assert (error.kind, error.status) == ("unknown_adapter", 400)
    assert error.message == "LoRA with name ghost does not exist. Loaded LoRAs: odict_keys(['code'])"


async def test_answers_that_are_not_sglangs(sglang: SglangServer, pager: SglangPager) -> None:
    sglang.faults.garbage.add("load")
    error = await failure(pager.load("code", CODE_PATH))
    assert (error.kind, error.status) == ("bad_response", 200)  # a 200 is not a success without {"success": true}
    sglang.faults.garbage.clear()
    async with make_pager("sglang", f"http://127.0.0.1:{sglang.port}/v1/extra") as misplaced:
        error = await failure(misplaced.load("code", CODE_PATH))  # /v1/extra/load_lora_adapter: no such route
        assert (error.kind, error.status, error.message) == ("refused", 404, "Not Found")


async def test_timeouts(sglang: SglangServer) -> None:
    sglang.faults.delay_s.update(load=10, unload=10, models=10)
    async with make_pager("sglang", sglang.url, timeout_s=0.2, load_timeout_s=0.3) as pager:
        started = time.perf_counter()
        error = await failure(pager.load("code", CODE_PATH))
        assert (error.kind, error.status) == ("timeout", None) and "0.3 s" in error.message
        assert (await failure(pager.unload("code"))).kind == "timeout"
        assert (await failure(pager.loaded())).kind == "timeout"
        assert time.perf_counter() - started < 3
    assert sglang.adapters == {}


async def test_unreachable_server() -> None:
    async with make_pager("sglang", f"http://127.0.0.1:{closed_port()}/v1", timeout_s=2) as pager:
        for call in (pager.load("code", CODE_PATH), pager.unload("code"), pager.loaded()):
            error = await failure(call)
            assert error.kind == "unreachable" and error.status is None


async def test_the_api_key_is_sent_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = await SglangServer(api_key=KEY).start()
    server.faults.echo_key = True
    try:
        async with make_pager("sglang", server.url, api_key=KEY) as pager:
            await pager.load("code", CODE_PATH)
            await pager.unload("code")
            assert await pager.loaded() == set()
        assert len(server.auth_seen) == 3 and set(server.auth_seen) == {f"Bearer {KEY}"}

        wrong = "sk-" + KEY[::-1]
        async with make_pager("sglang", server.url, api_key=wrong) as pager:
            errors = [await failure(pager.load("code", CODE_PATH)), await failure(pager.unload("code"))]
        for error in errors:
            assert (error.kind, error.status) == ("refused", 401) and "[redacted]" in error.message
            assert wrong not in str(error) and wrong not in repr(error)
        assert not [r for r in caplog.records if KEY in r.getMessage() or wrong in r.getMessage()]
    finally:
        await server.close()


async def test_huge_bodies_are_not_read(sglang: SglangServer, pager: SglangPager) -> None:
    sglang.faults.huge_body["load"] = 400
    error = await failure(pager.load("code", CODE_PATH))
    assert error.kind == "refused" and len(error.message) <= MAX_MESSAGE_CHARS
    await sglang.huge_done.wait()
    assert sglang.huge_bytes_sent < HUGE_BODY_BYTES // 8

    sglang.faults.huge_body = {"models": 200}
    sglang.huge_done.clear()
    sglang.huge_bytes_sent = 0
    assert (await failure(pager.loaded())).kind == "bad_response"
    await sglang.huge_done.wait()
    assert sglang.huge_bytes_sent < HUGE_BODY_BYTES // 8


async def test_a_restarted_server_lists_nothing(sglang: SglangServer, pager: SglangPager) -> None:
    await pager.load("code", CODE_PATH)
    sglang.restart()
    assert pager.last_reported == {"code"}  # what the last answer said: stale now, which is why loaded() lists
    assert await pager.loaded() == set()
    assert (await failure(pager.unload("code"))).kind == "unknown_adapter"
