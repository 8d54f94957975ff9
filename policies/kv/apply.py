"""Apply a KV policy to a Llama-style transformers model (transformers 5.23, ``DynamicCache``).

``with compress(model, policy) as report:`` registers two hooks on every attention module:

- a forward hook that, right after **prefill** (the layer's cache was empty before this forward and the forward
  has more than one token), computes the window queries (``q_proj`` + the model's own RoPE ``cos/sin`` passed to
  the layer, q-norm where present), scores the prefix, selects and replaces the layer's ``keys``/``values`` with
  the gathered ones, so the memory is really released. Later forwards on the same cache (a question appended to
  the compressed context, decoding) are not compressed.
- a forward pre-hook that, on layers whose heads keep unequal numbers of entries (stored packed by
  :class:`.ragged_layer.HeadRaggedLayer`, attended in the padded layout of :mod:`.layout`), replaces
  ``attention_mask`` with a per-head mask hiding the padding slots.

The hooks are removed in ``finally``. Decode inside the context when the policy is head-wise (the padding mask
lives in the pre-hook). After pruning, pass ``position_ids`` with the original positions
(:func:`generate_with_policy` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .base import AttentionModule, KVPolicy, ScoreInputs
from .global_pool import GlobalBudgetPool
from .layer_defensivekv import LayerDefensiveKVPolicy
from .layout import VALID_ATTR, gather_kept, headwise_attention_mask
from .ragged_layer import HeadRaggedLayer, held_bytes

if TYPE_CHECKING:
    from transformers import DynamicCache, PreTrainedModel
    from transformers.cache_utils import CacheLayerMixin


@dataclass
class LayerRecord:
    """What one layer kept. ``kept_per_head`` ``[b, kv_heads]`` counts real entries (window included);
    ``stored_len`` is the per-head length of the layout attention sees (padded to the longest head);
    ``positions`` ``[b, kv_heads, stored_len]`` the original position of each slot (-1 = padding).
    ``scores``/``keep`` only with ``record_scores``."""

    q_len: int
    kept_per_head: torch.Tensor
    stored_len: int
    positions: torch.Tensor
    scores: torch.Tensor | None = None
    keep: torch.Tensor | None = None


@dataclass
class CompressionReport:
    """Filled by :func:`compress` during prefill, one record per compressed layer (by layer index)."""

    layers: dict[int, LayerRecord] = field(default_factory=dict)

    def kept_entries(self) -> int:
        """Real KV entries kept (per layer x head, summed over layers, heads and the batch)."""
        return int(sum(int(r.kept_per_head.sum()) for r in self.layers.values()))

    def padded_entries(self) -> int:
        """Entries of the padded layout attention sees (what a padded cache would hold; the cache holds the kept
        entries packed, see :func:`.ragged_layer.held_bytes`)."""
        return int(sum(r.stored_len * r.kept_per_head.numel() for r in self.layers.values()))

    def full_entries(self) -> int:
        """Entries an uncompressed cache would hold for the same layers."""
        return int(sum(r.q_len * r.kept_per_head.numel() for r in self.layers.values()))


def attention_modules(model: torch.nn.Module) -> list[AttentionModule]:
    """The self-attention modules of a Llama-style model (q/k/v/o projections and a ``layer_idx``)."""
    mods = [
        m
        for m in model.modules()
        if all(hasattr(m, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "layer_idx"))
    ]
    if not mods:
        raise ValueError(f"{type(model).__name__} has no Llama-style attention modules (q/k/v/o_proj + layer_idx)")
    return mods


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def window_queries(
    module: AttentionModule, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor], w: int
) -> torch.Tensor:
    """Queries of the last ``w`` tokens ``[b, q_heads, w, d]`` with the model's RoPE (and q-norm if present)."""
    b = hidden_states.shape[0]
    d = module.head_dim
    q = module.q_proj(hidden_states[:, -w:]).view(b, w, -1, d)
    if hasattr(module, "q_norm"):
        q = module.q_norm(q)
    q = q.transpose(1, 2)
    cos, sin = position_embeddings
    cos, sin = cos[:, -w:].unsqueeze(1), sin[:, -w:].unsqueeze(1)
    return q * cos + _rotate_half(q) * sin


def _cache_layer(cache: DynamicCache | None, layer_idx: int) -> CacheLayerMixin | None:
    layers = getattr(cache, "layers", None)
    if layers is None or layer_idx >= len(layers):
        return None
    return layers[layer_idx]


class _Compressor:
    def __init__(self, model: torch.nn.Module, policy: KVPolicy, report: CompressionReport, record: bool) -> None:
        self.policy = policy
        self.report = report
        self.record = record
        self.modules = attention_modules(model)
        self.n_layers = len(self.modules)
        self.attn_impl = getattr(model.config, "_attn_implementation", "sdpa")
        # Layer-DefensiveKV: the layers scored so far during this prefill, cut to the global top-k as it goes.
        self.pool: GlobalBudgetPool | None = None

    # -- prefill hook -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def after_attention(self, module: AttentionModule, args: tuple[Any, ...], kwargs: dict[str, Any],
                        output: object) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        cache = kwargs.get("past_key_values")
        layer = _cache_layer(cache, module.layer_idx)
        if hidden is None or layer is None or not getattr(layer, "is_initialized", False):
            return None
        q_len = hidden.shape[1]
        # Prefill from an empty cache only: the layer holds exactly this forward's tokens.
        if q_len <= 1 or isinstance(layer, HeadRaggedLayer):
            return None
        if layer.get_seq_length() != q_len:
            return None
        policy = self.policy
        if not policy.applies_to(q_len):
            return None
        w = policy.window_size
        queries = None
        if policy.needs_queries:
            queries = window_queries(module, hidden, kwargs["position_embeddings"], w)
        inputs = ScoreInputs(module, hidden, layer.keys, layer.values, queries, w)
        scores = policy.score(inputs).float()
        if policy.global_budget:
            self._pool_layer(cache, module.layer_idx, layer, scores, q_len)
            return None
        self._prune(cache, module.layer_idx, layer, scores, policy.select(scores), q_len)
        return None

    def _pool_layer(self, cache: DynamicCache, idx: int, layer: CacheLayerMixin, scores: torch.Tensor,
                    q_len: int) -> None:
        policy = self.policy
        if not isinstance(policy, LayerDefensiveKVPolicy):
            raise TypeError(f"{policy.name}: a global budget needs a LayerDefensiveKVPolicy's budget layers and pool")
        pool = self.pool
        if pool is not None and idx != pool.layers[-1].index + 1:
            pool = None  # a new prefill began before the last one finished (it raised): start over
        group = policy.budget_layers(idx, self.n_layers)
        if pool is None:
            n_keep = policy.prefix_budget(q_len) * scores.shape[1] * len(group)
            pool = GlobalBudgetPool(n_keep, policy.window_size, policy.prefill_pool)
        self.pool = pool
        pool.add(idx, layer, scores, q_len, record=self.record)
        for p in pool.layers:  # layers cut by the pool were replaced (packed)
            cache.layers[p.index] = p.layer
        if idx == group[-1]:
            self._finish_pool(cache, pool)

    def _finish_pool(self, cache: DynamicCache, pool: GlobalBudgetPool) -> None:
        """Every layer of the budget group is scored: the last cut leaves exactly its top-k; record what each layer
        kept."""
        pool.cut()
        w = self.policy.window_size
        for p in pool.layers:
            held = torch.isfinite(p.scores)
            b, h, m = held.shape
            positions = p.positions
            if positions is None:
                positions = torch.arange(m + w, device=held.device).expand(b, h, m + w)
            keep = None
            if self.record:
                n = p.q_len - w
                slots = positions[..., :m]
                keep = torch.zeros(b, h, n + 1, dtype=torch.bool, device=held.device)
                keep.scatter_(-1, torch.where(slots >= 0, slots, n), True)
                keep = keep[..., :n]
            self.report.layers[p.index] = LayerRecord(
                q_len=p.q_len,
                kept_per_head=held.sum(-1) + w,
                stored_len=p.layer.get_seq_length(),
                positions=positions,
                scores=p.full_scores,
                keep=keep,
            )
            cache.layers[p.index] = p.layer
        self.pool = None

    def _prune(self, cache: DynamicCache, idx: int, layer: CacheLayerMixin, scores: torch.Tensor, keep: torch.Tensor,
               q_len: int) -> None:
        keys, values, valid, positions, _ = gather_kept(layer.keys, layer.values, keep, self.policy.window_size)
        if valid is None:
            layer.keys, layer.values = keys, values
        else:
            cache.layers[idx] = HeadRaggedLayer(keys, values, valid)
        self.report.layers[idx] = LayerRecord(
            q_len=q_len,
            kept_per_head=keep.sum(-1) + self.policy.window_size,
            stored_len=keys.shape[-2],
            positions=positions,
            scores=scores if self.record else None,
            keep=keep if self.record else None,
        )

    # -- padding mask -------------------------------------------------------------------------------------------
    def before_attention(self, module: AttentionModule, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Per-head padding mask; also re-sizes the causal mask on layers whose length differs from layer 0's
        (the model sizes its mask from the first layer; pruned layers can have other lengths)."""
        layer = _cache_layer(kwargs.get("past_key_values"), module.layer_idx)
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if layer is None or hidden is None or not getattr(layer, "is_initialized", False):
            return None
        valid = getattr(layer, VALID_ATTR, None)
        cache_len, q_len = layer.get_seq_length(), hidden.shape[1]
        am = kwargs.get("attention_mask")
        mismatched = isinstance(am, torch.Tensor) and am.dim() == 4 and am.shape[-1] != cache_len + q_len
        if valid is None and not mismatched:
            return None
        if mismatched:
            am = None  # rebuilt bottom-right causal (prompts carry no padding)
        if valid is None:
            valid = torch.ones(hidden.shape[0], module.config.num_key_value_heads, 0, dtype=torch.bool,
                               device=hidden.device)
        group = module.config.num_attention_heads // module.config.num_key_value_heads
        mask = headwise_attention_mask(
            valid, cache_len, q_len, group, am, float_dtype=hidden.dtype if self.attn_impl == "eager" else None
        )
        return args, {**kwargs, "attention_mask": mask}


@contextmanager
def compress(model: torch.nn.Module, policy: KVPolicy, *, record_scores: bool = False) -> Iterator[CompressionReport]:
    """Compress the KV cache of every prefill run inside the block; yields a :class:`CompressionReport`.

    ``record_scores=True`` keeps each layer's scores and keep mask in the report (tests, analysis).
    """
    comp = _Compressor(model, policy, CompressionReport(), record_scores)
    handles = []
    try:
        for m in comp.modules:
            handles.append(m.register_forward_pre_hook(comp.before_attention, with_kwargs=True))
            handles.append(m.register_forward_hook(comp.after_attention, with_kwargs=True))
        yield comp.report
    finally:
        for h in handles:
            h.remove()
        comp.pool = None


@contextmanager
def record_prefill_inputs(model: torch.nn.Module) -> Iterator[dict[int, dict[str, object]]]:
    """Capture what the prefill hook needs (``hidden_states``, ``position_embeddings``) for every attention layer,
    so that several policies can be applied to copies of one full prefill with :func:`compress_cache`."""
    captured: dict[int, dict[str, object]] = {}

    def hook(module: AttentionModule, args: tuple[Any, ...], kwargs: dict[str, Any], output: object) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        captured[module.layer_idx] = {"hidden_states": hidden, "position_embeddings": kwargs["position_embeddings"]}

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in attention_modules(model)]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def compress_cache(
    model: torch.nn.Module,
    cache: object,
    policy: KVPolicy,
    inputs: dict[int, dict[str, object]],
    *,
    record_scores: bool = False,
) -> CompressionReport:
    """Compress an already prefilled (full) cache in place, from inputs captured by :func:`record_prefill_inputs`.
    Equivalent to having run the prefill inside :func:`compress`. Decode head-wise layouts inside
    :func:`headwise_masking`."""
    comp = _Compressor(model, policy, CompressionReport(), record_scores)
    for m in comp.modules:
        kw = {**inputs[m.layer_idx], "past_key_values": cache}
        comp.after_attention(m, (), kw, None)
    return comp.report


@contextmanager
def headwise_masking(model: torch.nn.Module) -> Iterator[None]:
    """Only the padding-mask pre-hooks of :func:`compress` (for caches compressed by :func:`compress_cache`)."""
    comp = _Compressor(model, KVPolicy(), CompressionReport(), False)
    handles = [m.register_forward_pre_hook(comp.before_attention, with_kwargs=True) for m in comp.modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class GenerationResult:
    """Greedy continuation ``tokens`` ``[b, new]`` and the cache accounting of the compressed prefill:
    entries kept and full (over layers x heads x batch), and the bytes the cache held right after it."""

    tokens: torch.Tensor
    kv_entries_kept: int
    kv_entries_full: int
    kv_bytes_held: int
    report: CompressionReport


@torch.no_grad()
def generate_with_policy(
    model: PreTrainedModel,
    tokenizer: object | None,
    prompt_ids: torch.Tensor,
    policy: KVPolicy,
    max_new_tokens: int,
    *,
    question_ids: torch.Tensor | None = None,
    eos_token_id: int | None = None,
) -> GenerationResult:
    """Prefill ``prompt_ids`` ``[b, L]`` (equal lengths, no padding), compress, optionally append
    ``question_ids`` uncompressed, then decode greedily with the original positions.

    Stops early when every row has produced ``eos_token_id`` (default: the tokenizer's, if a tokenizer is given;
    finished rows are then filled with it).
    """
    from transformers import DynamicCache

    if prompt_ids.dim() != 2:
        raise ValueError(f"prompt_ids must be [batch, seq], got {tuple(prompt_ids.shape)}")
    if eos_token_id is None and tokenizer is not None:
        eos_token_id = getattr(tokenizer, "eos_token_id", None)
    dev = next(model.parameters()).device
    prompt_ids = prompt_ids.to(dev)
    b, L = prompt_ids.shape
    cache = DynamicCache(config=model.config)
    out_tokens: list[torch.Tensor] = []
    with compress(model, policy) as report:
        logits = model(input_ids=prompt_ids, past_key_values=cache, use_cache=True).logits[:, -1]
        held = sum(held_bytes(layer) for layer in cache.layers)
        pos = L
        if question_ids is not None:
            question_ids = question_ids.to(dev)
            qn = question_ids.shape[1]
            position_ids = torch.arange(pos, pos + qn, device=dev).unsqueeze(0).expand(b, qn)
            logits = model(
                input_ids=question_ids, past_key_values=cache, position_ids=position_ids, use_cache=True
            ).logits[:, -1]
            pos += qn
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        for step in range(max_new_tokens):
            nxt = logits.argmax(-1)
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done |= nxt == eos_token_id
            out_tokens.append(nxt)
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            position_ids = torch.full((b, 1), pos, device=dev, dtype=torch.long)
            logits = model(
                input_ids=nxt.unsqueeze(-1), past_key_values=cache, position_ids=position_ids, use_cache=True
            ).logits[:, -1]
            pos += 1
    tokens = torch.stack(out_tokens, dim=1) if out_tokens else torch.zeros(b, 0, dtype=torch.long, device=dev)
    n_layers = len(attention_modules(model))
    kv_heads = model.config.num_key_value_heads
    full = L * kv_heads * b * n_layers
    uncompressed = n_layers - len(report.layers)
    kept = report.kept_entries() + uncompressed * L * kv_heads * b
    return GenerationResult(tokens, kept, full, held, report)
