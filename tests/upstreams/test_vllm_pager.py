"""The vLLM pager against a loopback stand-in that answers as vLLM does: round trips, every error kind, timeouts,
an unreachable server, the API key, bounded bodies and a restarted server."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cachesvc.upstreams.adapter_pager import (
    MAX_MESSAGE_CHARS,
    PAGERS,
    AdapterPager,
    HttpPager,
    PagerError,
    make_pager,
    server_root,
)
from cachesvc.upstreams.sglang_pager import SglangPager
from cachesvc.upstreams.vllm_pager import VllmPager
from tests.upstreams.lora_servers import (
    BASE_MODEL,
    BROKEN_PATH,
    CODE_PATH,
    HUGE_BODY_BYTES,
    LEGAL_PATH,
    MISSING_PATH,
    VllmServer,
    closed_port,
)

KEY = "sk-vllm-secret-0123456789"


@pytest.fixture
async def vllm() -> AsyncIterator[VllmServer]:
    server = await VllmServer().start()
    yield server
    await server.close()


@pytest.fixture
async def pager(vllm: VllmServer) -> AsyncIterator[HttpPager]:
    async with make_pager("vllm", vllm.url, timeout_s=5, load_timeout_s=5) as pager:
        yield pager


async def chat(server: VllmServer, model: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/chat/completions",
                             json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
            return r.status, await r.json()


async def failure(call: Any) -> PagerError:
    with pytest.raises(PagerError) as caught:
        await call
    return caught.value


def test_registry_and_factory() -> None:
    assert PAGERS == {"vllm": VllmPager, "cachesvc": VllmPager, "sglang": SglangPager}
    ours = make_pager("cachesvc", "http://127.0.0.1:9/v1")
    assert isinstance(ours, VllmPager) and ours.kind == "cachesvc" and isinstance(ours, AdapterPager)
    assert make_pager("vllm", "http://127.0.0.1:9/v1").kind == "vllm"
    with pytest.raises(ValueError, match="'lorax'"):
        make_pager("lorax", "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError):
        VllmPager("http://127.0.0.1:9/v1", kind="sglang")
    with pytest.raises(ValueError):
        make_pager("vllm", "unix:///tmp/socket")


def test_server_root_drops_the_v1_suffix() -> None:
    assert str(server_root("http://h:8000/v1")) == "http://h:8000/"
    assert str(server_root("http://h:8000/v1/")) == "http://h:8000/"
    assert str(server_root("http://h:8000")) == "http://h:8000/"
    assert str(server_root("https://gw.example/vllm/v1?x=1")) == "https://gw.example/vllm"
    assert str(server_root("http://h/v10")) == "http://h/v10"


async def test_load_list_use_unload(vllm: VllmServer, pager: HttpPager) -> None:
    assert await pager.loaded() == set()
    seconds = await pager.load("code", CODE_PATH)
    assert 0 <= seconds < 5
    await pager.load("legal", LEGAL_PATH)
    assert vllm.adapters == {"code": CODE_PATH, "legal": LEGAL_PATH}
    assert ("load", {"lora_name": "code", "lora_path": CODE_PATH}) in vllm.bodies
    assert await pager.loaded() == {"code", "legal"}  # the base model's card (parent null) is not an adapter

    model = pager.model_field(BASE_MODEL, "code")
    assert model == "code"
    status, answer = await chat(vllm, model)
    assert status == 200 and answer["model"] == "code"

    await pager.unload("code")
    assert await pager.loaded() == {"legal"}
    status, error = await chat(vllm, "code")
    assert status == 404 and error["error"]["param"] == "model" and error["error"]["code"] == 404
    assert vllm.calls == {"load": 2, "unload": 1, "models": 3, "chat": 2}


async def test_duplicate_name(pager: HttpPager) -> None:
    await pager.load("code", CODE_PATH)
    error = await failure(pager.load("code", LEGAL_PATH))
    assert error.kind == "duplicate" and error.status == 400
    assert error.message.startswith("The lora adapter 'code' has already been loaded.")
    assert error.operation == "load" and error.adapter == "code"


async def test_missing_path_is_not_found(vllm: VllmServer, pager: HttpPager) -> None:
    error = await failure(pager.load("m", MISSING_PATH))
    assert (error.kind, error.status) == ("not_found", 404)
    assert error.message == f"Loading lora m failed: No adapter found for {MISSING_PATH}"
    assert "m" not in vllm.adapters


@pytest.mark.parametrize("status", [500, 400])  # vLLM now, vLLM up to 2025
async def test_a_load_the_engine_refuses(status: int) -> None:
    server = await VllmServer(failed_load_status=status).start()
    try:
        async with make_pager("vllm", server.url) as pager:
            error = await failure(pager.load("big", BROKEN_PATH))
            assert (error.kind, error.status) == ("refused", status)
            assert "greater than max_lora_rank" in error.message
            missing = await failure(pager.load("", CODE_PATH))
            assert (missing.kind, missing.status) == ("refused", 400)
            assert missing.message == "Both 'lora_name' and 'lora_path' must be provided."
            assert await pager.loaded() == set()
    finally:
        await server.close()


async def test_unload_of_an_unknown_name(pager: HttpPager) -> None:
    error = await failure(pager.unload("ghost"))
    assert (error.kind, error.status) == ("unknown_adapter", 404)
    assert error.message == "The lora adapter 'ghost' cannot be found."


async def test_runtime_updates_off_is_refused_not_not_found() -> None:
    """Without VLLM_ALLOW_RUNTIME_LORA_UPDATING the routes do not exist: FastAPI's 404 is not a missing adapter."""
    server = await VllmServer(runtime_updates=False).start()
    try:
        async with make_pager("vllm", server.url) as pager:
            load = await failure(pager.load("code", CODE_PATH))
            unload = await failure(pager.unload("code"))
            assert (load.kind, load.status, load.message) == ("refused", 404, "Not Found")
            assert (unload.kind, unload.status) == ("refused", 404)
    finally:
        await server.close()


async def test_load_timeout_and_list_timeout_are_separate(vllm: VllmServer) -> None:
    vllm.faults.delay_s["load"] = 0.4
    async with make_pager("vllm", vllm.url, timeout_s=0.1, load_timeout_s=3) as pager:
        seconds = await pager.load("code", CODE_PATH)  # a slow load within its own bound
        assert 0.4 <= seconds < 3
    vllm.faults.delay_s.update(load=10, models=10, unload=10)
    async with make_pager("vllm", vllm.url, timeout_s=0.2, load_timeout_s=0.3) as pager:
        started = time.perf_counter()
        error = await failure(pager.load("legal", LEGAL_PATH))
        assert error.kind == "timeout" and error.status is None and "0.3 s" in error.message
        assert (await failure(pager.loaded())).kind == "timeout"
        assert (await failure(pager.unload("code"))).kind == "timeout"
        assert time.perf_counter() - started < 3


async def test_unreachable_server() -> None:
    async with make_pager("vllm", f"http://127.0.0.1:{closed_port()}/v1", timeout_s=2) as pager:
        for call in (pager.load("code", CODE_PATH), pager.unload("code"), pager.loaded()):
            error = await failure(call)
            assert error.kind == "unreachable" and error.status is None


async def test_used_before_open() -> None:
    pager = make_pager("vllm", "http://127.0.0.1:9/v1")
    with pytest.raises(RuntimeError, match="before open"):
        await pager.loaded()


async def test_the_api_key_is_sent_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = await VllmServer(api_key=KEY).start()
    server.faults.echo_key = True  # a gateway that repeats the key it was given
    try:
        async with make_pager("vllm", server.url, api_key=KEY) as pager:
            await pager.load("code", CODE_PATH)
            assert await pager.loaded() == {"code"}
            assert KEY not in repr(pager)
        assert server.auth_seen and all(seen == f"Bearer {KEY}" for seen in server.auth_seen)

        async with make_pager("vllm", server.url) as anonymous:
            error = await failure(anonymous.loaded())
            assert (error.kind, error.status) == ("refused", 401) and "Unauthorized" in error.message

        wrong = KEY[::-1]
        async with make_pager("vllm", server.url, api_key=wrong) as pager:
            errors = [await failure(pager.load("legal", LEGAL_PATH)), await failure(pager.loaded())]
        for error in errors:
            assert error.kind == "refused" and error.status == 401
            assert "[redacted]" in error.message
            assert all(wrong not in text for text in (error.message, str(error), repr(error), *map(str, error.args)))
        assert not [r for r in caplog.records if KEY in r.getMessage() or wrong in r.getMessage()]
    finally:
        await server.close()


async def test_a_huge_listing_is_not_read(vllm: VllmServer, pager: HttpPager) -> None:
    vllm.faults.huge_body["models"] = 200
    error = await failure(pager.loaded())
    assert error.kind == "bad_response" and "larger than" in error.message
    await vllm.huge_done.wait()  # the server stops writing once the client hangs up
    assert vllm.huge_bytes_sent < HUGE_BODY_BYTES // 8


async def test_a_huge_error_body_is_cut(vllm: VllmServer, pager: HttpPager) -> None:
    vllm.faults.huge_body["load"] = 400
    error = await failure(pager.load("code", CODE_PATH))
    assert error.kind == "refused" and error.status == 400
    assert len(error.message) <= MAX_MESSAGE_CHARS and len(str(error)) < 2 * MAX_MESSAGE_CHARS
    await vllm.huge_done.wait()
    assert vllm.huge_bytes_sent < HUGE_BODY_BYTES // 8


async def test_a_listing_that_is_not_json(vllm: VllmServer, pager: HttpPager) -> None:
    vllm.faults.garbage.add("models")
    error = await failure(pager.loaded())
    assert error.kind == "bad_response" and error.status == 200 and "nginx" in error.message


async def test_a_restarted_server_lists_nothing(vllm: VllmServer, pager: HttpPager) -> None:
    await pager.load("code", CODE_PATH)
    await pager.load("legal", LEGAL_PATH)
    vllm.restart()
    assert await pager.loaded() == set()
    status, _ = await chat(vllm, pager.model_field(BASE_MODEL, "code"))
    assert status == 404
    await pager.load("code", CODE_PATH)  # and it can be paged in again under the same name
    assert await pager.loaded() == {"code"}


async def test_a_base_url_without_v1(vllm: VllmServer) -> None:
    async with make_pager("vllm", f"http://127.0.0.1:{vllm.port}/") as pager:
        await pager.load("code", CODE_PATH)
        assert await pager.loaded() == {"code"}


def test_which_completion_errors_say_the_adapter_is_gone() -> None:
    vllm, sglang = make_pager("vllm", "http://127.0.0.1:9/v1"), make_pager("sglang", "http://127.0.0.1:9/v1")
    assert vllm.lost_adapter(404, "The model `code` does not exist.")
    assert not vllm.lost_adapter(404, "Not Found")  # a route the server lacks: not about the adapter
    assert not vllm.lost_adapter(400, "The model `code` does not exist.")
    assert not vllm.lost_adapter(400, "max_tokens must be at least 1")
    lost = "The following requested LoRA adapters are not loaded: legal\nLoaded adapters: dict_keys([])."
    assert sglang.lost_adapter(400, lost)
    assert not sglang.lost_adapter(400, "max_new_tokens must be at least 1")
    assert not sglang.lost_adapter(404, lost)
