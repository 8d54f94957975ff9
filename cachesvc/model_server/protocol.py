"""Parsing and validating OpenAI completion requests for the model server; every refusal is a 400 naming the
parameter, worded like vLLM's, before anything reaches the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cachesvc.model_server.sampling import SamplingParams
from cachesvc.openai.errors import RequestError
from cachesvc.openai.protocol import Endpoint, text_parts

ROLES = {"system", "user", "assistant", "developer"}


@dataclass(frozen=True)
class CompletionRequest:
    """A validated request; the prompt is tokenized later, on the engine's thread."""

    endpoint: Endpoint
    model: str
    messages: tuple[dict[str, str], ...] | None
    prompt: str | tuple[int, ...] | None
    sampling: SamplingParams  # max_tokens 0 here means "not set": the engine fills it from the context left
    stream: bool
    include_usage: bool
    kv_policy: str | None  # None: the server's
    kv_budget: float | None

    def prompt_ids(self, tokenizer: Any) -> list[int]:
        if self.messages is not None:
            encoded = tokenizer.apply_chat_template(list(self.messages), add_generation_prompt=True)
            return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
        if isinstance(self.prompt, tuple):
            return list(self.prompt)
        return list(tokenizer(self.prompt, add_special_tokens=True)["input_ids"])

    def with_max_tokens(self, prompt_len: int, max_model_len: int, default_max_tokens: int) -> SamplingParams:
        """The sampling parameters with ``max_tokens`` checked against the context length (vLLM's 400)."""
        requested = self.sampling.max_tokens
        room = max_model_len - prompt_len
        if room <= 0 or (requested and requested > room):
            asked = prompt_len + (requested or 0)
            raise RequestError(
                400,
                f"This model's maximum context length is {max_model_len} tokens. However, you requested {asked} "
                f"tokens ({prompt_len} in the messages, {requested or 0} in the completion). Please reduce the "
                "length of the messages or completion.",
                param="messages" if self.endpoint == "chat" else "prompt", code="context_length_exceeded")
        return dataclasses.replace(self.sampling, max_tokens=requested or min(default_max_tokens, room))


def parse_request(body: Any, endpoint: Endpoint, *, default_model: str, default_temperature: float,
                  allow_kv_override: bool) -> CompletionRequest:
    """Validate ``body``; the model name is checked by the caller (it knows the loaded adapters)."""
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise RequestError(400, "'model' must be a non-empty string.", param="model")
    messages, prompt = None, None
    if endpoint == "chat":
        messages = _messages(body.get("messages"))
    else:
        prompt = _prompt(body.get("prompt"))
    for name in ("suffix",):
        if body.get(name):
            raise RequestError(400, f"'{name}' is not supported by this server.", param=name)
    if body.get("echo"):
        raise RequestError(400, "'echo' is not supported by this server.", param="echo")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise RequestError(400, "logprobs are not supported by this server.", param="logprobs")
    if body.get("tools") and body.get("tool_choice", "auto") != "none":
        raise RequestError(400, "Tool calling is not supported by this server; send tool_choice 'none' or no "
                                "tools.", param="tools")
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict)
                                        or response_format.get("type", "text") != "text"):
        raise RequestError(400, "Only response_format {'type': 'text'} is supported by this server.",
                           param="response_format")
    n = _number(body, "n", int, 1, low=1)
    if n != 1:
        raise RequestError(400, "n > 1 is not supported by this server: send one request per sample.", param="n")
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and not stream:
        raise RequestError(400, "Stream options can only be defined when `stream=True`.", param="stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError(400, "'stream_options' must be an object.", param="stream_options")
    include_usage = bool((options or {}).get("include_usage", False))
    max_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    sampling = SamplingParams(
        max_tokens=_number(body, max_key, int, 0, low=1),
        temperature=_number(body, "temperature", float, default_temperature, low=0.0, high=2.0),
        top_p=_number(body, "top_p", float, 1.0, low=0.0, high=1.0, low_open=True),
        seed=_number(body, "seed", int, None),
        presence_penalty=_number(body, "presence_penalty", float, 0.0, low=-2.0, high=2.0),
        frequency_penalty=_number(body, "frequency_penalty", float, 0.0, low=-2.0, high=2.0),
        stop=_stop(body.get("stop")),
        stop_token_ids=_token_ids(body.get("stop_token_ids"), "stop_token_ids"),
        ignore_eos=_boolean(body, "ignore_eos", False),
    )
    kv_policy, kv_budget = body.get("kv_policy"), body.get("kv_budget")
    if (kv_policy is not None or kv_budget is not None) and not allow_kv_override:
        raise RequestError(400, "This server does not let requests choose the KV policy.", param="kv_policy")
    if kv_policy is not None:
        from cachesvc.policies.kv.names import POLICY_NAMES

        if kv_policy != "none" and kv_policy not in POLICY_NAMES:
            raise RequestError(400, f"Unknown kv_policy {kv_policy!r}; known: none, {', '.join(POLICY_NAMES)}.",
                               param="kv_policy")
    if kv_budget is not None:
        kv_budget = _number(body, "kv_budget", float, None, low=0.0, low_open=True)
        if kv_budget > 1 and not float(kv_budget).is_integer():
            raise RequestError(400, "'kv_budget' is a fraction in (0, 1] or a whole number of entries.",
                               param="kv_budget")
    return CompletionRequest(endpoint, model, messages, prompt, sampling, stream, include_usage, kv_policy, kv_budget)


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise RequestError(400, "'messages' must be a non-empty list.", param="messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise RequestError(400, f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(400, f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}.",
                               param=f"messages[{i}].role")
        out.append({"role": "system" if role == "developer" else role, "content": _content(message, i)})
    return tuple(out)


def _content(message: dict[str, Any], i: int) -> str:
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    parts = text_parts(content)
    if parts is not None:
        return "\n".join(parts)
    if isinstance(content, list):
        raise RequestError(400, f"messages[{i}].content: only text parts are supported by this server.",
                           param=f"messages[{i}].content")
    raise RequestError(400, f"messages[{i}].content must be a string or a list of text parts.",
                       param=f"messages[{i}].content")


def _prompt(value: Any) -> str | tuple[int, ...]:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]  # a batch of one
    if isinstance(value, str):
        if not value:
            raise RequestError(400, "'prompt' must not be empty.", param="prompt")
        return value
    if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return _token_ids(value, "prompt")
    if isinstance(value, list) and len(value) > 1:
        raise RequestError(400, "Batched prompts are not supported by this server: send one prompt per request.",
                           param="prompt")
    raise RequestError(400, "'prompt' must be a string or a list of token ids.", param="prompt")


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(400, "'stop' must be a non-empty string or a list of them.", param="stop")
    return tuple(stops)


def _token_ids(value: Any, name: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                              for t in value):
        raise RequestError(400, f"'{name}' must be a list of token ids.", param=name)
    return tuple(value)


def _boolean(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(400, f"'{name}' must be true or false.", param=name)
    return value


def _number(body: dict[str, Any], name: str, kind: type, default: Any, *, low: float | None = None,
            high: float | None = None, low_open: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (kind is int and not float(value).is_integer())):
        raise RequestError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}.", param=name)
    if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
        lower = low if low is not None else "-inf"
        upper = high if high is not None else "inf"
        bounds = f"{'(' if low_open else '['}{lower}, {upper}]"
        raise RequestError(400, f"'{name}' must be in {bounds}, got {value}.", param=name)
    return kind(value)
