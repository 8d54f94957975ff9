"""Send one chat-completions request and time it: time to first content piece, the gaps between pieces, the end,
the usage block, the cache's headers and the answer's text. Plain ``requests``: the locust process runs it under
gevent, the tests run it as is."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import requests

MAX_ANSWER_CHARS = 4_000  # the answer's text kept in a record (enough to compare answers)
MAX_BODY_BYTES = 32 * 1024 * 1024  # a response past this is cut off and counted as an error
KEPT_HEADERS = ("retry-after", "x-request-id")


def send(session: requests.Session, url: str, body: Mapping[str, Any], headers: Mapping[str, str], *,
         timeout_s: float) -> dict[str, Any]:
    """POST ``body`` to ``url`` and return the record's timing and answer fields (see ``metrics.py``)."""
    stream = bool(body.get("stream"))
    sent_at = time.time()
    started = time.perf_counter()
    record: dict[str, Any] = {"sent_at": sent_at, "stream": stream, "status": 0, "error": None, "ttft_s": None,
                              "latency_s": None, "gaps_s": [], "output_tokens": None, "headers": {}, "answer": ""}
    try:
        with session.post(url, json=body, headers=dict(headers), stream=True,
                          timeout=(min(10.0, timeout_s), timeout_s)) as response:
            record["status"] = response.status_code
            record["headers"] = {k.lower(): v for k, v in response.headers.items()
                                 if k.lower().startswith("x-cachesvc-") or k.lower() in KEPT_HEADERS}
            if stream and response.status_code == 200:
                _read_stream(response, record, started, timeout_s)
            else:
                _read_json(response, record, started, timeout_s)
    except requests.RequestException as exc:
        record["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    except _CutOff as exc:
        record["error"] = str(exc)
    if record["latency_s"] is None:
        record["latency_s"] = time.perf_counter() - started
    return record


class _CutOff(Exception):
    """The response ran past the time or size limit."""


def _chunks(response: requests.Response, started: float, timeout_s: float) -> Any:
    total = 0
    for chunk in response.iter_content(chunk_size=None):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _CutOff(f"response over {MAX_BODY_BYTES} bytes")
        if time.perf_counter() - started > timeout_s:
            raise _CutOff(f"response not finished within {timeout_s:g} s")
        yield chunk


def _read_json(response: requests.Response, record: dict[str, Any], started: float, timeout_s: float) -> None:
    raw = b"".join(_chunks(response, started, timeout_s))
    record["latency_s"] = time.perf_counter() - started
    try:
        data = json.loads(raw)
    except ValueError:
        if response.status_code == 200:
            record["error"] = "the answer is not JSON"
        return
    if response.status_code != 200:
        error = data.get("error") if isinstance(data, dict) else None
        record["error"] = str(error.get("message") if isinstance(error, dict) else data)[:200]
        return
    choice = (data.get("choices") or [{}])[0] if isinstance(data, dict) else {}
    message = choice.get("message") or {}
    record["answer"] = str(message.get("content") or choice.get("text") or "")[:MAX_ANSWER_CHARS]
    usage = data.get("usage") or {}
    record["output_tokens"] = usage.get("completion_tokens")


def _read_stream(response: requests.Response, record: dict[str, Any], started: float, timeout_s: float) -> None:
    """Server-sent events as they arrive: every non-empty content (or tool-call) delta is one piece."""
    buffer = b""
    pieces, last = 0, None
    text: list[str] = []
    kept = 0
    done = False
    for chunk in _chunks(response, started, timeout_s):
        now = time.perf_counter()
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("error"):
                record["error"] = f"stream error: {str(event['error'])[:200]}"
            usage = event.get("usage") if isinstance(event, dict) else None
            if usage:
                record["output_tokens"] = usage.get("completion_tokens")
            for choice in (event.get("choices") or []) if isinstance(event, dict) else []:
                delta = choice.get("delta") or {}
                content = delta.get("content") or choice.get("text")
                if not content and not delta.get("tool_calls"):
                    continue
                pieces += 1
                if last is None:
                    record["ttft_s"] = now - started
                else:
                    record["gaps_s"].append(now - last)
                last = now
                if content and kept < MAX_ANSWER_CHARS:
                    text.append(str(content))
                    kept += len(str(content))
    record["latency_s"] = time.perf_counter() - started
    record["answer"] = "".join(text)[:MAX_ANSWER_CHARS]
    if record["output_tokens"] is None:
        record["output_tokens"] = pieces
    if not done and record["error"] is None:
        record["error"] = "the stream ended without [DONE]"
