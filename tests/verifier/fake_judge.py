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


@dataclass
class FakeJudge:
    reply: Callable[[str], str]  # user message -> the model's text
    delay_s: float = 0.0
    status: int = 200
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=self.status)
        text = self.reply(body["messages"][-1]["content"])
        return web.json_response({
            "id": "chatcmpl-judge", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
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
