"""A judge model stand-in on loopback that speaks the OpenAI chat completions wire format exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from cachesvc.verifier.judge import SELF_CHECK


@dataclass
class FakeJudge:
    reply: Callable[[str], str]  # user message -> the model's text
    delay_s: float = 0.0
    status: int = 200
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    passes_self_check: bool = True  # answer the judge's built-in self-check pairs right (kept out of ``bodies``)
    self_checks: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        message = body["messages"][-1]["content"]
        probe = next((same for first, second, same in SELF_CHECK if first in message and second in message), None)
        if probe is not None and self.passes_self_check and self.status == 200:
            self.self_checks += 1
            return _completion(body["model"], "yes" if probe else "no")
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=self.status)
        return _completion(body["model"], self.reply(message))


def _completion(model: str, text: str) -> web.Response:
    return web.json_response({
        "id": "chatcmpl-judge", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41},
    })


@asynccontextmanager
async def running(judge: FakeJudge) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", judge.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}/v1"
    finally:
        await server.close()
