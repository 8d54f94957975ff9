"""Request validation: every refusal is a 400 naming the parameter; context length is checked like vLLM does."""

from __future__ import annotations

from typing import Any

import pytest

from cachesvc.model_server.protocol import CompletionRequest, parse_request
from cachesvc.openai.errors import RequestError
from cachesvc.openai.protocol import Endpoint


def parse(body: Any, endpoint: Endpoint = "chat", **kw: Any) -> CompletionRequest:
    return parse_request(body, endpoint, default_model="base", default_temperature=1.0,
                         allow_kv_override=kw.pop("allow_kv_override", True))


CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "base"}, "messages"),
    ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content"),
    ({**CHAT, "temperature": 3}, "temperature"),
    ({**CHAT, "temperature": "hot"}, "temperature"),
    ({**CHAT, "top_p": 0}, "top_p"),
    ({**CHAT, "max_tokens": 0}, "max_tokens"),
    ({**CHAT, "max_tokens": 2.5}, "max_tokens"),
    ({**CHAT, "n": 2}, "n"),
    ({**CHAT, "stop": ["", "x"]}, "stop"),
    ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
    ({**CHAT, "logprobs": True}, "logprobs"),
    ({**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({**CHAT, "response_format": {"type": "json_object"}}, "response_format"),
    ({**CHAT, "kv_policy": "lru"}, "kv_policy"),
    ({**CHAT, "kv_budget": 2.5}, "kv_budget"),
    ({**CHAT, "kv_budget": 0}, "kv_budget"),
    ({**CHAT, "stream": "yes"}, "stream"),
    ({**CHAT, "model": ""}, "model"),
])
def test_bad_chat_requests_name_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as info:
        parse(body)
    assert info.value.status == 400
    assert info.value.param == param


@pytest.mark.parametrize(("prompt", "param"), [(None, "prompt"), ("", "prompt"), (["a", "b"], "prompt"),
                                               ([1, -2], "prompt"), ({"x": 1}, "prompt")])
def test_bad_prompts(prompt: Any, param: str) -> None:
    with pytest.raises(RequestError) as info:
        parse({"model": "base", "prompt": prompt}, "completions")
    assert info.value.param == param


def test_kv_override_can_be_forbidden() -> None:
    with pytest.raises(RequestError):
        parse({**CHAT, "kv_policy": "snapkv"}, allow_kv_override=False)


def test_good_request_is_parsed() -> None:
    req = parse({**CHAT, "max_completion_tokens": 7, "temperature": 0, "seed": 3, "stop": "END", "stream": True,
                 "stream_options": {"include_usage": True}, "kv_policy": "snapkv", "kv_budget": 0.25,
                 "messages": [{"role": "developer", "content": "be brief"},
                              {"role": "user",
                               "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})
    assert req.sampling.max_tokens == 7 and req.sampling.greedy and req.sampling.stop == ("END",)
    assert req.messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "a\nb"})
    assert req.stream and req.include_usage and (req.kv_policy, req.kv_budget) == ("snapkv", 0.25)
    assert parse({"prompt": [[5, 6, 7]]}, "completions").prompt == (5, 6, 7)
    assert parse({"prompt": "x"}, "completions").model == "base"


def test_context_length_is_checked_like_vllm() -> None:
    req = parse({**CHAT, "max_tokens": 50})
    with pytest.raises(RequestError) as info:
        req.with_max_tokens(prompt_len=90, max_model_len=100, default_max_tokens=512)
    assert info.value.status == 400 and "maximum context length is 100 tokens" in info.value.message
    assert "140 tokens (90 in the messages, 50 in the completion)" in info.value.message
    unset = parse(CHAT)
    assert unset.with_max_tokens(90, 100, 512).max_tokens == 10  # the room left
    assert unset.with_max_tokens(10, 1000, 512).max_tokens == 512  # the server's default
