"""POST /v1/feedback ``{"id": <response id>, "reward": 0..1}``: a reward for a routed answer, handed to the router
of the adapter pool that served it. An id is accepted once, within its pool's ``feedback_ttl_s``, from the tenant
that asked; anything else is a clear 4xx and changes nothing."""

from __future__ import annotations

import math

from aiohttp import web

from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import json_response, read_json
from cachesvc.routing.feedback import MAX_ID_CHARS
from cachesvc.server.services import SERVICES

MAX_FEEDBACK_BYTES = 4096


async def post_feedback(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request, MAX_FEEDBACK_BYTES)
    if not isinstance(body, dict):
        raise RequestError(400, "The body must be a JSON object with 'id' and 'reward'.")
    response_id, reward = body.get("id"), body.get("reward")
    if not isinstance(response_id, str) or not 0 < len(response_id) <= MAX_ID_CHARS:
        raise RequestError(400, f"'id' must be the response's id, a string of 1-{MAX_ID_CHARS} characters.",
                           param="id")
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward) or not (
            0.0 <= reward <= 1.0):
        raise RequestError(400, "'reward' must be a number from 0 to 1.", param="reward")
    if not services.pools:
        raise RequestError(404, "No adapter pools are configured, so no response awaits feedback.",
                           code="feedback_unknown_id")
    pending = services.pools.feedback.claim(response_id, services.tenants.of_request(request).id)
    pool = services.pools.by_name(pending.pool)
    if pool is None:  # the pool is gone (reconfigured); nothing to teach
        raise RequestError(404, f"The pool that served {response_id!r} is no longer configured.", param="id",
                           code="feedback_unknown_id")
    pool.learn(pending.arm, pending.context, float(reward), "explicit")
    return json_response({"object": "feedback", "id": response_id, "pool": pending.pool, "adapter": pending.adapter,
                          "reward": float(reward)})
