"""The canonical answer: built from JSON or from stream chunks, replayed as valid SSE."""

from __future__ import annotations

import json

from cachesvc.openai.answer import Answer
from cachesvc.openai.sse import DONE, SSEParser, split_text
from cachesvc.openai.stream_accumulator import StreamAccumulator


def test_sse_parser_handles_split_events_crlf_and_comments() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a"') == []
    assert parser.feed(b': 1}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n') == [b'{"a": 1}', DONE]
    assert not parser.pending


def test_split_text_keeps_every_character() -> None:
    text = "The quick brown fox jumps over the lazy dog, " * 7
    pieces = list(split_text(text, 20))
    assert "".join(pieces) == text and len(pieces) > 5 and all(len(p) <= 20 for p in pieces)


def chunks_of(events: list[dict]) -> StreamAccumulator:
    acc = StreamAccumulator("chat")
    for event in events:
        acc.feed(json.dumps(event).encode())
    acc.feed(DONE)
    return acc


def test_accumulator_merges_content_and_tool_call_deltas() -> None:
    acc = chunks_of([
        {"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"a"'}}]}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {
            "tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"model": "m", "choices": [], "usage": {"total_tokens": 9}},
    ])
    assert acc.complete
    answer = acc.answer()
    message = answer.choices[0]["message"]
    assert message["content"] == "Hello"
    assert message["tool_calls"][0]["function"] == {"name": "get", "arguments": '{"a": 1}'}
    assert answer.usage == {"total_tokens": 9}
    assert answer.cacheable_reason(request_has_tools=False) == "tool_calls_without_tools"
    assert answer.cacheable_reason(request_has_tools=True) is None


def test_tool_call_only_stream_has_null_content() -> None:
    acc = chunks_of([
        {"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ])
    message = acc.answer().choices[0]["message"]
    assert message["content"] is None and message["tool_calls"][0]["function"]["name"] == "f"


def test_stream_without_done_or_with_error_is_incomplete() -> None:
    acc = StreamAccumulator("chat")
    acc.feed(json.dumps({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]}).encode())
    assert not acc.complete
    acc.feed(json.dumps({"error": {"message": "boom"}}).encode())
    acc.feed(DONE)
    assert not acc.complete


def test_replay_round_trips_through_the_accumulator() -> None:
    original = Answer("chat", "m", [{"index": 0, "message": {"role": "assistant", "content": "word " * 40},
                                     "logprobs": None, "finish_reason": "stop"}], {"total_tokens": 5}, "fp")
    parser, acc = SSEParser(), StreamAccumulator("chat")
    raw = b"".join(original.render_stream(include_usage=True))
    events = parser.feed(raw)
    assert events[-1] == DONE and len(events) > 4
    for event in events:
        acc.feed(event)
    assert acc.complete
    replayed = acc.answer()
    assert replayed.choices[0]["message"]["content"] == original.choices[0]["message"]["content"]
    assert replayed.usage == original.usage
    assert json.loads(events[-2])["choices"] == []


def test_render_gives_fresh_ids() -> None:
    answer = Answer("completions", "m", [{"index": 0, "text": "hi", "finish_reason": "stop"}])
    first, second = answer.render(), answer.render()
    assert first["id"] != second["id"] and first["object"] == "text_completion"
    assert Answer.from_json(answer.to_json()) == answer


def test_unfinished_or_truncated_answers_are_not_cacheable() -> None:
    def answer(finish: str | None) -> Answer:
        return Answer("chat", "m",
                      [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}])
    assert answer("stop").cacheable_reason(False) is None
    assert answer("length").cacheable_reason(False) == "finish_length"
    assert answer(None).cacheable_reason(False) == "unfinished"
    assert Answer("chat", "m", []).cacheable_reason(False) == "empty"


def test_sse_parser_joins_a_crlf_split_between_feeds_and_takes_lone_cr() -> None:
    raw = b'data: {"a": 1}\r\n\r\ndata: {"b": 2}\r\n\r\n: note\r\rdata: [DONE]\r\n\r\n'
    for cut in range(1, len(raw)):  # every split point, a CR and its LF apart among them
        parser = SSEParser()
        assert parser.feed(raw[:cut]) + parser.feed(raw[cut:]) == [b'{"a": 1}', b'{"b": 2}', DONE], cut
    parser = SSEParser()
    assert [event for byte in range(len(raw)) for event in parser.feed(raw[byte:byte + 1])] == [
        b'{"a": 1}', b'{"b": 2}', DONE]
    assert not parser.pending


def test_sse_parser_gives_up_on_an_endless_event() -> None:
    parser = SSEParser(max_event_bytes=1000)
    assert parser.feed(b"data: " + b"x" * 600) == [] and not parser.overflow
    assert parser.feed(b"x" * 600) == [] and parser.overflow
    assert parser.feed(b"\n\ndata: [DONE]\n\n") == []  # nothing after it is taken


def test_accumulator_marks_malformed_chunks_broken_without_raising() -> None:
    good = {"model": "m", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    malformed: list[object] = [
        [1], {"choices": [1]}, {"choices": {"0": {}}}, {"choices": [{"delta": "x"}]},
        {"choices": [{"delta": {"content": 5}}]}, {"choices": [{"index": "0", "delta": {}}]},
        {"choices": [{"index": True, "delta": {}}]}, {"choices": [{"delta": {}, "finish_reason": 1}]},
        {"choices": [{"delta": {}, "logprobs": [1]}]}, {"choices": [{"delta": {"tool_calls": {"a": 1}}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 10**9, "function": {"name": "f"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"function": {"arguments": 1}}]}}]},
        {"usage": 3, "choices": []}, {"model": 7, "choices": []},
    ]
    for chunk in malformed:
        acc = StreamAccumulator("chat")
        acc.feed(json.dumps(good).encode())
        assert acc.feed(json.dumps(chunk).encode()) is None
        acc.feed(DONE)
        assert acc.error and acc.problem and not acc.complete, chunk
    acc = StreamAccumulator("completions")
    assert acc.feed(json.dumps({"choices": [{"index": 0, "text": ["no"]}]}).encode()) is None and acc.error


def test_answer_from_response_refuses_malformed_bodies() -> None:
    good = {"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                       "finish_reason": "stop"}]}
    assert Answer.from_response("chat", good).choices[0]["message"]["content"] == "hi"
    for body in ([1], {"choices": [1]}, {**good, "usage": "lots"}, {"choices": [{"message": "hi"}]},
                 {"choices": [{"message": {"content": 5}}]}, {"choices": [{"index": -1, "message": {}}]},
                 {"choices": [{"message": {"tool_calls": [1]}}]}, {"choices": [{"message": {}, "logprobs": 1}]}):
        try:
            Answer.from_response("chat", body)
        except ValueError as exc:
            assert str(exc)
        else:
            raise AssertionError(f"accepted {body}")
