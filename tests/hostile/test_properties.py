"""Property-based tests (hypothesis) of what every request goes through: the request parser, the cache controls,
the partition and exact keys and the tenant function; and, end to end, any JSON body posted to the real proxy.

Any JSON value in any field gets a served answer or a 4xx with an OpenAI-style error, never a 5xx or an exception.
The JSON values are those the proxy's parser (orjson) can hand over: integers in [-2**63, 2**64 - 1] (larger ones
arrive as floats), finite floats, strings without lone surrogates. Header values are any text, non-ASCII and
surrogate-escaped (aiohttp decodes header bytes as UTF-8 with surrogateescape) included.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from cachesvc.cache.controls import CacheControls, parse_controls
from cachesvc.cache.request_key import CacheRequest, parse_request
from cachesvc.openai import codec
from cachesvc.openai.errors import RequestError
from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES
from cachesvc.server.tenants import ANONYMOUS, tenant_of
from tests.conftest import Proxy
from tests.hostile.conftest import Tally

CASE = "12. Any JSON value in any field, any header value: an answer or a 4xx (properties: parser, keys, tenants)"

# ---------------------------------------------------------------------------------------------------- strategies

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SCALARS = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)

ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
NUMBER_PARAMS = ["temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p"]
INT_PARAMS = ["max_tokens", "max_completion_tokens", "n", "seed", "top_k", "top_logprobs", "logprobs_count"]
OTHER_FIELDS = ["stream", "stream_options", "stop", "tools", "functions", "response_format", "cachesvc", "user",
                "metadata", "store", "service_tier", "logprobs", "logit_bias", "tool_choice", "suffix", "echo"]
KNOWN_FIELDS = ["model", "messages", "prompt", *NUMBER_PARAMS, *INT_PARAMS, *OTHER_FIELDS]
NOT_ANSWER_SHAPING = ["stream", "stream_options", "user", "metadata", "store", "service_tier", "cachesvc"]
NAMESPACES = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)  # what a namespace may be (cache.controls)


def near_valid(field: str) -> st.SearchStrategy[Any]:
    """Values close to what the field takes, edges included, so the checks past the type test get exercised."""
    if field in NUMBER_PARAMS:
        return st.sampled_from([0, 2, -0.0, 2.0000001, -1e-300, 1e308]) | st.floats(-5, 5) | st.integers(-3, 3)
    if field in INT_PARAMS:
        return st.sampled_from([0, 1, -1, 2**63 - 1, 2**64 - 1, -(2**63), 1.0, True]) | st.integers(-3, 3)
    return {
        "model": st.sampled_from(["stub-model", "", " ", "\t\n", "other-model"]) | st.text(max_size=8),
        "stream": st.booleans() | st.sampled_from([0, 1, "true", None]),
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": JSON}) | JSON,
        "stop": st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=3) | st.lists(JSON, max_size=3),
        "tools": st.lists(JSON, max_size=2) | st.just([]),
        "functions": st.lists(JSON, max_size=2),
        "response_format": st.dictionaries(st.sampled_from(["type", "json_schema"]), JSON, max_size=2),
        "cachesvc": cache_options(),
        "messages": messages(),
        "prompt": st.text(max_size=20) | st.lists(st.integers(0, 50_000), max_size=4)
        | st.lists(st.text(max_size=8), max_size=3) | st.just([]),
    }.get(field, JSON)


def content_parts() -> st.SearchStrategy[Any]:
    part = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "input_audio"]) | JSON},
                                 optional={"text": st.text(max_size=20) | JSON, "image_url": JSON})
    return st.lists(part | JSON, max_size=3)


def messages() -> st.SearchStrategy[Any]:
    plausible = st.fixed_dictionaries({"role": st.sampled_from(ROLES),
                                       "content": st.text(max_size=30) | content_parts()})
    anything = st.fixed_dictionaries(
        {},
        optional={"role": st.sampled_from(ROLES) | JSON,
                  "content": st.text(max_size=30) | content_parts() | st.none() | JSON,
                  "name": st.text(max_size=5) | JSON, "tool_calls": JSON, "tool_call_id": JSON},
    )
    return st.lists(plausible, min_size=1, max_size=3) | st.lists(plausible | anything | JSON, max_size=4)


def cache_options() -> st.SearchStrategy[Any]:
    values = {
        "no_cache": st.booleans() | JSON, "no_store": st.booleans() | JSON, "sampled": st.booleans() | JSON,
        "max_age": st.sampled_from([0, 1, -1, 1e308, "10", "nan", "inf", "-0"]) | JSON,
        "ttl": st.sampled_from([0, 1, -1, 0.5, "60", "nan", "inf", True]) | JSON,
        "namespace": NAMESPACES | st.sampled_from(["", "a b", "x" * 65, "ns\n", "é"]) | JSON,
        "category": st.sampled_from([*DEFAULT_CATEGORIES, "weather", "", "Code"]) | JSON,
    }
    return st.fixed_dictionaries({}, optional=values) | st.dictionaries(st.text(max_size=8), JSON, max_size=2) | JSON


@st.composite
def request_bodies(draw: st.DrawFn, endpoint: str, max_changes: int = 4) -> Any:
    """A body that is mostly right, with known fields replaced or dropped; or any JSON value at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    base: dict[str, Any] = {"model": "stub-model", "temperature": 0}
    if endpoint == "chat":
        base["messages"] = [{"role": "user", "content": draw(st.text(min_size=1, max_size=30))}]
    else:
        base["prompt"] = draw(st.text(min_size=1, max_size=30))
    for field in draw(st.lists(st.sampled_from(KNOWN_FIELDS), max_size=max_changes, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            base.pop(field, None)
        else:
            base[field] = draw(near_valid(field) | JSON)
    return base


# Header values as aiohttp hands them over: any text, or undecodable bytes as surrogate escapes.
HEADER_TEXT = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=20)
ESCAPED = st.binary(max_size=12).filter(lambda raw: not set(raw) & set(b"\r\n\x00")).map(
    lambda raw: raw.decode("utf-8", "surrogateescape"))
HEADER_VALUES = HEADER_TEXT | ESCAPED
PRINTABLE_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)  # what a client sends
CONTROL_HEADERS = ["Cache-Control", "x-cachesvc-ttl", "x-cachesvc-namespace", "x-cachesvc-category",
                   "x-cachesvc-sampled"]


def control_header_values(name: str, values: st.SearchStrategy[str] = HEADER_VALUES) -> st.SearchStrategy[str]:
    near = {
        "Cache-Control": st.sampled_from(["no-cache", "no-store", "max-age=0", "max-age=10", "max-age=-1",
                                          "max-age=abc", 'max-age="5"', "No-Cache, max-age=3", ",,", "max-age="]),
        "x-cachesvc-ttl": st.sampled_from(["1", "0", "-1", "1e309", "nan", "inf", "1_000", "٣"]),
        "x-cachesvc-namespace": NAMESPACES | st.sampled_from(["a b", "ns\n", "x" * 65]),
        "x-cachesvc-category": st.sampled_from([*DEFAULT_CATEGORIES, "weather"]),
        "x-cachesvc-sampled": st.sampled_from(["true", "FALSE", " yes ", "maybe", ""]),
    }[name]
    return near | values


@st.composite
def control_headers(draw: st.DrawFn) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name in draw(st.lists(st.sampled_from(CONTROL_HEADERS), max_size=3, unique=True)):
        headers[draw(st.sampled_from([name, name.lower(), name.upper()]))] = draw(control_header_values(name))
    return headers


# `tally` (tests/hostile/conftest.py) is function-scoped: one per test, counting its examples.
FAST = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def reordered(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with the keys of every object in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: reordered(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [reordered(v, rnd) for v in value]
    return value


def parsed_or_refused(endpoint: Any, body: Any) -> CacheRequest | None:
    """parse_request's answer: the request, or None for a 4xx RequestError; any other exception fails the test."""
    try:
        req = parse_request(endpoint, body)
    except RequestError as exc:
        assert 400 <= exc.status < 500, exc.status
        assert exc.message and isinstance(exc.body()["error"]["message"], str)
        codec.dumps(exc.body())  # the error can be written out
        return None
    return req


# ------------------------------------------------------------------------------------------------ request parser


@FAST
@given(endpoint=st.sampled_from(["chat", "completions"]), data=st.data())
def test_the_parser_accepts_or_refuses_with_a_4xx(tally: Tally, endpoint: str, data: st.DataObject) -> None:
    tally.inputs += 1
    body = data.draw(request_bodies(endpoint), label="body")
    req = parsed_or_refused(endpoint, body)
    if req is not None:
        # Accepted: the fields the proxy relies on are what it checked them to be.
        assert isinstance(body, dict)
        assert isinstance(req.model, str) and req.model.strip() and req.model == body["model"]
        assert isinstance(req.stream, bool) and req.stream == body.get("stream", False)
        assert req.temperature is None or (not isinstance(req.temperature, bool) and 0 <= req.temperature <= 2)
        for name in NUMBER_PARAMS + INT_PARAMS:
            value, kinds = body.get(name), (int,) if name in INT_PARAMS else (int, float)
            assert value is None or (isinstance(value, kinds) and not isinstance(value, bool)), name
        for name in ("max_tokens", "max_completion_tokens", "n"):
            assert body.get(name) is None or (isinstance(body[name], int) and body[name] >= 1), name
        if endpoint == "chat":
            assert isinstance(body["messages"], list) and body["messages"]
            for m in body["messages"]:
                assert isinstance(m, dict) and m.get("role") in ROLES, m
                content = m.get("content")
                assert isinstance(content, (str, list)) or (content is None and m["role"] in ("assistant", "function"))
        else:
            assert isinstance(body["prompt"], str) or (isinstance(body["prompt"], list) and body["prompt"])
        assert req.query is None or isinstance(req.query, str)
        assert "cachesvc" not in req.body and req.body == {k: v for k, v in body.items() if k != "cachesvc"}
        codec.dumps(req.body)  # what is forwarded can be written out
        partition = req.partition("tenant", "default")
        assert re.fullmatch(r"[0-9a-f]{64}", partition)
        assert re.fullmatch(r"[0-9a-f]{64}", req.exact_key(partition))


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("field", ["metadata", "tools", "response_format", "logit_bias", "prompt", "messages"])
def test_a_body_nested_deeper_than_json_can_be_written_is_refused(endpoint: str, field: str) -> None:
    deep: Any = "x"
    for _ in range(300):  # orjson reads 1024 levels but writes 254
        deep = [deep]
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "prompt": "q", field: deep}
    assert parsed_or_refused(endpoint, body) is None


@FAST
@given(endpoint=st.sampled_from(["chat", "completions"]), body=JSON)
def test_any_json_value_as_the_whole_body(tally: Tally, endpoint: str, body: Any) -> None:
    tally.inputs += 1
    parsed_or_refused(endpoint, body)


@FAST
@given(headers=control_headers(), body=st.fixed_dictionaries({}, optional={"cachesvc": cache_options()}))
def test_cache_controls_accept_or_refuse_with_a_4xx(tally: Tally, headers: CIMultiDict[str],
                                                    body: dict[str, Any]) -> None:
    tally.inputs += 1
    try:
        controls = parse_controls(headers, body, DEFAULT_CATEGORIES)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    assert isinstance(controls, CacheControls)
    # Accepted: every option was well formed, none silently ignored (the module's promise).
    options = body.get("cachesvc")
    assert options is None or isinstance(options, dict), options
    for value in (controls.max_age_s, controls.ttl_s):
        assert value is None or (isinstance(value, float) and value >= 0)
    assert controls.ttl_s is None or controls.ttl_s > 0
    for name in (controls.namespace, controls.category):
        assert name is None or re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", name), name
    assert controls.category is None or controls.category in DEFAULT_CATEGORIES
    assert isinstance(controls.sampled, bool) and isinstance(controls.no_cache, bool)


# ------------------------------------------------------------------------------------------- partition and keys


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A request the parser accepts, with a varied set of answer-shaping fields."""
    endpoint = draw(st.sampled_from(["chat", "completions"]))
    body: dict[str, Any] = {"model": draw(st.sampled_from(["m", "stub-model", "other"]))}
    if endpoint == "chat":
        history = draw(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                                       "content": st.text(max_size=10)}), max_size=3))
        last = draw(st.text(max_size=20) | st.lists(st.fixed_dictionaries(
            {"type": st.just("text"), "text": st.text(max_size=10)}), min_size=1, max_size=2))
        body["messages"] = [*history, {"role": "user", "content": last}]
    else:
        body["prompt"] = draw(st.text(max_size=20) | st.lists(st.integers(0, 1000), min_size=1, max_size=4))
    optional = {
        "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "max_tokens": st.integers(1, 10**6),
        "seed": INT64, "n": st.integers(1, 4), "stop": st.text(max_size=3) | st.lists(st.text(max_size=3)),
        "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": JSON}), max_size=2),
        "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
        "logit_bias": st.dictionaries(st.text(max_size=3), st.integers(-100, 100), max_size=2),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=4, unique=True)):
        body[name] = draw(optional[name])
    assert parse_request(endpoint, body)
    return endpoint, body


def keys(endpoint: Any, body: dict[str, Any], tenant: str = "tenant", namespace: str = "default") -> tuple[str, str]:
    req = parse_request(endpoint, body)
    partition = req.partition(tenant, namespace)
    return partition, req.exact_key(partition)


@FAST
@given(request=valid_requests(), rnd=st.randoms(use_true_random=False))
def test_keys_are_deterministic_and_ignore_key_order(tally: Tally, request: tuple[str, dict[str, Any]],
                                                     rnd: random.Random) -> None:
    tally.inputs += 1
    endpoint, body = request
    assert keys(endpoint, body) == keys(endpoint, body)
    assert keys(endpoint, reordered(body, rnd)) == keys(endpoint, body)
    # ... also as the bytes a client sends: parsed from its JSON text
    assert keys(endpoint, codec.loads(json.dumps(reordered(body, rnd)))) == keys(endpoint, body)


@FAST
@given(request=valid_requests(), data=st.data())
def test_fields_that_do_not_shape_the_answer_leave_the_keys_alone(tally: Tally, request: tuple[str, dict[str, Any]],
                                                                   data: st.DataObject) -> None:
    tally.inputs += 1
    endpoint, body = request
    values = {"stream": st.booleans(),
              "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
              "user": st.text(max_size=10), "metadata": JSON, "store": JSON, "service_tier": JSON, "cachesvc": JSON}
    changed = dict(body)
    for name in data.draw(st.lists(st.sampled_from(NOT_ANSWER_SHAPING), min_size=1, unique=True), label="fields"):
        changed[name] = data.draw(values[name], label=name)
    assert keys(endpoint, changed) == keys(endpoint, body)


def _answer_shaping_variants() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "model": st.text(min_size=1, max_size=8).filter(str.strip),
        "temperature": st.floats(0, 2), "top_p": st.floats(-1, 1), "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2), "repetition_penalty": st.floats(0, 2), "min_p": st.floats(0, 1),
        "max_tokens": st.integers(1, 2**63), "max_completion_tokens": st.integers(1, 2**63), "n": st.integers(1, 9),
        "seed": INT64, "top_k": INT64, "top_logprobs": st.integers(0, 20), "logprobs_count": st.integers(0, 20),
        "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=3),
        "tools": st.lists(JSON, max_size=2), "functions": st.lists(JSON, max_size=2),
        "response_format": st.dictionaries(st.text(max_size=4), JSON, max_size=2),
        # fields the proxy does not know: forwarded, so they shape the answer too
        "logprobs": JSON, "logit_bias": JSON, "tool_choice": JSON, "suffix": JSON, "echo": JSON, "kv_policy": JSON,
    }


@FAST
@given(request=valid_requests(), field=st.sampled_from(sorted(_answer_shaping_variants())), data=st.data())
def test_any_answer_shaping_difference_splits_the_partition(tally: Tally, request: tuple[str, dict[str, Any]],
                                                            field: str, data: st.DataObject) -> None:
    tally.inputs += 1
    endpoint, body = request
    variants = _answer_shaping_variants()[field]
    one, other = dict(body), dict(body)
    one[field] = data.draw(variants, label="one")
    other[field] = data.draw(variants, label="other")
    assume(codec.canonical(one[field]) != codec.canonical(other[field]))
    assert keys(endpoint, one)[0] != keys(endpoint, other)[0]
    if field != "model" and data.draw(st.booleans(), label="drop"):  # present vs absent differs too
        del other[field]
        assert keys(endpoint, one)[0] != keys(endpoint, other)[0]


@FAST
@given(history=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                               "content": st.text(max_size=8)}), min_size=1, max_size=3),
       other=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                             "content": st.text(max_size=8)}), max_size=3),
       question=st.text(max_size=10), name=st.text(max_size=4))
def test_the_conversation_before_the_question_shapes_the_answer(tally: Tally, history: list[dict[str, Any]],
                                                                other: list[dict[str, Any]], question: str,
                                                                name: str) -> None:
    tally.inputs += 1
    assume(history != other)
    last = {"role": "user", "content": question}
    assert keys("chat", {"model": "m", "messages": [*history, last]})[0] != \
        keys("chat", {"model": "m", "messages": [*other, last]})[0]
    # the last message's other fields (a name) shape it too; only its text is matched by meaning
    named = {**last, "name": name}
    assert keys("chat", {"model": "m", "messages": [*history, named]})[0] != \
        keys("chat", {"model": "m", "messages": [*history, last]})[0]


@FAST
@given(request=valid_requests(), a=st.text(max_size=20), b=st.text(max_size=20))
def test_the_question_decides_the_exact_key_within_a_partition(tally: Tally, request: tuple[str, dict[str, Any]],
                                                               a: str, b: str) -> None:
    tally.inputs += 1
    endpoint, body = request
    field = "messages" if endpoint == "chat" else "prompt"

    def asking(text: str) -> dict[str, Any]:
        if endpoint == "chat":
            return {**body, "messages": [*body["messages"][:-1], {"role": "user", "content": text}]}
        return {**body, field: text}

    (pa, ka), (pb, kb) = keys(endpoint, asking(a)), keys(endpoint, asking(b))
    assert pa == pb
    assert (ka == kb) == (" ".join(a.split()) == " ".join(b.split()))


@FAST
@given(request=valid_requests(), tenants=st.lists(HEADER_VALUES | st.sampled_from(["", ANONYMOUS]), min_size=2,
                                                  max_size=2, unique=True),
       namespaces=st.lists(NAMESPACES, min_size=2, max_size=2, unique=True))
def test_tenants_and_namespaces_split_the_partition(tally: Tally, request: tuple[str, dict[str, Any]],
                                                    tenants: list[str], namespaces: list[str]) -> None:
    tally.inputs += 1
    endpoint, body = request
    t1, t2 = tenants
    n1, n2 = namespaces
    assert keys(endpoint, body, t1, n1)[0] != keys(endpoint, body, t2, n1)[0]
    assert keys(endpoint, body, t1, n1)[0] != keys(endpoint, body, t1, n2)[0]
    assert keys(endpoint, body, t1, n1)[0] != keys(endpoint, body, t2, n2)[0]
    assert keys(endpoint, body, t1, n1) == keys(endpoint, body, t1, n1)


@FAST
@given(question=st.text(max_size=20))
def test_endpoints_never_share_a_partition(tally: Tally, question: str) -> None:
    tally.inputs += 1
    chat = keys("chat", {"model": "m", "messages": [{"role": "user", "content": question}]})
    completion = keys("completions", {"model": "m", "prompt": question})
    assert chat[0] != completion[0] and chat[1] != completion[1]


# ---------------------------------------------------------------------------------------------- tenant function

KEYS = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), min_size=1,
               max_size=24).map(lambda k: "sk-" + k.strip()) | ESCAPED.map(lambda k: "sk-" + k)
OTHER_HEADERS = st.dictionaries(st.sampled_from(["Content-Type", "User-Agent", "Cookie", "x-request-id"]),
                                HEADER_VALUES, max_size=3)


def as_headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict((name.replace("_", "-"), value) for name, value in values.items())


@st.composite
def key_headers(draw: st.DrawFn, key: str) -> CIMultiDict[str]:
    """One way of presenting ``key``: Authorization with a scheme in any case, api-key, x-api-key."""
    way = draw(st.sampled_from(["bearer", "api-key", "x-api-key"]))
    headers = CIMultiDict(draw(OTHER_HEADERS))
    if way == "bearer":
        scheme = "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in "bearer")
        headers[draw(st.sampled_from(["Authorization", "authorization", "AUTHORIZATION"]))] = f"{scheme} {key}"
    else:
        headers[draw(st.sampled_from([way, way.upper()]))] = key
    return headers


@FAST
@given(headers=st.dictionaries(st.sampled_from(["Authorization", "api-key", "x-api-key", "x-team", "X-Tenant"]),
                               HEADER_VALUES, max_size=4),
       tenant_header=st.none() | st.sampled_from(["x-team", "X-Tenant", "Authorization", ""]))
def test_the_tenant_function_is_total_and_deterministic(tally: Tally, headers: dict[str, str],
                                                        tenant_header: str | None) -> None:
    tally.inputs += 1
    first = tenant_of(CIMultiDict(headers), tenant_header)
    assert isinstance(first, str) and first
    assert first == tenant_of(CIMultiDict(headers), tenant_header)
    assert first == ANONYMOUS or first.startswith(("key:", "tenant:"))
    if first.startswith("key:"):
        assert re.fullmatch(r"key:[0-9a-f]{32}", first)


@FAST
@given(key=KEYS, data=st.data())
def test_a_key_is_one_tenant_however_it_is_sent_and_never_shown(tally: Tally, key: str, data: st.DataObject) -> None:
    tally.inputs += 1
    tenants = {tenant_of(data.draw(key_headers(key), label=f"way {i}")) for i in range(3)}
    assert len(tenants) == 1
    tenant = tenants.pop()
    assert tenant.startswith("key:") and key not in tenant  # "sk-" never occurs in "key:" + hex digits


@FAST
@given(pair=st.lists(KEYS, min_size=2, max_size=2, unique_by=str.strip), data=st.data())
def test_different_keys_are_different_tenants(tally: Tally, pair: list[str], data: st.DataObject) -> None:
    tally.inputs += 1
    a, b = (tenant_of(data.draw(key_headers(key), label=key)) for key in pair)
    assert a != b


@FAST
@given(others=OTHER_HEADERS, where=st.sampled_from(["Authorization", "api-key", "x-api-key", None]), data=st.data())
def test_no_key_is_the_anonymous_tenant(tally: Tally, others: dict[str, str], where: str | None,
                                        data: st.DataObject) -> None:
    tally.inputs += 1
    headers = CIMultiDict(others)
    if where is not None:
        blanks = ["", " ", "Bearer", "bearer ", "BEARER   "] if where == "Authorization" else ["", "  "]
        headers[where] = data.draw(st.sampled_from(blanks), label="blank")
    assert tenant_of(headers) == ANONYMOUS
    assert tenant_of(headers, "x-team") == ANONYMOUS  # a tenant header configured but not sent


@FAST
@given(key=KEYS, team=HEADER_TEXT.filter(str.strip), data=st.data())
def test_a_configured_tenant_header_wins_and_never_meets_a_key_tenant(tally: Tally, key: str, team: str,
                                                                       data: st.DataObject) -> None:
    tally.inputs += 1
    headers = data.draw(key_headers(key), label="key")
    keyed = tenant_of(headers, "x-team")
    headers["x-team"] = team
    named = tenant_of(headers, "x-team")
    assert named == "tenant:" + team and named != keyed and keyed == tenant_of(headers)


# ---------------------------------------------------------------------------------------------------- end to end


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def raw_json(value: Any) -> bytes:
    """A body as a client writes it: json.dumps, whose integers may be any size."""
    return json.dumps(value).encode()


@st.composite
def posted(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    endpoint = draw(st.sampled_from(["chat", "completions"]))
    body = draw(request_bodies(endpoint, max_changes=2))
    if isinstance(body, dict) and draw(st.integers(0, 9)) == 0:  # integers past 64 bits, which orjson reads as floats
        body[draw(st.sampled_from(["max_tokens", "seed", "temperature", "n"]))] = draw(
            st.integers(min_value=2**64, max_value=10**30) | st.integers(max_value=-(2**63) - 1, min_value=-(10**30)))
    headers: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(CONTROL_HEADERS), max_size=2, unique=True)):
        headers[name] = draw(control_header_values(name, PRINTABLE_ASCII).filter(str.isprintable))
    if draw(st.booleans()):
        headers["Authorization"] = "Bearer sk-" + draw(st.text("abcdef0123456789", min_size=1, max_size=6))
    return endpoint, raw_json(body), headers


# 150 requests take about a second; CACHESVC_E2E_EXAMPLES=5000 for a longer hunt.
E2E = settings(max_examples=int(os.environ.get("CACHESVC_E2E_EXAMPLES", "150")), deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


# Cases found before, kept closed: each runs on every run, before the generated ones.
PINNED: list[tuple[str, bytes]] = [
    ("chat", raw_json({"model": "stub-model", "messages": [{"role": [], "content": "x"}]})),  # unhashable role
    ("chat", raw_json({"model": "stub-model", "messages": [{"role": "user", "content": "q"}],
                       "metadata": _nested(300)})),  # deeper than orjson writes
    ("completions", raw_json({"model": "stub-model", "prompt": "q", "tools": _nested(300)})),
    ("completions", raw_json({"model": "stub-model", "prompt": "q", "max_tokens": 2**70})),  # read as a float
    ("completions", b'{"model": "stub-model", "prompt": "q", "seed": 1e999}'),  # infinity
    ("chat", b'{"model": "stub-model", "messages": [{"role": "user", "content": "\\ud800"}]}'),  # lone surrogate
]


def pinned(test: Any) -> Any:
    for endpoint, data in reversed(PINNED):
        test = example(request=(endpoint, data, {}))(test)
    return test


@E2E
@given(request=posted())
@pinned
async def test_any_json_body_gets_an_answer_or_a_4xx(tally: Tally, proxy: Proxy, http: aiohttp.ClientSession,
                                                     request: tuple[str, bytes, dict[str, str]]) -> None:
    tally.inputs += 1
    outcome = await assert_answered_or_refused(proxy, http, *request)
    event(outcome)  # shown by pytest --hypothesis-show-statistics


async def assert_answered_or_refused(proxy: Proxy, http: aiohttp.ClientSession, endpoint: str, data: bytes,
                                     headers: dict[str, str]) -> str:
    """2xx with a completion (JSON or a stream ending in [DONE]), or 4xx with an OpenAI error; never a 5xx.
    Returns what happened, as "endpoint status cache-result"."""
    path = "chat/completions" if endpoint == "chat" else "completions"
    async with http.post(f"{proxy.base_url}/{path}", data=data,
                         headers={"Content-Type": "application/json", **headers}) as response:
        status, text = response.status, await response.text()
        content_type, cache = response.content_type, response.headers.get("x-cachesvc-cache")
    assert status < 500, (status, text[:500])
    assert cache in ("hit", "miss", "bypass"), (status, text[:300])
    if status >= 400:
        body = json.loads(text)
        assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    elif content_type == "text/event-stream":
        assert text.rstrip().endswith("data: [DONE]"), text[-300:]
    else:
        body = json.loads(text)
        assert body["object"] == ("chat.completion" if endpoint == "chat" else "text_completion"), body
        assert isinstance(body["choices"], list) and body["choices"]
    return f"{endpoint} {status} {cache}"


async def test_a_text_part_whose_text_is_not_a_string_is_refused(proxy: Proxy, http: aiohttp.ClientSession,
                                                                 tally: Tally) -> None:
    """The proxy checks only that content is a string or an array and forwards the rest: the upstream (here the
    stand-in) must refuse such a part with a 4xx, as vLLM and OpenAI do, not fall over."""
    for text in ({}, 1, None, ["a"]):
        tally.inputs += 1
        body = {"model": "stub-model", "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
        await assert_answered_or_refused(proxy, http, "chat", raw_json(body), {})


def test_no_body_field_poses_as_part_of_the_conversation() -> None:
    """The fingerprint keeps body fields apart from what it derives from the conversation: a top-level field named
    like a derived part ("last_user_extra", "prompt_kind") cannot make two different requests one."""
    alice = {"model": "m", "messages": [{"role": "user", "content": "q", "name": "alice"}],
             "last_user_extra": {"role": "user"}}
    bob = {"model": "m", "messages": [{"role": "user", "content": "q", "name": "bob"}],
           "last_user_extra": {"role": "user"}}
    assert keys("chat", alice)[0] != keys("chat", bob)[0]
    ended = {"model": "m", "messages": [{"role": "system", "content": "s"}], "last_user_extra": {"role": "user"}}
    asked = {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}
    assert keys("chat", ended)[0] != keys("chat", asked)[0]
    assert keys("completions", {"model": "m", "prompt": "q", "prompt_kind": "text"})[0] != \
        keys("completions", {"model": "m", "prompt": "q"})[0]


@pytest.mark.parametrize("body", [{"model": "m", "prompt": [1, 2, 3]},
                                  {"model": "m", "messages": [{"role": "user", "content": [
                                      {"type": "image_url", "image_url": {"url": "data:x"}}]}]}])
def test_streamed_and_plain_requests_share_an_exact_only_entry(body: dict[str, Any]) -> None:
    endpoint = "completions" if "prompt" in body else "chat"
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}, "user": "u"}
    assert keys(endpoint, streamed) == keys(endpoint, body)
