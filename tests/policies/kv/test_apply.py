"""The transformers integration: hooks' lifetime, decoding on compressed caches, batch size 2."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from cachesvc.policies.kv import compress, generate_with_policy, make_policy
from cachesvc.policies.kv.apply import attention_modules
from cachesvc.policies.kv.ragged_layer import HeadRaggedLayer

WINDOW = 8


def _hook_counts(model) -> list[tuple[int, int]]:
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in attention_modules(model)]


def test_hooks_removed_on_exit_and_on_exception(model) -> None:
    before = _hook_counts(model)
    with compress(model, make_policy("snapkv", compression_ratio=0.5)):
        assert _hook_counts(model) != before
    assert _hook_counts(model) == before
    with pytest.raises(RuntimeError, match="boom"):
        with compress(model, make_policy("layer_defensivekv", compression_ratio=0.5)):
            raise RuntimeError("boom")
    assert _hook_counts(model) == before


@pytest.mark.parametrize("name", ["snapkv", "defensivekv", "streaming_llm"])
def test_ratio_zero_reproduces_generate(model, prompt, name) -> None:
    n = 12
    ref = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n, do_sample=False
    )[:, prompt.shape[1]:]
    res = generate_with_policy(model, None, prompt, make_policy(name, compression_ratio=0.0, window_size=WINDOW), n)
    assert torch.equal(res.tokens, ref)
    assert res.kv_entries_kept == res.kv_entries_full == prompt.numel() * 2 * 2


def test_decode_after_pruning_uses_original_positions(model, prompt) -> None:
    res = generate_with_policy(model, None, prompt, make_policy("snapkv", compression_ratio=0.5, window_size=WINDOW), 6)
    assert res.tokens.shape == (2, 6)
    assert res.kv_entries_kept == 60 * 2 * 2 * 2
    assert res.kv_bytes_held == res.kv_entries_kept * 2 * model.config.head_dim * 4  # keys + values, fp32
    # Batch rows are independent: row 1 alone gives the same tokens.
    single = generate_with_policy(
        model, None, prompt[1:], make_policy("snapkv", compression_ratio=0.5, window_size=WINDOW), 6
    )
    assert torch.equal(single.tokens[0], res.tokens[1])


def _masked_full_reference(model, ids, report, steps: int) -> torch.Tensor:
    """Greedy decode on the FULL cache, hiding evicted entries per head with a 4-D mask (independent check of the
    padded per-head layout)."""
    cache = DynamicCache(config=model.config)
    group = model.config.num_attention_heads // model.config.num_key_value_heads
    q_len = ids.shape[1]
    keep_full = {}
    for i, rec in report.layers.items():
        k = torch.zeros(*rec.positions.shape[:2], q_len, dtype=torch.bool)
        pos = rec.positions
        k.scatter_(-1, pos.clamp_min(0), pos >= 0)
        keep_full[i] = k

    def pre_hook(module, args, kwargs):
        if kwargs["hidden_states"].shape[1] != 1:
            return None
        k = keep_full[module.layer_idx]
        extra = cache.layers[module.layer_idx].keys.shape[-2] + 1 - q_len
        m = torch.cat([k, torch.ones(*k.shape[:2], extra, dtype=torch.bool)], -1)
        m = m.repeat_interleave(group, 1).unsqueeze(2)
        if model.config._attn_implementation == "eager":  # eager adds the mask: make it additive
            m = torch.where(m, 0.0, torch.finfo(torch.float32).min)
        return args, {**kwargs, "attention_mask": m}

    handles = [m.register_forward_pre_hook(pre_hook, with_kwargs=True) for m in attention_modules(model)]
    out = []
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
            for _ in range(steps):
                nxt = logits.argmax(-1)
                out.append(nxt)
                logits = model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True).logits[:, -1]
    finally:
        for h in handles:
            h.remove()
    return torch.stack(out, 1)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
# Unequal heads; with a global budget, unequal rows too (the tiny model's critical stage would even them out).
@pytest.mark.parametrize("name, fields", [("adakv", {}), ("layer_defensivekv", {"critical_mass": 0.0}),
                                          ("layer_defensivekv", {"critical_mass": 0.0, "layer_group": 1})])
def test_headwise_padded_layout_matches_masked_full_cache(model, eager_model, prompt, impl, name, fields) -> None:
    m = model if impl == "sdpa" else eager_model
    policy = make_policy(name, compression_ratio=0.7, window_size=WINDOW, **fields)
    res = generate_with_policy(m, None, prompt, policy, 8)
    entry_bytes = 2 * m.config.head_dim * 4
    assert res.report.padded_entries() > res.kv_entries_kept  # heads unequal...
    padded_bytes = res.report.padded_entries() * entry_bytes
    assert res.kv_entries_kept * entry_bytes < res.kv_bytes_held < padded_bytes  # ...packed
    if policy.global_budget:
        per_row = sum(r.kept_per_head.sum(-1) for r in res.report.layers.values())
        assert per_row[0] == per_row[1]  # each row keeps its own global top-k...
        # ...split its own way
        assert any((r.kept_per_head[0] != r.kept_per_head[1]).any() for r in res.report.layers.values())
    ref = _masked_full_reference(m, prompt, res.report, 8)
    assert torch.equal(res.tokens, ref)


def test_padding_slots_do_not_leak(model, prompt, monkeypatch) -> None:
    """Garbage in the padding slots of the attended layout does not change the next-token logits."""
    policy = make_policy("adakv", compression_ratio=0.7, window_size=WINDOW)
    outs = []
    for garbage in (False, True):
        monkeypatch.setattr(HeadRaggedLayer, "padding_value", 1e3 if garbage else 0.0)
        cache = DynamicCache(config=model.config)
        with torch.no_grad(), compress(model, policy):
            logits = model(input_ids=prompt, past_key_values=cache, use_cache=True).logits[:, -1]
            assert all(isinstance(layer, HeadRaggedLayer) for layer in cache.layers)
            nxt = logits.argmax(-1, keepdim=True)
            pos = torch.full((2, 1), prompt.shape[1])
            outs.append(model(input_ids=nxt, past_key_values=cache, position_ids=pos).logits)
    torch.testing.assert_close(outs[0], outs[1])


def test_question_is_appended_uncompressed(model, prompt) -> None:
    question = torch.randint(0, 97, (2, 5))
    policy = make_policy("defensivekv", compression_ratio=0.7, window_size=WINDOW)
    res = generate_with_policy(model, None, prompt, policy, 3, question_ids=question)
    assert res.tokens.shape == (2, 3)
    assert res.kv_entries_kept == sum(int(r.kept_per_head.sum()) for r in res.report.layers.values())
    # ratio 0 with a question reproduces the uncompressed greedy continuation of context + question
    full = torch.cat([prompt, question], 1)
    ref = model.generate(full, attention_mask=torch.ones_like(full), max_new_tokens=3, min_new_tokens=3,
                         do_sample=False)[:, full.shape[1]:]
    res0 = generate_with_policy(model, None, prompt, make_policy("defensivekv", compression_ratio=0.0), 3,
                                question_ids=question)
    assert torch.equal(res0.tokens, ref)


def test_eos_stops_decoding(model, prompt) -> None:
    policy = make_policy("snapkv", compression_ratio=0.5, window_size=WINDOW)
    first = generate_with_policy(model, None, prompt[:1], policy, 4).tokens[0]
    res = generate_with_policy(model, None, prompt[:1], policy, 10, eos_token_id=int(first[1]))
    assert res.tokens[0].tolist() == first[:2].tolist()


def test_compress_cache_equals_compress_during_prefill(model, prompt) -> None:
    import copy

    from cachesvc.policies.kv.apply import compress_cache, headwise_masking, record_prefill_inputs

    policy = make_policy("defensivekv", compression_ratio=0.7, window_size=WINDOW, critical_mass=0.5)
    live = DynamicCache(config=model.config)
    with torch.no_grad(), compress(model, policy) as report:
        model(input_ids=prompt, past_key_values=live, use_cache=True)
    full = DynamicCache(config=model.config)
    with torch.no_grad(), record_prefill_inputs(model) as captured:
        model(input_ids=prompt, past_key_values=full, use_cache=True)
    offline = copy.deepcopy(full)
    report2 = compress_cache(model, offline, policy, captured)
    assert full.layers[0].keys.shape[-2] == prompt.shape[1]  # the original is untouched
    for i in report.layers:
        assert torch.equal(report.layers[i].positions, report2.layers[i].positions)
        assert torch.equal(live.layers[i].keys, offline.layers[i].keys)
    nxt = torch.zeros(2, 1, dtype=torch.long)
    pos = torch.full((2, 1), prompt.shape[1])
    with torch.no_grad(), headwise_masking(model):
        a = model(input_ids=nxt, past_key_values=offline, position_ids=pos).logits
    with torch.no_grad(), compress(model, policy):
        b = model(input_ids=nxt, past_key_values=live, position_ids=pos).logits
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_multi_token_forward_on_layers_of_different_lengths(model, eager_model, prompt, impl) -> None:
    """Layer-DefensiveKV gives layers different lengths; a 5-token forward after it must match the masked full
    cache computed token by token (the model sizes its causal mask from layer 0)."""
    m = model if impl == "sdpa" else eager_model
    policy = make_policy("layer_defensivekv", compression_ratio=0.7, window_size=WINDOW, critical_mass=0.0)
    ids = prompt[:1]
    q = torch.randint(0, 97, (1, 5))
    cache = DynamicCache(config=m.config)
    with torch.no_grad(), compress(m, policy) as report:
        m(input_ids=ids, past_key_values=cache, use_cache=True)
        lens = {cache.layers[i].keys.shape[-2] for i in report.layers}
        assert len(lens) > 1
        pos = torch.arange(120, 125).unsqueeze(0)
        multi = m(input_ids=q, past_key_values=cache, position_ids=pos).logits
    cache2 = DynamicCache(config=m.config)
    with torch.no_grad(), compress(m, policy):
        m(input_ids=ids, past_key_values=cache2, use_cache=True)
        steps = [m(input_ids=q[:, i:i + 1], past_key_values=cache2, position_ids=pos[:, i:i + 1]).logits
                 for i in range(5)]
    torch.testing.assert_close(multi, torch.cat(steps, 1), atol=1e-4, rtol=1e-4)
