"""Loopback stand-ins for vLLM's and SGLang's runtime LoRA APIs, for the adapter pagers' tests.

Each speaks its server's wire format as the real one sends it: routes, status codes, bodies and messages (taken from
vLLM's ``vllm/entrypoints/openai/models/serving.py`` and ``vllm/exceptions.py``, SGLang's
``python/sglang/srt/entrypoints/http_server.py``, ``lora/lora_manager.py``, ``lora/lora_registry.py`` and
``managers/tokenizer_manager.py``), ``/v1/models`` with ``parent`` on adapter cards, chat completions answered "by"
the model named in ``"model"``, the auth middleware's 401, and FastAPI's 404 for a route it does not have.

Failure injection (``Faults``): paths with no adapter, adapters the engine refuses, per-route delays (to exercise
timeouts), per-route huge or non-JSON bodies, a gateway that echoes the key in its 401; ``restart()`` forgets every
adapter; ``calls`` counts requests per route and ``auth_seen`` keeps each request's ``Authorization``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer

from cachesvc.openai import codec
from cachesvc.openai.http import json_response

BASE_MODEL = "Qwen/Qwen2.5-7B-Instruct"
CODE_PATH = "/adapters/code"
LEGAL_PATH = "/adapters/legal"
MISSING_PATH = "/adapters/missing"  # nothing there
EMPTY_PATH = "/adapters/empty"  # a directory without adapter_config.json
BROKEN_PATH = "/adapters/broken"  # an adapter the engine refuses: its rank is too large
HUGE_BODY_BYTES = 256 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)


@dataclass
class Faults:
    missing_paths: set[str] = field(default_factory=lambda: {MISSING_PATH})
    empty_paths: set[str] = field(default_factory=lambda: {EMPTY_PATH})
    broken_paths: set[str] = field(default_factory=lambda: {BROKEN_PATH})
    delay_s: dict[str, float] = field(default_factory=dict)  # route -> seconds before it answers
    huge_body: dict[str, int] = field(default_factory=dict)  # route -> status of a HUGE_BODY_BYTES answer
    garbage: set[str] = field(default_factory=set)  # routes that answer 200 with an HTML page
    echo_key: bool = False  # the 401 repeats the key it was given (a careless gateway in front)
    restart_before_chat: bool = False  # every completion finds a freshly restarted server (no adapters)


class LoraServer:
    """What both stand-ins share: the adapter table, counters, faults, auth and the loopback server."""

    kind = ""

    def __init__(self, *, api_key: str | None = None, base_model: str = BASE_MODEL) -> None:
        self.api_key = api_key
        self.base_model = base_model
        self.adapters: dict[str, str] = {}  # name -> path, in load order
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self.auth_seen: list[str | None] = []
        self.bodies: list[tuple[str, Any]] = []  # (route, JSON body) of every POST
        self.restarts = 0
        self.huge_bytes_sent = 0
        self.huge_done = asyncio.Event()
        self._closing = asyncio.Event()
        self._server: TestServer | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Self:
        self._server = TestServer(self.build_app(), host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        self._closing.set()  # slow handlers stop waiting
        if self._server is not None:
            await self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.port is not None
        return self._server.port

    @property
    def url(self) -> str:
        """The OpenAI base URL, as an upstream is configured."""
        return f"http://127.0.0.1:{self.port}/v1"

    def restart(self) -> None:
        """The server restarted: every runtime-loaded adapter is gone."""
        self.adapters.clear()
        self.restarts += 1

    # -- helpers for the handlers -----------------------------------------------------------------------------

    async def enter(self, route: str, request: web.Request) -> Any:
        """Count the call, apply the route's delay, read the JSON body (None for a GET or a body that is not
        JSON)."""
        self.calls[route] += 1
        delay = self.faults.delay_s.get(route, 0.0)
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        if request.method != "POST":
            return None
        try:
            body = codec.loads(await request.read())
        except codec.JSONDecodeError:
            body = None
        self.bodies.append((route, body))
        return body

    async def injected(self, route: str, request: web.Request) -> web.StreamResponse | None:
        """The route's injected answer, if it has one."""
        if route in self.faults.huge_body:
            return await self._huge(request, self.faults.huge_body[route])
        if route in self.faults.garbage:
            return web.Response(text="<html><body>Welcome to nginx!</body></html>", content_type="text/html")
        return None

    async def _huge(self, request: web.Request, status: int) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"error": {"message": "')
            while self.huge_bytes_sent < HUGE_BODY_BYTES:
                await response.write(CHUNK)
                self.huge_bytes_sent += len(CHUNK)
            await response.write(b'"}}')
            await response.write_eof()
        except (ConnectionError, RuntimeError):  # the client hung up (aiohttp raises either)
            pass
        finally:
            self.huge_done.set()
        return response

    def unauthorized(self, request: web.Request) -> web.Response | None:
        """The auth middleware both servers run: ``Authorization: Bearer <key>`` or a 401 ``Unauthorized``."""
        header = request.headers.get("Authorization")
        self.auth_seen.append(header)
        if self.api_key is None or header == f"Bearer {self.api_key}":
            return None
        message = f"Unauthorized: {header} is not a valid key" if self.faults.echo_key else "Unauthorized"
        return json_response({"error": message}, status=401)

    def chat_body(self, model: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "message": {"role": "assistant",
                                                                     "content": f"answered by {model}"},
                                             "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


async def route_not_found(request: web.Request) -> web.Response:
    """FastAPI's answer for a path it has no route for (vLLM and SGLang are FastAPI apps)."""
    return json_response({"detail": "Not Found"}, status=404)


class VllmServer(LoraServer):
    """vLLM (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; ``runtime_updates=False`` leaves the two routes out).
    ``failed_load_status`` is how a load the engine refuses is answered: 500 in current vLLM, 400 up to 2025."""

    kind = "vllm"

    def __init__(self, *, runtime_updates: bool = True, failed_load_status: int = 500, max_lora_rank: int = 16,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime_updates = runtime_updates
        self.failed_load_status = failed_load_status
        self.max_lora_rank = max_lora_rank

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        if self.runtime_updates:
            app.router.add_post("/v1/load_lora_adapter", self.load)
            app.router.add_post("/v1/unload_lora_adapter", self.unload)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_route("*", "/{tail:.*}", route_not_found)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/v1") and (refused := self.unauthorized(request)) is not None:
            return refused
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def error(status: int, message: str, err_type: str, param: str | None = None) -> web.Response:
        """vLLM's ErrorResponse: ``{"error": {"message", "type", "param", "code": <status>}}``."""
        return json_response({"error": {"message": message, "type": err_type, "param": param, "code": status}},
                             status=status)

    async def load(self, request: web.Request) -> web.StreamResponse:
        body = await self.enter("load", request)
        if (injected := await self.injected("load", request)) is not None:
            return injected
        body = body if isinstance(body, dict) else {}
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return self.error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in self.adapters and not body.get("load_inplace"):
            return self.error(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                              "adapter in place, set 'load_inplace' to True.", "InvalidUserInput")
        if path in self.faults.missing_paths or path in self.faults.empty_paths:
            return self.error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        if path in self.faults.broken_paths:
            err_type = "InternalServerError" if self.failed_load_status >= 500 else "BadRequestError"
            return self.error(self.failed_load_status,
                              f"LoRA rank 256 is greater than max_lora_rank {self.max_lora_rank}.", err_type)
        self.adapters[name] = path
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(self, request: web.Request) -> web.StreamResponse:
        body = await self.enter("unload", request)
        if (injected := await self.injected("unload", request)) is not None:
            return injected
        name = body.get("lora_name") if isinstance(body, dict) else None
        if not name:
            return self.error(400, "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput")
        if name not in self.adapters:
            return self.error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del self.adapters[name]
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def models(self, request: web.Request) -> web.StreamResponse:
        await self.enter("models", request)
        if (injected := await self.injected("models", request)) is not None:
            return injected
        created = int(time.time())

        def card(model_id: str, root: str, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
            permission = {"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission", "created": created,
                          "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                          "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                          "organization": "*", "group": None, "is_blocking": False}
            return {"id": model_id, "object": "model", "created": created, "owned_by": "vllm", "root": root,
                    "parent": parent, "max_model_len": max_model_len, "permission": [permission]}

        cards = [card(self.base_model, self.base_model, None, 32768)]
        cards += [card(name, path, self.base_model, None) for name, path in self.adapters.items()]
        return json_response({"object": "list", "data": cards})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.enter("chat", request)
        if self.faults.restart_before_chat:
            self.restart()
        model = body.get("model") if isinstance(body, dict) else None
        if model != self.base_model and model not in self.adapters:
            return self.error(404, f"The model `{model}` does not exist.", "NotFoundError", param="model")
        return json_response(self.chat_body(str(model)))


class SglangServer(LoraServer):
    """SGLang (``--enable-lora``; ``enable_lora=False`` answers the update routes as SGLang does then).
    ``max_loaded`` is ``--max-loaded-loras``."""

    kind = "sglang"

    def __init__(self, *, enable_lora: bool = True, max_loaded: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enable_lora = enable_lora
        self.max_loaded = max_loaded

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/load_lora_adapter", self.load)
        app.router.add_post("/unload_lora_adapter", self.unload)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/health", self.health)
        app.router.add_route("*", "/{tail:.*}", route_not_found)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(("/health", "/metrics")) and (refused := self.unauthorized(request)) is not None:
            return refused
        response: web.StreamResponse = await handler(request)
        return response

    def _registry_keys(self) -> str:
        return str(OrderedDict.fromkeys(self.adapters).keys())  # "odict_keys(['a', 'b'])", as SGLang formats it

    def result(self, success: bool, message: str = "", *, with_adapters: bool = True) -> web.Response:
        """SGLang's LoRAUpdateOutput: 200 on success, 400 otherwise. ``loaded_adapters`` is null when the tokenizer
        manager refused before the backend ran (its ValueError path)."""
        adapters = dict(self.adapters) if with_adapters else None
        return json_response({"success": success, "error_message": message, "loaded_adapters": adapters},
                             status=200 if success else 400)

    @staticmethod
    def validation_error(body: Any, missing: str) -> web.Response:
        """FastAPI's 422 for a body without a required field."""
        return json_response({"detail": [{"type": "missing", "loc": ["body", missing], "msg": "Field required",
                                          "input": body}]}, status=422)

    async def load(self, request: web.Request) -> web.StreamResponse:
        body = await self.enter("load", request)
        if (injected := await self.injected("load", request)) is not None:
            return injected
        if not isinstance(body, dict) or "lora_name" not in body or "lora_path" not in body:
            return self.validation_error(body, "lora_name" if not isinstance(body, dict) or "lora_name" not in body
                                         else "lora_path")
        name, path = str(body["lora_name"]), str(body["lora_path"])
        if not self.enable_lora:
            return self.result(False, "LoRA is not enabled. Please set `--enable-lora` to enable LoRA.",
                               with_adapters=False)
        if self.max_loaded is not None and len(self.adapters) >= self.max_loaded:
            return self.result(False, f"Cannot load LoRA adapter {name} at path {path}. Maximum number of loaded "
                               f"LoRA adapters is {self.max_loaded}. Please unload some LoRA adapters before "
                               "loading new ones.", with_adapters=False)
        if name in self.adapters:
            return self.result(False, f"Failed to load LoRA adapter {name} because it is already loaded")
        if path in self.faults.missing_paths:  # not a directory: LoRAConfig asks the Hub, which refuses the path
            return self.result(False, f"Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{path}'."
                               " Use `repo_type` argument if needed.")
        if path in self.faults.empty_paths:
            return self.result(False, f"[Errno 2] No such file or directory: '{path}/adapter_config.json'")
        if path in self.faults.broken_paths:
            return self.result(False, f"LoRA adapter {name} with rank 256 is incompatible with the current LoRA "
                               "memory pool configuration. Please ensure that the LoRA adapter's rank is within the "
                               "configured `--max-lora-rank` and that the target modules are included in "
                               "`--lora-target-modules`.")
        self.adapters[name] = path
        return self.result(True)

    async def unload(self, request: web.Request) -> web.StreamResponse:
        body = await self.enter("unload", request)
        if (injected := await self.injected("unload", request)) is not None:
            return injected
        if not isinstance(body, dict) or "lora_name" not in body:
            return self.validation_error(body, "lora_name")
        name = str(body["lora_name"])
        if not self.enable_lora:
            return self.result(False, "LoRA is not enabled. Please set `--enable-lora` to enable LoRA.",
                               with_adapters=False)
        if name not in self.adapters:
            return self.result(False, f"LoRA with name {name} does not exist. Loaded LoRAs: "
                               f"{self._registry_keys()}", with_adapters=False)
        del self.adapters[name]
        return self.result(True)

    async def models(self, request: web.Request) -> web.StreamResponse:
        await self.enter("models", request)
        if (injected := await self.injected("models", request)) is not None:
            return injected
        created = int(time.time())
        cards = [{"id": self.base_model, "object": "model", "created": created, "owned_by": "sglang",
                  "root": self.base_model, "max_model_len": 32768, "parent": None}]
        if self.enable_lora:
            cards += [{"id": name, "object": "model", "created": created, "owned_by": "sglang", "root": path,
                       "max_model_len": None, "parent": self.base_model} for name, path in self.adapters.items()]
        return json_response({"object": "list", "data": cards})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """``"model": "<base>:<adapter>"`` selects an adapter; an adapter that is not loaded is SGLang's 400."""
        body = await self.enter("chat", request)
        if self.faults.restart_before_chat:
            self.restart()
        model = str(body.get("model")) if isinstance(body, dict) else ""
        _, colon, adapter = model.partition(":")
        if colon and adapter not in self.adapters:
            message = (f"The following requested LoRA adapters are not loaded: {adapter}\n"
                       f"Loaded adapters: {self._registry_keys()}.")
            return json_response({"object": "error", "message": message, "type": "BadRequest", "param": None,
                                  "code": 400}, status=400)
        return json_response(self.chat_body(model))

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
