"""Partitioning: which requests may share an answer, and which never may."""

from __future__ import annotations

from typing import Any

import pytest

from cachesvc.cache.request_key import parse_request
from cachesvc.openai.errors import RequestError


def chat(last: str = "How do I reverse a list?", **extra: Any) -> dict[str, Any]:
    messages = extra.pop("messages", [{"role": "system", "content": "You are terse."},
                                      {"role": "user", "content": last}])
    return {"model": "m", "messages": messages, "temperature": 0, **extra}


def key(body: dict[str, Any], tenant: str = "t", namespace: str = "default") -> tuple[str, str]:
    req = parse_request("chat", body)
    partition = req.partition(tenant, namespace)
    return partition, req.exact_key(partition)


def test_only_the_last_user_message_is_left_out_of_the_partition() -> None:
    assert key(chat("a"))[0] == key(chat("completely different question"))[0]
    assert key(chat("a"))[1] != key(chat("b"))[1]


def test_whitespace_does_not_change_the_exact_key() -> None:
    assert key(chat("How  do I\nreverse a list? "))[1] == key(chat("How do I reverse a list?"))[1]


@pytest.mark.parametrize(
    "changed",
    [
        chat(model="other"),
        chat(messages=[{"role": "system", "content": "You are verbose."},
                       {"role": "user", "content": "How do I reverse a list?"}]),
        chat(messages=[{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"},
                       {"role": "user", "content": "How do I reverse a list?"}]),
        chat(tools=[{"type": "function", "function": {"name": "f"}}]),
        chat(response_format={"type": "json_object"}),
        chat(temperature=0.5),
        chat(top_p=0.5),
        chat(max_tokens=10),
        chat(seed=1),
        chat(stop=["\n"]),
        chat(n=2),
        chat(logprobs=True),
        chat(frequency_penalty=0.5),
    ],
)
def test_answer_shaping_fields_split_the_partition(changed: dict[str, Any]) -> None:
    assert key(changed)[0] != key(chat())[0]


@pytest.mark.parametrize("same", [chat(stream=True), chat(user="alice"), chat(stream_options={"include_usage": True}),
                                  chat(cachesvc={"ttl": 5})])
def test_fields_that_do_not_shape_the_answer_are_ignored(same: dict[str, Any]) -> None:
    assert key(same) == key(chat())


def test_tenant_and_namespace_split_the_partition() -> None:
    assert key(chat(), tenant="a")[0] != key(chat(), tenant="b")[0]
    assert key(chat(), namespace="a")[0] != key(chat(), namespace="b")[0]


def test_non_text_or_non_user_last_turn_is_exact_only() -> None:
    image = chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}])
    assert parse_request("chat", image).query is None
    tool = chat(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": []},
                          {"role": "tool", "content": "42", "tool_call_id": "c"}])
    assert parse_request("chat", tool).query is None
    parts = chat(messages=[{"role": "user",
                            "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "you"}]}])
    assert parse_request("chat", parts).query == "hello\nyou"


def test_completions_prompt() -> None:
    assert parse_request("completions", {"model": "m", "prompt": "Once"}).query == "Once"
    assert parse_request("completions", {"model": "m", "prompt": [1, 2, 3]}).query is None


def test_forwarded_body_drops_our_own_options() -> None:
    assert "cachesvc" not in parse_request("chat", chat(cachesvc={"ttl": 5})).body


@pytest.mark.parametrize(("body", "param"), [({"messages": []}, "model"), (chat(n=0), "n"), (chat(top_p="x"), "top_p"),
                                             (chat(response_format="json"), "response_format")])
def test_invalid_fields_name_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request("chat", body)
    assert info.value.status == 400 and info.value.param == param
