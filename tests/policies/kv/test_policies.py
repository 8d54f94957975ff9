"""Invariants of every registered KV policy on a tiny random Llama (CPU, fast)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from cachesvc.policies.kv import KV_POLICIES, KVPolicy, compress, make_policy
from cachesvc.policies.kv.layout import VALID_ATTR
from cachesvc.policies.kv.ragged_layer import HeadRaggedLayer, held_bytes

WINDOW = 8
RATIO = 0.7  # 120 tokens -> 36 kept per head on average, window included


def _policy(name: str, **fields: object) -> KVPolicy:
    fields.setdefault("compression_ratio", RATIO)
    fields.setdefault("window_size", WINDOW)
    return make_policy(name, **fields)


def _prefill(model, ids, policy, **kw):
    cache = DynamicCache(config=model.config)
    with torch.no_grad(), compress(model, policy, **kw) as report:
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    return cache, report


def _full_prefill(model, ids):
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    return cache


def test_registry_and_validation() -> None:
    assert set(KV_POLICIES) == {
        "random", "streaming_llm", "snapkv", "adakv", "criticalkv", "defensivekv", "layer_defensivekv"
    }
    with pytest.raises(ValueError, match="unknown KV policy"):
        make_policy("nope")
    with pytest.raises(ValueError, match="compression_ratio"):
        make_policy("snapkv", compression_ratio=1.0)
    with pytest.raises(ValueError, match="pool_kernel"):
        make_policy("snapkv", pool_kernel=4)
    for cls in KV_POLICIES.values():
        assert cls.__doc__ and cls.__module__.startswith("cachesvc.policies.kv.")


@pytest.mark.parametrize("name", sorted(KV_POLICIES))
def test_keeps_expected_count_and_shrinks_cache(model, prompt, name) -> None:
    ids = prompt[:1] if KV_POLICIES[name].global_budget else prompt
    policy = _policy(name)
    cache, report = _prefill(model, ids, policy)
    b, q_len = ids.shape
    h = model.config.num_key_value_heads
    per_head = policy.tokens_per_head(q_len)
    assert per_head == int(q_len * (1 - RATIO))
    assert sorted(report.layers) == [0, 1]
    if policy.global_budget:
        total = sum(int(r.kept_per_head.sum()) for r in report.layers.values())
        assert total == per_head * h * len(report.layers)
    for i, rec in report.layers.items():
        layer = cache.layers[i]
        if not policy.global_budget:
            assert rec.kept_per_head.sum(-1).tolist() == [per_head * h] * b
        if not (policy.headwise or policy.global_budget):
            assert (rec.kept_per_head == per_head).all()
        assert (rec.kept_per_head >= WINDOW).all()
        # Attention sees the gathered layout, padded to the longest head...
        assert layer.keys.shape == (b, h, rec.stored_len, model.config.head_dim)
        assert layer.values.shape == layer.keys.shape
        assert rec.stored_len == int(rec.kept_per_head.max()) < q_len
        valid = getattr(layer, VALID_ATTR, None)
        if valid is None:
            assert (rec.kept_per_head == rec.stored_len).all()
            assert not isinstance(layer, HeadRaggedLayer)
        else:
            assert valid.sum(-1).tolist() == rec.kept_per_head.tolist()
        # ...but the memory holds only the kept entries (when heads differ: plus one padding row and a 4-byte
        # slot map, instead of the padding).
        entry_bytes = 2 * model.config.head_dim * layer.dtype.itemsize
        overhead = 0 if valid is None else entry_bytes + 4 * valid.numel()
        assert held_bytes(layer) == int(rec.kept_per_head.sum()) * entry_bytes + overhead


@pytest.mark.parametrize("name", sorted(KV_POLICIES))
def test_kept_entries_are_highest_scoring(model, prompt, name) -> None:
    policy = _policy(name)
    ids = prompt[:1] if policy.global_budget else prompt
    _, report = _prefill(model, ids, policy, record_scores=True)
    if policy.global_budget:  # one top-k over every layer and head
        scores = torch.cat([r.scores.flatten() for r in report.layers.values()])
        keep = torch.cat([r.keep.flatten() for r in report.layers.values()])
        assert scores[keep].min() >= scores[~keep].max()
        return
    for rec in report.layers.values():
        s, k = rec.scores, rec.keep
        groups = s.flatten(1) if policy.headwise else s.flatten(0, 1)
        kept = k.flatten(1) if policy.headwise else k.flatten(0, 1)
        for row_s, row_k in zip(groups, kept):
            assert row_s[row_k].min() >= row_s[~row_k].max()


@pytest.mark.parametrize("name", sorted(KV_POLICIES))
def test_stored_entries_are_the_original_ones(model, prompt, name) -> None:
    policy = _policy(name)
    ids = prompt[:1] if policy.global_budget else prompt
    full = _full_prefill(model, ids)
    cache, report = _prefill(model, ids, policy)
    for i, rec in report.layers.items():
        pos = rec.positions
        real = pos >= 0
        d = model.config.head_dim
        want = full.layers[i].keys.gather(2, pos.clamp_min(0).unsqueeze(-1).expand(*pos.shape, d))
        got = cache.layers[i].keys
        assert torch.equal(got[real], want[real])
        # window always kept, in order, at the end
        q_len = ids.shape[1]
        assert (pos[..., -WINDOW:] == torch.arange(q_len - WINDOW, q_len)).all()
        # each head's real positions are increasing and distinct
        for row in pos.flatten(0, 1):
            r = row[row >= 0]
            assert (r[1:] > r[:-1]).all()


def test_headwise_policies_give_unequal_head_budgets(model, prompt) -> None:
    cache, report = _prefill(model, prompt, _policy("adakv"))
    counts = torch.stack([r.kept_per_head for r in report.layers.values()])
    assert counts.unique().numel() > 1
    assert report.kept_entries() < report.padded_entries() < report.full_entries()
    entry_bytes = 2 * model.config.head_dim * 4
    assert sum(held_bytes(layer) for layer in cache.layers) < report.padded_entries() * entry_bytes  # no padding held


def test_layer_defensivekv_unequal_layer_budgets(model, prompt) -> None:
    _, report = _prefill(model, prompt[:1], _policy("layer_defensivekv", critical_mass=0.0))
    per_layer = [int(r.kept_per_head.sum()) for r in report.layers.values()]
    assert sum(per_layer) == 2 * 2 * int(120 * (1 - RATIO))
    assert per_layer[0] != per_layer[1]


def test_budget_tokens_overrides_ratio(model, prompt) -> None:
    policy = _policy("snapkv", budget_tokens=20)
    cache, report = _prefill(model, prompt, policy)
    assert all(cache.layers[i].keys.shape[-2] == 20 for i in report.layers)


def test_short_context_is_not_compressed(model) -> None:
    ids = torch.randint(0, 97, (1, WINDOW))
    cache, report = _prefill(model, ids, _policy("defensivekv"))
    assert report.layers == {} and cache.layers[0].keys.shape[-2] == WINDOW


def test_streaming_llm_keeps_sinks_and_recent(model, prompt) -> None:
    policy = _policy("streaming_llm", n_sink=4)
    _, report = _prefill(model, prompt, policy)
    q_len = prompt.shape[1]
    per_head = policy.tokens_per_head(q_len)
    want = list(range(4)) + list(range(q_len - (per_head - 4), q_len))
    for rec in report.layers.values():
        for row in rec.positions.flatten(0, 1):
            assert row.tolist() == want


def test_random_is_seeded_and_uniform_over_heads(model, prompt) -> None:
    a = _prefill(model, prompt, _policy("random", seed=3))[1]
    b = _prefill(model, prompt, _policy("random", seed=3))[1]
    c = _prefill(model, prompt, _policy("random", seed=4))[1]
    assert torch.equal(a.layers[0].positions, b.layers[0].positions)
    assert not torch.equal(a.layers[0].positions, c.layers[0].positions)
    assert (a.layers[0].kept_per_head == a.layers[0].kept_per_head[0, 0]).all()


def test_the_torch_free_name_list_matches_the_registry() -> None:
    from cachesvc.policies.kv import KV_POLICIES
    from cachesvc.policies.kv.names import POLICY_NAMES

    assert set(POLICY_NAMES) == set(KV_POLICIES)


def test_every_lazy_export_resolves() -> None:
    import cachesvc.policies.kv as kv

    assert all(getattr(kv, name) is not None for name in kv.__all__)
    assert {cls.__name__ for cls in kv.KV_POLICIES.values()} <= set(kv.__all__) == set(kv._EXPORTS)
    with pytest.raises(AttributeError):
        kv.no_such_policy  # noqa: B018


def test_critical_stage_takes_the_smallest_set_reaching_the_mass() -> None:
    from cachesvc.policies.kv.criticalkv import critical_mask

    # head 0: the window carries 0.15, so 0.9 needs 0.75 from the prefix: 0.5 + 0.2 + 0.1 (three entries);
    # head 1: the window alone carries 0.95 >= 0.9, so nothing is forced.
    att = torch.tensor([[[0.1, 0.5, 0.05, 0.2], [0.01, 0.02, 0.01, 0.01]]])
    assert critical_mask(att, 0.9, cap=4).tolist() == [[[True, True, False, True], [False] * 4]]
    # capped at the head's prefix budget: the two largest only
    assert critical_mask(att, 0.9, cap=2).tolist() == [[[False, True, False, True], [False] * 4]]
    # batch rows and heads are independent
    both = critical_mask(torch.cat([att, att.flip(1)]), 0.9, cap=4)
    assert both[1].tolist() == [[False] * 4, [True, True, False, True]]
