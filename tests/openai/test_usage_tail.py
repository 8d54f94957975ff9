"""UsageTail: the usage of a relayed JSON answer, found whole or in its tail, whatever the chunking, and nothing
for answers that do not report one."""

from __future__ import annotations

import json
import random

import pytest

from cachesvc.openai.usage_tail import TAIL_BYTES, WHOLE_BYTES, UsageTail


def fed(body: bytes, seed: int) -> UsageTail:
    """The body cut at random places, as a socket delivers it."""
    rng, tail, start = random.Random(seed), UsageTail(), 0
    while start < len(body):
        end = start + rng.choice([1, 7, 100, 3000, 5000, 70_000])
        tail.feed(body[start:end])
        start = end
    return tail


def embeddings_answer(vectors: int, usage_first: bool = False) -> bytes:
    rng = random.Random(vectors)
    usage = {"prompt_tokens": vectors * 3, "total_tokens": vectors * 3}
    data = [{"object": "embedding", "index": i, "embedding": [rng.uniform(-1, 1) for _ in range(64)]}
            for i in range(vectors)]
    body = {"usage": usage, "object": "list", "data": data} if usage_first else \
        {"object": "list", "data": data, "model": "m", "usage": usage}
    return json.dumps(body).encode()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("vectors", [1, 40, 400])  # under WHOLE_BYTES, around it, far past it
def test_usage_found_whatever_the_chunking(vectors: int, seed: int) -> None:
    body = embeddings_answer(vectors)
    assert fed(body, seed).usage() == {"prompt_tokens": vectors * 3, "total_tokens": vectors * 3}


def test_nested_usage_details_in_the_tail() -> None:
    answer = {"object": "response", "output": [{"type": "message", "content": [{"text": "x" * 2 * WHOLE_BYTES}]}],
              "usage": {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14,
                        "input_tokens_details": {"cached_tokens": 0}}}
    assert fed(json.dumps(answer).encode(), 1).usage() == answer["usage"]


def test_a_usage_key_inside_the_content_is_not_usage() -> None:
    decoy = '"usage": {"total_tokens": 1}'  # escaped inside a JSON string, so not a key
    answer = {"output": "y" * 2 * WHOLE_BYTES + decoy * 10, "usage": {"total_tokens": 77}}
    assert fed(json.dumps(answer).encode(), 2).usage() == {"total_tokens": 77}
    answer = {"usage": {"total_tokens": 77}, "output": "y" * 2 * WHOLE_BYTES + decoy * 10}
    assert fed(json.dumps(answer).encode(), 2).usage() is None  # the real one is out of the tail; the decoy is no key


def test_no_usage_is_none() -> None:
    assert fed(embeddings_answer(400, usage_first=True), 0).usage() is None  # large, usage only at the start
    assert fed(embeddings_answer(1, usage_first=True), 0).usage() is not None  # small: parsed whole
    assert fed(b'{"object": "list", "data": []}', 0).usage() is None
    assert fed(b"not json at all", 0).usage() is None
    assert fed(b'{"usage": [1, 2]}', 0).usage() is None
    assert fed(b"[" * (2 * WHOLE_BYTES), 0).usage() is None
    assert fed(b'"usage": {' + b"[" * TAIL_BYTES, 0).usage() is None
    assert UsageTail().usage() is None


def test_memory_is_bounded() -> None:
    tail = UsageTail()
    for _ in range(1000):
        tail.feed(b"x" * 10_000)
    assert len(tail._head) == WHOLE_BYTES and len(tail._tail) == TAIL_BYTES
