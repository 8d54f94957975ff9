"""The shared wire format: the JSON codec, message text, and the envelope of bodies and chunks."""

from __future__ import annotations

import math

import pytest

from cachesvc.openai import codec
from cachesvc.openai.protocol import completion_id, object_kind, text_parts
from cachesvc.openai.responses import ResponseBuilder
from cachesvc.openai.sse import DONE, SSEParser, encode_event


@pytest.mark.parametrize("raw", [b'{"t": NaN}', b'{"t": Infinity}', b'{"t": 1e400}', b'"\\ud800"', b"{'a': 1}"])
def test_codec_refuses_what_json_does_not_allow(raw: bytes) -> None:
    with pytest.raises(ValueError):
        codec.loads(raw)


def test_codec_is_compact_utf8_and_canonical_sorts_keys() -> None:
    value = {"b": [1, 2.5, None, True], "a": "é\u2028", "c": {"y": 1, "x": 0}}
    assert codec.dumps(value) == '{"b":[1,2.5,null,true],"a":"é\u2028","c":{"y":1,"x":0}}'.encode()
    reordered = {"c": {"x": 0, "y": 1}, "a": "é\u2028", "b": [1, 2.5, None, True]}
    assert codec.canonical(value) == codec.canonical(reordered) != codec.canonical({**value, "d": 0})
    assert codec.loads(codec.dumps(value)) == value
    assert math.isclose(codec.loads(b"0.1"), 0.1)


def test_text_parts_of_message_content() -> None:
    assert text_parts("hi") == ["hi"]
    assert text_parts([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == ["a", "b"]
    assert text_parts([]) == []
    assert text_parts([{"type": "image_url", "image_url": {"url": "x"}}]) is None
    assert text_parts([{"type": "text", "text": 3}]) is None
    assert text_parts(None) is None and text_parts(7) is None


def test_ids_and_object_kinds() -> None:
    assert completion_id("chat").startswith("chatcmpl-")
    assert completion_id("completions", "cache").startswith("cmpl-cache")
    assert completion_id("chat") != completion_id("chat")
    assert object_kind("chat", stream=False) == "chat.completion"
    assert object_kind("chat", stream=True) == "chat.completion.chunk"
    assert object_kind("completions", stream=True) == object_kind("completions", stream=False) == "text_completion"


def test_one_envelope_for_every_body_and_chunk_of_an_answer() -> None:
    chat = ResponseBuilder("chat", "m", system_fingerprint="fp")
    body = chat.body([chat.final_choice(0, "hello", "stop")], {"total_tokens": 3})
    chunk = chat.chunk(chat.piece(0, "hel"))
    usage = chat.usage_chunk({"total_tokens": 3})
    for payload in (body, chunk, usage):
        assert (payload["id"], payload["model"], payload["system_fingerprint"]) == (chat.id, "m", "fp")
        assert payload["created"] == chat.created
    assert body["object"] == "chat.completion" and chunk["object"] == usage["object"] == "chat.completion.chunk"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert chunk["choices"][0] == {"index": 0, "delta": {"content": "hel"}, "logprobs": None, "finish_reason": None}
    assert usage["choices"] == [] and usage["usage"] == {"total_tokens": 3}
    assert "usage" not in chat.body([])


def test_completion_pieces_carry_text() -> None:
    out = ResponseBuilder("completions", "m")
    assert out.chunk(out.piece(1, "x", "stop", stop_reason=None))["choices"] == [
        {"index": 1, "text": "x", "logprobs": None, "finish_reason": "stop", "stop_reason": None}]
    assert out.final_choice(0, "t", "length") == {"index": 0, "text": "t", "logprobs": None, "finish_reason": "length"}
    assert "system_fingerprint" not in out.body([])


def test_events_round_trip_through_the_parser() -> None:
    chunk = {"id": "x", "choices": [{"delta": {"content": "a\n\nb"}}]}
    parser = SSEParser()
    assert parser.feed(encode_event(chunk) + encode_event(DONE)) == [codec.dumps(chunk), DONE]
    assert encode_event(b"[DONE]") == b"data: [DONE]\n\n"
