"""window_scores: Triton kernel vs torch reference, and the reference vs a naive loop on tiny shapes."""

from __future__ import annotations

import math

import pytest
import torch

from cachesvc.kernels.window_scores import (
    _window_probs,
    _window_scores_triton,
    window_scores,
    window_scores_and_attention,
    window_scores_and_attention_reference,
    window_scores_reference,
)

from ._assert import assert_close

# (dtype, atol, rtol): both paths upcast to fp32; only the accumulation order differs (tensor cores on a GPU).
TOL = {
    torch.float32: (1e-6, 1e-4),
    torch.float16: (1e-5, 2e-3),
    torch.bfloat16: (1e-5, 5e-3),
}

# (b, H_kv, G, w, L, d): odd and prime L, prefix sizes on both sides of the tile edges (interpreter tiles:
# 124 pooled outputs per program, 256 keys per stats block; GPU tiles: 60 outputs, 64 keys), w in {8,16,32},
# G in {1,4,8}, d in {64,128}, batch 1 and 2. Combined sparsely with dtypes to keep the interpreter run short.
CASES = [
    ((1, 2, 4, 8, 37, 64), torch.float32),
    ((2, 1, 8, 32, 131, 128), torch.float16),
    ((1, 2, 1, 16, 61, 64), torch.float32),
    ((2, 2, 4, 16, 61, 128), torch.bfloat16),
    ((1, 1, 8, 8, 131, 64), torch.float16),
    ((1, 1, 4, 8, 8 + 124, 64), torch.float32),     # n == one interpreter output tile
    ((1, 1, 4, 8, 8 + 125, 64), torch.float16),     # n one past it
    ((2, 1, 1, 32, 257, 64), torch.float32),        # L one past a stats block
    ((1, 1, 4, 16, 16 + 249, 128), torch.float32),  # three output tiles
    ((1, 2, 1, 32, 40, 64), torch.float16),         # short prefix (n=8)
]


def _inputs(shape, dtype, device, spread: float = 2.0):
    b, hkv, g, w, L, d = shape
    q = (torch.randn(b, hkv * g, w, d, device=device) * spread).to(dtype)
    k = torch.randn(b, hkv, L, d, device=device).to(dtype)
    return q, k


def _id(case):
    (b, hkv, g, w, L, d), dt = case
    return f"b{b}-kv{hkv}-G{g}-w{w}-L{L}-d{d}-{str(dt).split('.')[-1]}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_kernel_matches_reference(case, device):
    shape, dtype = case
    q, k = _inputs(shape, dtype, device)
    atol, rtol = TOL[dtype]
    for agg in ("defensive", "mean"):
        out = window_scores(q, k, aggregation=agg)
        ref = window_scores_reference(q, k, aggregation=agg)
        b, hkv, g, w, L, d = shape
        assert out.dtype == torch.float32 and out.shape == (b, hkv, L - w)
        assert_close(out, ref, atol=atol, rtol=rtol, name=f"{agg} {_id(case)}")
    # The one-pass variant (CriticalKV / DefensiveKV): same scores, plus the unpooled mean attention.
    agg = ("defensive", "mean")[CASES.index(case) % 2]
    out, att = window_scores_and_attention(q, k, aggregation=agg)
    ref, ref_att = window_scores_and_attention_reference(q, k, aggregation=agg)
    assert_close(out, ref, atol=atol, rtol=rtol, name=f"{agg} with attention {_id(case)}")
    assert_close(att, ref_att, atol=atol, rtol=rtol, name=f"attention {_id(case)}")


# GPU-sized tiles, several row chunks and several key splits under the interpreter (the merge path).
TILE_CASES = [
    ((1, 2, 4, 16, 131, 64), torch.float32, dict(BLOCK_R=16, BLOCK_L=64, BLOCK_K=64, target_programs=8)),
    ((2, 1, 8, 8, 61 + 64, 128), torch.float16, dict(BLOCK_R=32, BLOCK_L=16, BLOCK_K=16, target_programs=16)),
    ((1, 1, 1, 32, 97, 64), torch.float32, dict(BLOCK_R=16, BLOCK_L=32, BLOCK_K=32, target_programs=64)),
]


@pytest.mark.parametrize("shape,dtype,blocks", TILE_CASES, ids=["r16-l64-k64", "r32-l16-k16", "splits-many"])
def test_kernel_tiles_and_splits(shape, dtype, blocks, device):
    q, k = _inputs(shape, dtype, device)
    atol, rtol = TOL[dtype]
    d = shape[-1]
    for agg in ("defensive", "mean"):
        out = _window_scores_triton(q, k, agg, 5, d ** -0.5, blocks=blocks)
        assert_close(out, window_scores_reference(q, k, aggregation=agg), atol=atol, rtol=rtol,
                     name=f"{agg} {blocks}")
    # every output tile writes exactly its own columns of the attention (the halo columns belong to neighbours)
    out, att = _window_scores_triton(q, k, "defensive", 5, d ** -0.5, blocks=blocks, with_attention=True)
    ref, ref_att = window_scores_and_attention_reference(q, k, aggregation="defensive")
    assert_close(out, ref, atol=atol, rtol=rtol, name=f"with attention {blocks}")
    assert_close(att, ref_att, atol=atol, rtol=rtol, name=f"attention {blocks}")


@pytest.mark.parametrize("pool_kernel,scale", [(1, None), (3, 0.3), (7, None)])
def test_kernel_pool_kernel_and_scale(pool_kernel, scale, device):
    q, k = _inputs((1, 2, 4, 8, 67, 64), torch.float32, device)
    for agg in ("defensive", "mean"):
        out = window_scores(q, k, aggregation=agg, pool_kernel=pool_kernel, scale=scale)
        ref = window_scores_reference(q, k, aggregation=agg, pool_kernel=pool_kernel, scale=scale)
        assert_close(out, ref, atol=1e-6, rtol=1e-4, name=f"{agg} pool={pool_kernel} scale={scale}")


def test_kernel_peaked_scores_and_noncontiguous(device):
    """Large logits (softmax near one-hot) and a non-contiguous query view."""
    q, k = _inputs((1, 2, 4, 16, 79, 64), torch.float32, device, spread=8.0)
    q_t = q.transpose(1, 2).contiguous().transpose(1, 2)        # same values, different strides
    assert not q_t.is_contiguous()
    out = window_scores(q_t, k)
    assert_close(out, window_scores_reference(q, k), atol=1e-6, rtol=1e-4, name="peaked")


def test_window_equals_context_gives_empty(device):
    q, k = _inputs((1, 1, 4, 8, 8, 64), torch.float32, device)
    assert window_scores(q, k).shape == (1, 1, 0)
    scores, att = window_scores_and_attention(q, k)
    assert scores.shape == att.shape == (1, 1, 0)


def test_bad_arguments():
    q = torch.randn(1, 6, 4, 16)
    k = torch.randn(1, 4, 20, 16)
    with pytest.raises(ValueError):
        window_scores(q, k)                                   # 6 query heads over 4 KV heads
    q = torch.randn(1, 4, 4, 16)
    with pytest.raises(ValueError):
        window_scores(q, k, aggregation="median")
    with pytest.raises(ValueError):
        window_scores(q, k, pool_kernel=4)
    with pytest.raises(ValueError):
        window_scores(q, k[:, :, :3])                         # L < w


# ---------------------------------------------------------------------------------------------------------
# The reference against an obviously-correct loop (tiny shapes).
# ---------------------------------------------------------------------------------------------------------

def _naive(q, k, aggregation, pool_kernel, scale=None):
    b, hq, w, d = q.shape
    hkv, L = k.shape[1], k.shape[2]
    g = hq // hkv
    n = L - w
    r = pool_kernel // 2
    scale = d ** -0.5 if scale is None else scale
    out = torch.zeros(b, hkv, n, dtype=torch.float64)
    for bi in range(b):
        for kv in range(hkv):
            est = []                                          # G*w rows of n estimates
            for gi in range(g):
                h = kv * g + gi
                for i in range(w):
                    pos = n + i
                    logits = [float(q[bi, h, i].double() @ k[bi, kv, j].double()) * scale for j in range(pos + 1)]
                    mx = max(logits)
                    ex = [math.exp(x - mx) for x in logits]
                    z = sum(ex)
                    p = [e / z for e in ex][:n]               # keys after pos are masked; window columns dropped
                    pooled = []
                    for j in range(n):
                        nb = [p[t] for t in range(j - r, j + r + 1) if 0 <= t < n]
                        pooled.append(sum(nb) / len(nb))
                    f = sum(p) / sum(pooled)
                    est.append([x * f for x in pooled])
            if aggregation == "mean":
                vals = [sum(row[j] for row in est) / len(est) for j in range(n)]
            else:
                rt = [max(row[j] for row in est) for j in range(n)]
                floor = sum(rt) / n
                vals = [max(x, floor) for x in rt]
            out[bi, kv] = torch.tensor(vals, dtype=torch.float64)
    return out.float()


@pytest.mark.parametrize("b,hkv,g,w,L,pool", [(1, 1, 1, 3, 9, 5), (2, 2, 2, 2, 7, 3), (1, 1, 3, 4, 6, 5),
                                             (1, 2, 2, 3, 10, 1), (1, 1, 2, 2, 13, 7)])
@pytest.mark.parametrize("aggregation", ["mean", "defensive"])
def test_reference_matches_naive_loop(b, hkv, g, w, L, pool, aggregation):
    q = torch.randn(b, hkv * g, w, 4) * 2
    k = torch.randn(b, hkv, L, 4)
    ref = window_scores_reference(q, k, aggregation=aggregation, pool_kernel=pool)
    assert_close(ref, _naive(q, k, aggregation, pool), atol=1e-6, rtol=1e-5, name="reference vs loop")


def test_reference_causal_mask_inside_window():
    """A window key that only later window queries can see must not change what earlier ones attend to."""
    q = torch.randn(1, 1, 4, 8)
    k = torch.randn(1, 1, 12, 8)
    k2 = k.clone()
    k2[0, 0, -1] = q[0, 0, 0] * 50                           # huge logit for query 0, but it is in its future
    # compare the per-query attention rows over the prefix ([b, H_kv, G, w, n])
    p1, p2 = _window_probs(q, k, None), _window_probs(q, k2, None)
    assert torch.allclose(p1[..., :3, :], p2[..., :3, :])   # queries 0..2 do not see the last key
    assert not torch.allclose(p1[..., 3, :], p2[..., 3, :])  # query 3 (the last position) does


def test_reference_pooling_edges_do_not_count_padding():
    """One-hot attention at the first prefix entry spreads over its valid neighbours only, mass preserved."""
    w, n, d = 1, 8, 4
    q = torch.zeros(1, 1, w, d)
    q[0, 0, 0, 0] = 1.0
    k = torch.zeros(1, 1, n + w, d)
    k[0, 0, 0, 0] = 1e4                                      # all the attention on entry 0
    out = window_scores_reference(q, k, aggregation="mean", pool_kernel=5, scale=1.0)[0, 0]
    # outputs 0, 1, 2 see entry 0 with 3, 4, 5 valid neighbours: 1/3, 1/4, 1/5, renormalised to total 1.
    expected = torch.tensor([1 / 3, 1 / 4, 1 / 5, 0, 0, 0, 0, 0])
    expected = expected / expected.sum()
    assert_close(out, expected, atol=1e-6, rtol=1e-5, name="edge pooling")


def test_reference_defensive_floor():
    q = torch.randn(2, 4, 8, 16) * 3
    k = torch.randn(2, 2, 40, 16)
    out = window_scores_reference(q, k, aggregation="defensive")
    # Recompute R~ (pooled, rescaled, max over group and window): the floor is the per-head mean of R~, so
    # every score is >= it, the floored entries equal it and the others equal R~.
    p = _window_probs(q, k, None)
    mass = p.sum(-1, keepdim=True)
    pooled = torch.nn.functional.avg_pool1d(p.reshape(-1, 1, p.shape[-1]), 5, 1, 2, count_include_pad=False)
    pooled = pooled.reshape(p.shape)
    pooled = pooled * mass / pooled.sum(-1, keepdim=True)
    rt = pooled.amax(dim=(2, 3))
    floor = rt.mean(-1, keepdim=True)
    assert (out >= floor - 1e-7).all()
    assert torch.allclose(out[rt < floor], floor.expand_as(rt)[rt < floor])
    assert torch.allclose(out[rt >= floor], rt[rt >= floor])
    assert (rt < floor).any()


def test_reference_attention_is_plain_average():
    """The one-pass reference's second output is the unpooled window-and-group average, next to the same scores."""
    q = torch.randn(1, 4, 3, 8)
    k = torch.randn(1, 2, 11, 8)
    scores, att = window_scores_and_attention_reference(q, k, aggregation="defensive", pool_kernel=3)
    assert_close(att, _naive(q, k, "mean", 1), atol=1e-6, rtol=1e-5, name="attention mean")
    # each window row sums to <= 1 over the prefix, so the average does too
    assert (att.sum(-1) <= 1 + 1e-6).all()
    assert torch.equal(scores, window_scores_reference(q, k, aggregation="defensive", pool_kernel=3))


def test_the_triton_path_is_taken(device):
    """Guards the comparisons above against silently comparing the reference with itself."""
    from cachesvc.kernels import value_norm as vn
    from cachesvc.kernels import window_scores as ws
    from cachesvc.kernels._triton_support import use_triton

    t = torch.zeros(1, device=device)
    assert use_triton(ws._KERNEL, t) and use_triton(vn._KERNEL, t)


def test_triton_can_be_switched_off(device, monkeypatch):
    """CACHESVC_TRITON=0 sends every call to the torch references (read at call time)."""
    from cachesvc.kernels import window_scores as ws
    from cachesvc.kernels._triton_support import use_triton

    t = torch.zeros(1, device=device)
    monkeypatch.setenv("CACHESVC_TRITON", "0")
    assert not use_triton(ws._KERNEL, t)
    q, k = _inputs((1, 1, 2, 4, 20, 16), torch.float32, device)
    # exactly the reference's numbers (the kernel's differ in the last bits)
    assert torch.equal(window_scores(q, k), window_scores_reference(q, k))
    monkeypatch.setenv("CACHESVC_TRITON", "1")
    assert use_triton(ws._KERNEL, t)
