"""One request's generation: prefill (compressing the KV cache with an eviction policy), then token by token
decoding with the original positions, as a stream of events the engine hands to the HTTP layer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from cachesvc.model_server.sampling import SamplingParams, TokenSampler
from cachesvc.model_server.text_stream import IncrementalDecoder, StopStringMatcher
from cachesvc.policies.kv import KVPolicy, compress
from cachesvc.policies.kv.apply import CompressionReport, attention_modules
from cachesvc.policies.kv.ragged_layer import held_bytes

if TYPE_CHECKING:
    from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class KVUsage:
    """How much of the prompt's KV cache was kept: entries are (layer, KV head, position) triples; bytes are what
    the cache really holds after prefill (keys and values; head-wise layouts are stored packed, plus a slot map)."""

    policy: str | None
    budget: float | None
    entries_full: int
    entries_kept: int
    bytes_full: int
    bytes_kept: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Prefilled:
    """The prompt is in the cache; generation starts."""

    prompt_tokens: int
    kv: KVUsage


@dataclass
class TextDelta:
    text: str


@dataclass
class Finished:
    """``finish_reason`` as OpenAI has it (stop, length, abort); ``stop_reason`` as vLLM has it: the stop string or
    stop token id that ended the answer, None for end-of-sequence or length."""

    finish_reason: str
    stop_reason: str | int | None
    prompt_tokens: int
    completion_tokens: int
    kv: KVUsage


Event = Prefilled | TextDelta | Finished


def kv_usage(cache: DynamicCache, model: PreTrainedModel, prompt_len: int, policy: str | None, budget: float | None,
             report: CompressionReport | None) -> KVUsage:
    """Account the cache right after prefill (``policy`` is the registered name, for the report)."""
    layers = cache.layers
    n_layers = len(attention_modules(model))
    kv_heads = model.config.num_key_value_heads
    head_dim = getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
    per_entry = 2 * head_dim * next(model.parameters()).element_size()  # one key and one value vector
    full = n_layers * kv_heads * prompt_len
    kept = full
    if report is not None and report.layers:
        compressed = len(report.layers)
        kept = report.kept_entries() + (n_layers - compressed) * kv_heads * prompt_len
    held = sum(held_bytes(layer) for layer in layers)
    return KVUsage(policy, budget, full, kept, full * per_entry, held)


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[int],
    params: SamplingParams,
    *,
    policy: KVPolicy | None = None,
    policy_name: str | None = None,
    budget: float | None = None,
    eos_token_ids: frozenset[int] = frozenset(),
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[Event]:
    """Yield :class:`Prefilled`, then :class:`TextDelta` pieces, then one :class:`Finished`."""
    from transformers import DynamicCache

    if not prompt_ids:
        raise ValueError("the prompt is empty")
    cache = DynamicCache(config=model.config)
    sampler = TokenSampler(params, model.config.vocab_size)
    decoder = IncrementalDecoder(tokenizer)
    stops = StopStringMatcher(params.stop)
    end_ids = frozenset(params.stop_token_ids) | (frozenset() if params.ignore_eos else eos_token_ids)
    n_prompt = len(prompt_ids)
    scope = compress(model, policy) if policy is not None else contextlib.nullcontext(None)
    with scope as report:
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[0, -1]
        kv = kv_usage(cache, model, n_prompt, policy_name if policy else None, budget if policy else None, report)
        yield Prefilled(n_prompt, kv)
        produced = 0
        finish = "length"
        stop_reason: str | int | None = None
        while produced < params.max_tokens:
            if cancelled():
                finish = "abort"
                break
            token = sampler.choose(logits)
            produced += 1
            if token in end_ids:
                finish = "stop"
                stop_reason = token if token in params.stop_token_ids else None
                break
            text = stops.feed(decoder.push(token))
            if text:
                yield TextDelta(text)
            if stops.matched is not None:
                finish, stop_reason = "stop", stops.matched
                break
            if produced == params.max_tokens:
                break
            position = torch.tensor([[n_prompt + produced - 1]], dtype=torch.long)
            logits = model(input_ids=torch.tensor([[token]]), past_key_values=cache, position_ids=position,
                           use_cache=True).logits[0, -1]
        tail = stops.flush()
        if tail:
            yield TextDelta(tail)
    yield Finished(finish, stop_reason, n_prompt, produced, kv)
