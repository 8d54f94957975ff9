"""GET /openapi.json: an OpenAPI 3.1 description of the proxy's own endpoints, built here as a dict.

It describes what the proxy itself accepts and answers: the OpenAI fields it validates (anything else in a body is
forwarded untouched), the `cachesvc` options object and the per-request headers of `cachesvc.cache.controls`, the
`x-cachesvc-*` response headers, and the OpenAI-style error body of `cachesvc.openai.errors`. Upstream errors
(401, 404 model_not_found, 429, 5xx) are relayed with the upstream's status. The cache categories a request may
name are the configured ones, so the document is built from the config.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from cachesvc.openai.http import json_response
from cachesvc.server.services import SERVICES

OPENAPI_VERSION = "3.1.0"
_INT_RANGE = {"minimum": -(2**63), "maximum": 2**64 - 1}  # what the proxy's JSON parser reads as an integer
_NAME_PATTERN = "^[A-Za-z0-9_.:-]{1,64}$"

Schema = dict[str, Any]


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Schema:
    return _ref("schemas", name)


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> Schema:
    return {"description": description, "content": _json(_schema("Error"))}


_ANSWER_HEADERS = (("x-cachesvc-tier", "CacheTier"), ("x-cachesvc-category", "CacheCategory"),
                   ("x-cachesvc-similarity", "CacheSimilarity"), ("x-cachesvc-entry", "CacheEntry"), ("Age", "Age"),
                   ("Server-Timing", "ServerTiming"), ("x-cachesvc-semantic", "CacheSemantic"),
                   ("x-cachesvc-confidence", "CacheConfidence"), ("x-cachesvc-verified-by", "CacheVerifiedBy"))


def _cache_headers(*, answered: bool) -> Schema:
    """``x-cachesvc-cache`` on every response of the completion endpoints; an answer may carry the rest."""
    headers = {"x-cachesvc-cache": _ref("headers", "CacheResult")}
    if answered:
        headers.update({name: _ref("headers", ref) for name, ref in _ANSWER_HEADERS})
    return headers


def _completion_operation(summary: str, request: str, response: str, operation_id: str) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": (
            "Answered from the cache (exact or semantic tier) or forwarded to the upstream serving `model`. "
            "Every answer carries `x-cachesvc-cache`; hits add the tier, category, similarity, entry id and `Age`. "
            "Fields not listed are forwarded untouched; the `cachesvc` object is the proxy's own and is never "
            "forwarded. An upstream's error is relayed with its status (e.g. 404 `model_not_found`, 429, 5xx)."),
        "tags": ["completions"],
        "security": [{}, {"apiKey": []}, {"apiKeyHeader": []}, {"xApiKeyHeader": []}],
        "parameters": [_ref("parameters", name) for name in
                       ("CacheControl", "CacheTtl", "CacheNamespace", "CacheCategory", "CacheSampled")],
        "requestBody": {"required": True, "content": _json(_schema(request))},
        "responses": {
            "200": {
                "description": "The answer: JSON, or an SSE stream ending in `data: [DONE]` when `stream` is true.",
                "headers": _cache_headers(answered=True),
                "content": {**_json(_schema(response)),
                            "text/event-stream": {"schema": _schema("StreamEvent")}},
            },
            "400": {**_error("A malformed body, field or cache control; `param` names it."),
                    "headers": _cache_headers(answered=False)},
            "404": {**_error("The upstream does not serve `model` (relayed), or no upstream is configured for it."),
                    "headers": _cache_headers(answered=False)},
            "413": {**_error("The body is larger than `server.max_body_bytes`."),
                    "headers": _cache_headers(answered=False)},
            "401": _error("`tenants.require_known_key` is on and the key is not a configured tenant's "
                          "(`invalid_api_key`)."),
            "429": {**_error("The tenant is over its `requests_per_s` or `tokens_per_min` (`rate_limit_exceeded`), "
                             "or the upstream's 429 relayed; `Retry-After` says when to come back."),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
            "502": _error("The upstream is unreachable, broke off its answer or sent a malformed one."),
            "503": {**_error("Every upstream for the model has its circuit open (`upstream_circuit_open`), or the "
                             "upstream's 503 relayed."), "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
            "504": _error("The upstream did not answer in time."),
            "default": _error("Any other upstream error, relayed with its status."),
        },
    }


def _message_schemas() -> dict[str, Schema]:
    content_part = {
        "type": "object",
        "description": "A content part. Only `{\"type\": \"text\", \"text\": ...}` parts are matched by meaning; a "
                       "message with any other part (image, audio, file) is cached on the exact tier only.",
        "required": ["type"],
        "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
    }
    content = {"anyOf": [{"type": "string"}, {"type": "array", "items": _schema("ContentPart")}]}
    return {
        "ContentPart": content_part,
        "Message": {
            "description": "A chat message. `content` may be null (or absent) only for assistant and function "
                           "messages (a tool call); other fields (name, tool_calls, tool_call_id) are forwarded.",
            "anyOf": [
                {"type": "object", "required": ["role", "content"],
                 "properties": {"role": {"enum": ["system", "developer", "user", "tool"]}, "content": content}},
                {"type": "object", "required": ["role"],
                 "properties": {"role": {"enum": ["assistant", "function"]},
                                "content": {"anyOf": [*content["anyOf"], {"type": "null"}]}}},
            ],
        },
    }


def _sampling_properties() -> dict[str, Schema]:
    """The fields every completion request shares, each as the proxy validates it."""
    number = {"type": "number"}
    integer = {"type": "integer", **_INT_RANGE}
    at_least_one = {"type": "integer", "minimum": 1, "maximum": _INT_RANGE["maximum"]}
    return {
        "model": {"type": "string", "minLength": 1, "pattern": "\\S",
                  "description": "The model; routes the request to the upstream that serves it.",
                  "examples": ["SmolLM2-135M-Instruct"]},
        "stream": {"type": "boolean", "default": False},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2,
                        "description": "Above `cache.max_cacheable_temperature` the request bypasses the cache "
                                       "unless it is marked `sampled`."},
        "top_p": number, "presence_penalty": number, "frequency_penalty": number,
        "repetition_penalty": number, "min_p": number,
        "max_tokens": at_least_one, "max_completion_tokens": at_least_one, "n": at_least_one,
        "seed": integer, "top_k": integer, "top_logprobs": integer, "logprobs_count": integer,
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "tools": {"type": "array", "items": {"type": "object"}},
        "functions": {"type": "array", "items": {"type": "object"}},
        "response_format": {"type": "object"},
        "user": {"type": "string", "description": "Forwarded; does not shape the answer, so not part of the key."},
        "cachesvc": _schema("CacheOptions"),
    }


def _request_schemas(categories: list[str]) -> dict[str, Schema]:
    shared = _sampling_properties()
    return {
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {**shared,
                           "messages": {"type": "array", "minItems": 1, "items": _schema("Message")}},
            "additionalProperties": True,
        },
        "CompletionRequest": {
            "type": "object",
            "required": ["model", "prompt"],
            "properties": {**shared, "prompt": {
                "description": "A string (matched by meaning), or a non-empty array: token ids, a batch of "
                               "strings or of token arrays (exact tier only).",
                "anyOf": [{"type": "string"},
                          {"type": "array", "minItems": 1, "items": {"type": "string"}},
                          {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0,
                                                                     "maximum": 2**31}},
                          {"type": "array", "minItems": 1,
                           "items": {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                                "maximum": 2**31}}}]}},
            "additionalProperties": True,
        },
        "CacheOptions": {
            "type": "object",
            "description": "The proxy's own per-request options (the openai client's `extra_body={\"cachesvc\": "
                           "{...}}`); never forwarded. A header of the same meaning wins.",
            "additionalProperties": False,
            "properties": {
                "no_cache": {"type": "boolean", "description": "Don't read the cache; do store the fresh answer."},
                "no_store": {"type": "boolean", "description": "Neither read nor store."},
                "max_age": {"type": "number", "minimum": 0,
                            "description": "Accept only entries younger than this many seconds."},
                "ttl": {"type": "number", "exclusiveMinimum": 0,
                        "description": "Lifetime in seconds of the entry this request writes."},
                "namespace": {"type": "string", "pattern": _NAME_PATTERN,
                              "description": "A separate cache within the tenant."},
                "category": {"type": "string", "enum": categories,
                             "description": "Overrides the automatic category."},
                "sampled": {"type": "boolean", "description": "Cache even though temperature > 0."},
            },
        },
    }


def _response_schemas() -> dict[str, Schema]:
    usage = {"type": "object", "properties": {name: {"type": "integer"} for name in
                                              ("prompt_tokens", "completion_tokens", "total_tokens")}}
    envelope = {"id": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"},
                "usage": usage}
    finish = {"type": ["string", "null"]}
    return {
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {**envelope, "object": {"const": "chat.completion"}, "choices": {"type": "array", "items": {
                "type": "object", "required": ["index", "message"],
                "properties": {"index": {"type": "integer"}, "finish_reason": finish, "message": {
                    "type": "object", "required": ["role"],
                    "properties": {"role": {"type": "string"}, "content": {"type": ["string", "null"]},
                                   "tool_calls": {"type": "array"}}}}}}},
        },
        "Completion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {**envelope, "object": {"const": "text_completion"}, "choices": {"type": "array", "items": {
                "type": "object", "required": ["index", "text"],
                "properties": {"index": {"type": "integer"}, "text": {"type": "string"}, "finish_reason": finish}}}},
        },
        "StreamEvent": {
            "type": "object",
            "description": "One server-sent event of a streamed answer: `data` holds a chunk as JSON, the final "
                           "`[DONE]`, or (when the upstream broke off) an error body.",
            "required": ["data"],
            "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
                           "retry": {"type": "integer"}},
        },
        "Error": {
            "type": "object",
            "description": "OpenAI's error body, as the proxy writes it (`cachesvc.openai.errors`) and as it relays "
                           "an upstream's.",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                               "param": {"type": ["string", "null"]},
                               "code": {"type": ["string", "integer", "null"]}}}},
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
                "type": "object", "required": ["id"],
                "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                               "created": {"type": "integer"}, "owned_by": {"type": "string"}}}}},
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["ok", "starting", "error", "degraded"]},
                           "entries": {"type": "integer"}, "loaded": {"type": "integer"},
                           "cache": {"type": "string"}, "model": {"type": "string"}, "error": {"type": "string"},
                           "store": {"type": "string"}, "reason": {"type": "string"}, "for_s": {"type": "number"}},
        },
        "InvalidateRequest": {
            "type": "object",
            "description": "Which entries to remove: any of these (all must match), or `{\"all\": true}`.",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "category": {"type": "string"}, "namespace": {"type": "string"},
                "tenant": {"type": "string", "description": "A tenant id, or a tenant header's value."},
                "api_key": {"type": "string", "description": "The tenant of the client sending this API key."},
                "model": {"type": "string"},
                "entry_id": {"anyOf": [{"type": "integer", **_INT_RANGE}, {"type": "string", "pattern": "^[0-9]+$"}]},
                "all": {"type": "boolean"},
                "dry_run": {"type": "boolean", "description": "List the matching entries, remove nothing."},
            },
        },
        "InvalidateResult": {
            "type": "object",
            "required": ["dry_run", "matched", "entry_ids"],
            "properties": {"dry_run": {"type": "boolean"}, "matched": {"type": "integer"},
                           "entry_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 1000}},
        },
        "Stats": {"type": "object", "description": "The cache's, the embedder's, the upstreams', the verifier's, "
                                                   "online agreement's and the judge's statistics."},
        "AdapterPools": {
            "type": "object",
            "required": ["pools"],
            "properties": {"pools": {"type": "array", "items": {
                "type": "object", "required": ["name", "router", "adapters", "replicas"],
                "properties": {"name": {"type": "string"}, "router": {"type": "string"},
                               "adapters": {"type": "array", "items": {"type": "object"}},
                               "replicas": {"type": "object"}}}}},
        },
        "FeedbackRequest": {
            "type": "object",
            "required": ["id", "reward"],
            "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 256,
                                  "description": "The `id` of a routed completion (an adapter pool's answer)."},
                           "reward": {"type": "number", "minimum": 0, "maximum": 1}},
        },
        "FeedbackResult": {
            "type": "object",
            "required": ["object", "id", "pool", "adapter", "reward"],
            "properties": {"object": {"const": "feedback"}, "id": {"type": "string"}, "pool": {"type": "string"},
                           "adapter": {"type": "string"}, "reward": {"type": "number"}},
        },
        "ExplainRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["query", "cached"],
            "properties": {"query": {"type": "string", "minLength": 1}, "cached": {"type": "string", "minLength": 1},
                           "category": {"type": "string", "description": "Default: the category the proxy gives "
                                                                         "`query`."}},
        },
        "ExplainResult": {
            "type": "object",
            "required": ["category", "similarity", "prefilter_threshold", "verifier", "probability", "bar",
                         "target_precision", "decision", "relations", "features"],
            "properties": {
                "category": {"type": "string"}, "similarity": {"type": "number"},
                "prefilter_threshold": {"type": "number"}, "verifier": {"type": "string"},
                "probability": {"type": "number"}, "bar": {"type": "number"}, "target_precision": {"type": "number"},
                "rule": {"type": ["string", "null"]}, "decision": {"type": "string"},
                "left_over": {"type": ["object", "null"]}, "relations": {"type": "array"},
                "features": {"type": "object"},
            },
        },
    }


def _parameters(categories: list[str]) -> dict[str, Schema]:
    def header(name: str, description: str, schema: Schema) -> Schema:
        return {"name": name, "in": "header", "required": False, "description": description, "schema": schema}

    directive = "(no-cache|no-store|max-age=[0-9]{1,9})"
    seconds = "^[0-9]{0,8}[1-9](\\.[0-9]{1,3})?$"
    return {
        "CacheControl": header("Cache-Control", "`no-cache` (don't read; do store), `no-store` (neither), "
                               "`max-age=N` (only entries younger than N seconds); other directives are ignored.",
                               {"type": "string", "pattern": f"^{directive}(, ?{directive})*$"}),
        "CacheTtl": header("x-cachesvc-ttl", "Lifetime in seconds of the entry this request writes (> 0).",
                           {"type": "string", "pattern": seconds}),
        "CacheNamespace": header("x-cachesvc-namespace", "A separate cache within the tenant.",
                                 {"type": "string", "pattern": _NAME_PATTERN}),
        "CacheCategory": header("x-cachesvc-category", "Overrides the automatic category.",
                                {"type": "string", "enum": categories}),
        "CacheSampled": header("x-cachesvc-sampled", "Cache even though temperature > 0.",
                               {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}),
    }


def _headers() -> dict[str, Schema]:
    def header(description: str, schema: Schema, *, required: bool = False) -> Schema:
        return {"description": description, "required": required, "schema": schema}

    return {
        "CacheResult": header("Where the answer came from.", {"enum": ["hit", "miss", "bypass"]}, required=True),
        "CacheTier": header("On a hit: the tier that served it.", {"enum": ["exact", "semantic", "inflight"]}),
        "CacheCategory": header("The request's cache category.", {"type": "string"}),
        "CacheSimilarity": header("On a hit: cosine similarity to the cached question (1.0000 on the exact tier).",
                                  {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{4}$"}),
        "CacheConfidence": header("On a semantic hit: the verifier's probability that the cached answer serves "
                                  "this question (it cleared its category's calibrated bar).",
                                  {"type": "string", "pattern": "^[0-9]\\.[0-9]{4}$"}),
        "CacheVerifiedBy": header("On a semantic hit the judge model confirmed (below the bar): `judge`.",
                                  {"enum": ["judge"]}),
        "CacheEntry": header("On a hit: the id of the entry served.", {"type": "string", "pattern": "^[0-9]+$"}),
        "Age": header("On a hit: the entry's age in seconds.", {"type": "string", "pattern": "^[0-9]+$"}),
        "ServerTiming": header("The lookup's cost by stage, in milliseconds.", {"type": "string"}),
        "CacheSemantic": header("Set when the semantic tier was left out for this request, with the reason "
                                "(`skipped:query_too_long`: the question is longer than `cache.max_query_chars`).",
                                {"type": "string"}),
    }


def _admin_operation(operation_id: str, summary: str, ok: Schema, **extra: Any) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin"],
        "security": [{"adminKey": []}, {"adminBearer": []}],
        **extra,
        "responses": {
            "200": {"description": "Done.", "content": _json(ok)},
            **({"400": _error("A malformed selector; `param` names the field.")} if "requestBody" in extra else {}),
            "401": _error("Missing or wrong admin key."),
            "403": _error("Admin endpoints are disabled (no `server.admin_key`)."),
            "503": _error("The cache is still starting."),
        },
    }


def _passthrough_operation(method: str) -> Schema:
    operation: Schema = {
        "operationId": f"passthrough_{method}",
        "summary": "Any other /v1 call: passed through to the upstream untouched, streamed both ways.",
        "description": "Goes to the default upstream, or to the one serving the JSON body's `model`. The "
                       "response is the upstream's, with `x-cachesvc-cache: bypass` added. `path` stands for the "
                       "rest of the path below /v1 (it may hold slashes); it goes as the client encoded it, and "
                       "only if it stays under the upstream's base path however often it is decoded (no dot or "
                       "empty segments, backslashes or control characters). Methods: GET, HEAD, POST, PUT, PATCH, "
                       "DELETE, OPTIONS; any other is refused with 405.",
        "tags": ["pass-through"],
        "parameters": [{"name": "path", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}}],
        "responses": {
            "400": _error("A JSON body nested deeper than 64 levels."),
            "404": _error("The proxy refuses a path that could leave the upstream's base path, or the upstream "
                          "has no such path (relayed)."),
            "414": _error("The path is longer than 2 KiB."),
            "502": _error("The upstream is unreachable."),
            "504": _error("The upstream did not answer in time."),
            "default": {"description": "The upstream's response, relayed, with `x-cachesvc-cache: bypass`.",
                        "headers": {"x-cachesvc-cache": {"description": "Always `bypass` on a relayed response.",
                                                         "schema": {"const": "bypass"}}}},
        },
    }
    if method in ("post", "put", "patch"):
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {}}}}
    return operation


def build_openapi(categories: Iterable[str] = ("default",), *, version: str = "0.1.0") -> dict[str, Any]:
    """The document; ``categories`` are the cache categories a request may name (the configured ones)."""
    names = sorted(categories)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "cachesvc",
            "version": version,
            "description": "A caching proxy for OpenAI-compatible model servers. Its own endpoints: the cached "
                           "completion endpoints, the merged model list, pass-through for the rest of /v1, "
                           "health, metrics and admin.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name} for name in ("completions", "models", "pass-through", "operations", "admin")],
        "paths": {
            "/v1/chat/completions": {"post": _completion_operation(
                "A chat completion, from the cache or the upstream.", "ChatCompletionRequest", "ChatCompletion",
                "create_chat_completion")},
            "/v1/completions": {"post": _completion_operation(
                "A text completion, from the cache or the upstream.", "CompletionRequest", "Completion",
                "create_completion")},
            "/v1/models": {"get": {
                "operationId": "list_models",
                "summary": "The union of every upstream's models.",
                "tags": ["models"],
                "responses": {"200": {"description": "The models.", "content": _json(_schema("ModelList"))},
                              "502": _error("No upstream answered."),
                              "default": _error("Every upstream failed; the first one's status.")},
            }},
            "/v1/feedback": {"post": {
                "operationId": "post_feedback",
                "summary": "A reward in [0, 1] for a routed answer, once, from the tenant that asked.",
                "tags": ["models"],
                "requestBody": {"required": True, "content": _json(_schema("FeedbackRequest"))},
                "responses": {"200": {"description": "The router learned it.",
                                      "content": _json(_schema("FeedbackResult"))},
                              "400": _error("Not a JSON object with a string `id` and a `reward` from 0 to 1."),
                              "404": _error("No routed answer with this id awaits feedback."),
                              "409": _error("This answer has already been rewarded."),
                              "410": _error("The answer's feedback window has closed."),
                              "413": _error("The body is larger than 4 KiB."),
                              "default": _error("Any other error, as OpenAI error JSON.")},
            }},
            "/v1/{path}": {method: _passthrough_operation(method) for method in ("get", "post", "put", "patch",
                                                                                  "delete")},
            "/healthz": {"get": {
                "operationId": "healthz",
                "summary": "200 once the embedding model and the index are ready; 503 (with the reason) before.",
                "tags": ["operations"],
                "responses": {"200": {"description": "Ready; or `degraded` (the shared store is unreachable, with the "
                                                     "reason): still serving, straight from the upstream.",
                                      "content": _json(_schema("Health"))},
                              "503": {"description": "Starting, or failed to start.",
                                      "content": _json(_schema("Health"))}},
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics.",
                "tags": ["operations"],
                "responses": {"200": {"description": "The Prometheus text format.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document.",
                "tags": ["operations"],
                "responses": {"200": {"description": "OpenAPI 3.1.",
                                      "content": _json({"type": "object", "required": ["openapi", "paths"]})}},
            }},
            "/admin/stats": {"get": _admin_operation("admin_stats", "Cache, embedder and upstream statistics.",
                                                     _schema("Stats"))},
            "/admin/adapters": {"get": _admin_operation(
                "admin_adapters", "Adapter pools: residency per replica and the router's estimates per adapter.",
                _schema("AdapterPools"))},
            "/admin/invalidate": {"post": _admin_operation(
                "admin_invalidate", "Remove (or, with dry_run, list) the entries a selector names.",
                _schema("InvalidateResult"),
                requestBody={"required": True, "content": _json(_schema("InvalidateRequest"))})},
            "/admin/explain": {"post": _admin_operation(
                "admin_explain", "Why the cache would or would not serve one question's answer for another.",
                _schema("ExplainResult"),
                requestBody={"required": True, "content": _json(_schema("ExplainRequest"))})},
        },
        "components": {
            "schemas": {**_message_schemas(), **_request_schemas(names), **_response_schemas()},
            "parameters": _parameters(names),
            "headers": _headers(),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "The client's API key: forwarded upstream; its hash is the tenant "
                                          "(unless a tenant header is configured). Optional."},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "api-key",
                                 "description": "The API key as Azure OpenAI clients send it."},
                "xApiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "adminKey": {"type": "apiKey", "in": "header", "name": "x-admin-key",
                             "description": "`server.admin_key`."},
                "adminBearer": {"type": "http", "scheme": "bearer", "description": "`server.admin_key`."},
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    config = request.app[SERVICES].config
    try:
        version = importlib.metadata.version("cachesvc")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "0.0.0"
    return json_response(build_openapi(config.cache.categories, version=version))
