"""Layer-DefensiveKV's streamed global top-k: the same entries as one top-k over every layer's full scores, with
bounded memory during prefill."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import DynamicCache

from cachesvc.policies.kv import compress, make_policy
from cachesvc.policies.kv.global_pool import GlobalBudgetPool
from cachesvc.policies.kv.layout import VALID_ATTR
from cachesvc.policies.kv.ragged_layer import HeadRaggedLayer, held_bytes

from .conftest import VOCAB, tiny_model

WINDOW = 8
LAYERS = 6


@pytest.fixture(scope="module")
def deep_model():
    return tiny_model(layers=LAYERS)


def _policy(pool: float, ratio: float = 0.7, **fields: object):
    # No critical stage: on this random model it would mark every kept entry as must-keep (equal scores, equal
    # budgets) and the comparisons below would hold trivially.
    return make_policy("layer_defensivekv", compression_ratio=ratio, window_size=WINDOW, prefill_pool=pool,
                       critical_mass=0.0, **fields)


def _held_per_row(cache, upto: int) -> torch.Tensor:
    """Real prefix entries (windows excluded) held by cache layers ``0..upto``, per batch row."""
    total = 0
    for layer in cache.layers[: upto + 1]:
        valid = getattr(layer, VALID_ATTR, None)
        b, h, stored = layer.keys.shape[:3]
        total = total + (valid[..., :-WINDOW].sum(dim=(1, 2)) if valid is not None
                         else torch.full((b,), h * (stored - WINDOW)))
    return total


def _prefill(model, ids, policy, watch: list | None = None):
    """Prefill under ``policy``; ``watch`` collects, after each decoder layer, the held entries per row."""
    cache = DynamicCache(config=model.config)
    handles = []
    if watch is not None:
        for i, block in enumerate(model.model.layers):
            handles.append(block.register_forward_hook(
                lambda mod, args, out, i=i: watch.append(_held_per_row(cache, i))))
    try:
        with torch.no_grad(), compress(model, policy, record_scores=True) as report:
            model(input_ids=ids, past_key_values=cache, use_cache=True)
    finally:
        for h in handles:
            h.remove()
    return cache, report


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 97), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("ratio", [0.5, 0.7, 0.9])
def test_streamed_selection_equals_one_top_k_over_full_scores(deep_model, ids, ratio) -> None:
    whole_cache, whole = _prefill(deep_model, ids, _policy(math.inf, ratio))
    b, q_len = ids.shape
    h = deep_model.config.num_key_value_heads
    n_keep = _policy(1.0, ratio).prefix_budget(q_len) * h * LAYERS
    # the reference: each row's top n_keep over the concatenated full scores of every layer
    scores = torch.cat([whole.layers[i].scores.reshape(b, -1) for i in range(LAYERS)], dim=1)
    want = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(n_keep, dim=-1).indices, True)
    got = torch.cat([whole.layers[i].keep.reshape(b, -1) for i in range(LAYERS)], dim=1)
    assert torch.equal(got, want)
    for pool in (1.0, 1.5):
        cache, report = _prefill(deep_model, ids, _policy(pool, ratio))
        for i in range(LAYERS):
            assert torch.equal(report.layers[i].keep, whole.layers[i].keep), (pool, i)
            assert torch.equal(report.layers[i].kept_per_head, whole.layers[i].kept_per_head)
            # the stored slots hold the same entries (slot order within a head may differ only by padding)
            real = report.layers[i].positions >= 0
            assert torch.equal(cache.layers[i].keys[real], whole_cache.layers[i].keys[whole.layers[i].positions >= 0])


def test_every_row_keeps_its_own_budget(deep_model, ids) -> None:
    policy = _policy(1.5)
    _, report = _prefill(deep_model, ids, policy)
    h = deep_model.config.num_key_value_heads
    per_row = sum(r.kept_per_head.sum(-1) - WINDOW * h for r in report.layers.values())
    assert per_row.tolist() == [policy.prefix_budget(ids.shape[1]) * h * LAYERS] * ids.shape[0]
    per_layer = torch.stack([r.kept_per_head.sum(-1) for r in report.layers.values()], dim=1)
    assert per_layer.unique().numel() > 1                      # layers get unequal budgets


def test_memory_held_during_prefill_is_bounded(deep_model, ids) -> None:
    h = deep_model.config.num_key_value_heads
    n_keep = _policy(1.0).prefix_budget(ids.shape[1]) * h * LAYERS
    layer_entries = h * (ids.shape[1] - WINDOW)
    peaks = {}
    for pool in (1.0, 1.5, math.inf):
        watch: list[torch.Tensor] = []
        _prefill(deep_model, ids, _policy(pool), watch)
        assert len(watch) == LAYERS
        peaks[pool] = int(torch.stack(watch).max())
        assert int(watch[-1].max()) == n_keep                 # after the last layer: exactly the budget
    # the reference's way: every layer whole until the last one (whose cut runs inside its own attention hook)
    assert peaks[math.inf] == (LAYERS - 1) * layer_entries
    assert peaks[1.0] <= n_keep
    assert peaks[1.5] <= 1.5 * n_keep
    assert peaks[1.0] < peaks[math.inf] and peaks[1.5] < peaks[math.inf]


def _padding_held(cache, upto: int) -> tuple[int, int]:
    """(bytes held beyond the real entries, ragged layers) over cache layers ``0..upto``; a ragged layer's one
    padding row and 4-byte slot map are its own price, not padding."""
    extra, ragged = 0, 0
    for layer in cache.layers[: upto + 1]:
        valid = getattr(layer, VALID_ATTR, None)
        b, h, stored, d = layer.keys.shape
        entry = 2 * d * layer.keys.element_size()
        real = int(valid.sum()) if valid is not None else b * h * stored
        overhead = entry + 4 * b * h * valid.shape[-1] if valid is not None else 0
        extra += held_bytes(layer) - real * entry - overhead
        ragged += isinstance(layer, HeadRaggedLayer)
    return extra, ragged


@pytest.mark.parametrize("pool", [1.0, 1.5])
def test_cut_layers_hold_no_padding_during_prefill(deep_model, ids, pool) -> None:
    """Layers cut while later ones are still being prefilled are packed at once, not at the end."""
    cache = DynamicCache(config=deep_model.config)
    watch: list[tuple[int, int]] = []
    handles = [block.register_forward_hook(lambda mod, args, out, i=i: watch.append(_padding_held(cache, i)))
               for i, block in enumerate(deep_model.model.layers)]
    try:
        with torch.no_grad(), compress(deep_model, _policy(pool)):
            deep_model(input_ids=ids, past_key_values=cache, use_cache=True)
    finally:
        for h in handles:
            h.remove()
    assert [extra for extra, _ in watch] == [0] * LAYERS
    assert any(ragged for _, ragged in watch[:-1])        # cuts before the last layer left ragged layers


def test_prefill_pool_is_validated() -> None:
    for bad in (0.99, 0.0, float("nan")):
        with pytest.raises(ValueError, match="prefill_pool"):
            make_policy("layer_defensivekv", prefill_pool=bad)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="layer_group"):
            make_policy("layer_defensivekv", layer_group=bad)


@pytest.mark.parametrize("group", [2, 4])
def test_layer_group_takes_one_top_k_per_group_of_layers(deep_model, ids, group) -> None:
    """Groups of consecutive layers (the last one shorter when the layers do not divide) each keep their own top-k
    of the group's full scores: the budget moves between the group's layers, never across groups."""
    _, whole = _prefill(deep_model, ids, _policy(math.inf))
    b, q_len = ids.shape
    per_layer = _policy(1.0).prefix_budget(q_len) * deep_model.config.num_key_value_heads
    for pool in (1.0, 1.5):
        _, report = _prefill(deep_model, ids, _policy(pool, layer_group=group))
        for start in range(0, LAYERS, group):
            members = range(start, min(start + group, LAYERS))
            scores = torch.cat([whole.layers[i].scores.reshape(b, -1) for i in members], dim=1)
            n_keep = per_layer * len(members)
            want = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(n_keep, dim=-1).indices, True)
            got = torch.cat([report.layers[i].keep.reshape(b, -1) for i in members], dim=1)
            assert torch.equal(got, want), (pool, start)
        kept = torch.stack([report.layers[i].keep.sum(dim=(1, 2)) for i in range(LAYERS)], dim=1)
        assert kept.unique().numel() > 1                  # unequal budgets inside a group


def test_layer_group_of_one_is_defensivekv(deep_model, ids) -> None:
    """One layer per group: the head-wise top-k of DefensiveKV, the same entries in every layer and row."""
    fields = {"compression_ratio": 0.7, "window_size": WINDOW, "critical_mass": 0.0}
    _, want = _prefill(deep_model, ids, make_policy("defensivekv", **fields))
    _, got = _prefill(deep_model, ids, make_policy("layer_defensivekv", layer_group=1, **fields))
    for i in range(LAYERS):
        assert torch.equal(got.layers[i].keep, want.layers[i].keep), i
        assert torch.equal(got.layers[i].kept_per_head, want.layers[i].kept_per_head), i


def _pool_keep(layer_scores: list[torch.Tensor], n_keep: int, factor: float) -> list[set[tuple[int, int, int]]]:
    """Run a GlobalBudgetPool over fake layers; return each layer's kept (row, head, position) set."""
    pool = GlobalBudgetPool(n_keep, WINDOW, factor)
    for i, s in enumerate(layer_scores):
        b, h, n = s.shape
        pos = torch.arange(n + WINDOW, dtype=torch.float32).expand(b, h, n + WINDOW)
        pool.add(i, SimpleNamespace(keys=pos.unsqueeze(-1).clone(), values=pos.unsqueeze(-1).clone()), s, n + WINDOW)
    pool.cut()
    kept = []
    for p in pool.layers:
        layer = p.layer                                       # cut layers were replaced by packed ones
        assert torch.equal(layer.keys, layer.values)
        slots = layer.keys[..., :-WINDOW, 0].long()           # the fake keys carry their own positions
        held = torch.isfinite(p.scores)
        kept.append({(bi, hi, int(slots[bi, hi, j])) for bi, hi, j in held.nonzero().tolist()})
    return kept


def test_pool_breaks_ties_like_one_selection_over_every_layer() -> None:
    """Scores with many exact ties (the defensive floor produces them): every pool size keeps the same entries."""
    gen = torch.Generator().manual_seed(5)
    scores = [torch.randint(0, 4, (2, 3, n), generator=gen).float() for n in (40, 25, 60, 33)]
    n_keep = 70
    whole = _pool_keep(scores, n_keep, math.inf)
    assert sum(len(k) for k in whole) == 2 * n_keep
    for factor in (1.0, 1.2, 2.0):
        assert _pool_keep(scores, n_keep, factor) == whole, factor


def test_packed_layer_whose_heads_even_out_in_a_later_cut_stays_correct() -> None:
    """A layer packed by one cut (heads 3:1) and cut again to equal heads (1:1) keeps the right entries."""
    def fake_layer(n: int) -> SimpleNamespace:
        pos = torch.arange(n + WINDOW, dtype=torch.float32).expand(1, 2, n + WINDOW).unsqueeze(-1)
        return SimpleNamespace(keys=pos.clone(), values=pos.clone())

    pool = GlobalBudgetPool(n_keep=4, window_size=WINDOW, pool_factor=1.0)
    pool.add(0, fake_layer(4), torch.tensor([[[10.0, 3.0, 2.5, 0.0], [9.0, 0.3, 0.2, 0.1]]]), 4 + WINDOW)
    assert isinstance(pool.layers[0].layer, HeadRaggedLayer)
    assert pool.layers[0].layer.kv_valid[..., :-WINDOW].sum(-1).tolist() == [[3, 1]]
    pool.add(1, fake_layer(4), torch.tensor([[[5.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]), 4 + WINDOW)
    first = pool.layers[0].layer
    assert isinstance(first, HeadRaggedLayer) and bool(first.kv_valid.all())
    window = list(range(4, 4 + WINDOW))
    assert first.keys[0, :, :, 0].tolist() == [[0.0, *window], [0.0, *window]]
    assert torch.equal(first.keys, first.values)
