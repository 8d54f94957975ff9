"""Observation-window attention scores for KV eviction (SnapKV / DefensiveKV), fused in Triton.

Algorithm (docs/kv-eviction.md, steps 1-3): the last `w` context queries attend (fp32
softmax, causal inside the window) over all `L` keys; the window's own `w` columns are dropped, leaving
`n = L - w` prefix entries; each row is average-pooled along the key axis (kernel `pool_kernel`, stride 1,
"same" padding, padding not counted) and rescaled to its mass before pooling; the `G * w` estimates of each
entry (GQA group x window) are aggregated:

* ``"mean"``: mean over the window queries, then over the group (SnapKV);
* ``"defensive"``: max over group and window, floored at the KV head's mean over the `n` entries
  (DefensiveKV, arXiv 2510.13334: ``R_i = max(R~_i, mean_j R~_j)``).

Layout: ``queries [b, H_q, w, d]``, ``keys [b, H_kv, L, d]``, ``H_q = G * H_kv`` (query head ``h`` uses KV
head ``h // G``). Result ``[b, H_kv, n]`` float32.

The Triton path never materialises the ``[w, L]`` attention of a head in global memory. Two kernels:

1. ``_window_stats_kernel`` (grid: b*H_kv, row chunks, key splits): one pass over the key blocks of a split,
   online row max and three sums of ``exp(s - max)``: over all visible keys (softmax denominator), over the
   prefix (mass before pooling) and over the prefix weighted by each column's total pooling weight (mass
   after pooling, known in closed form because the pooling is linear). Split partials are merged on the
   host side with a few tiny tensor ops (``[b*H_kv, splits, rows]``).
2. ``_window_pool_kernel`` (grid: b*H_kv, prefix blocks): recomputes the scores of a block of keys plus a
   halo of ``pool_kernel // 2`` columns on each side, normalises them with the row statistics, pools them
   with one banded matmul in registers, rescales each row and reduces over the ``G * w`` rows (max or sum),
   writing only ``[b, H_kv, n]``. The defensive floor (a per-head mean over ``n``) is one small torch op on
   that output. :func:`window_scores_and_attention` also sums the unpooled probabilities over the rows in the
   same pass (CriticalKV's critical stage ranks entries by them), a second ``[b, H_kv, n]`` output.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F

from ._triton_support import HAS_TRITON, interpreting, next_pow2, tl, triton, use_triton

__all__ = ["window_scores", "window_scores_and_attention", "window_scores_reference",
           "window_scores_and_attention_reference", "AGGREGATIONS"]

AGGREGATIONS = ("mean", "defensive")


def _check(queries: torch.Tensor, keys: torch.Tensor, aggregation: str, pool_kernel: int) -> tuple[int, ...]:
    if queries.dim() != 4 or keys.dim() != 4:
        raise ValueError(f"queries and keys must be 4-D, got {tuple(queries.shape)} and {tuple(keys.shape)}")
    b, hq, w, d = queries.shape
    bk, hkv, L, dk = keys.shape
    if b != bk or d != dk:
        raise ValueError(f"batch/head_dim mismatch: queries {tuple(queries.shape)}, keys {tuple(keys.shape)}")
    if hkv == 0 or hq % hkv:
        raise ValueError(f"H_q={hq} is not a multiple of H_kv={hkv}")
    if w < 1 or L < w:
        raise ValueError(f"need 1 <= w <= L, got w={w}, L={L}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if pool_kernel < 1 or pool_kernel % 2 == 0:
        raise ValueError(f"pool_kernel must be a positive odd integer ('same' padding), got {pool_kernel}")
    return b, hq, w, d, hkv, L, hq // hkv


def _window_probs(queries: torch.Tensor, keys: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Causal fp32 softmax of the window queries over all keys, prefix columns only: [b, H_kv, G, w, n]."""
    b, hq, w, d = queries.shape
    hkv, L = keys.shape[1], keys.shape[2]
    g = hq // hkv
    scale = d ** -0.5 if scale is None else scale
    q = queries.float().reshape(b, hkv, g, w, d)
    k = keys.float()
    s = torch.einsum("bkgwd,bkld->bkgwl", q, k) * scale
    n = L - w
    col = torch.arange(L, device=keys.device)
    pos = n + torch.arange(w, device=keys.device)
    s = s.masked_fill(col[None, :] > pos[:, None], float("-inf"))
    return torch.softmax(s, dim=-1)[..., :n]


def _scores_from_probs(p: torch.Tensor, aggregation: str, pool_kernel: int) -> torch.Tensor:
    """Pool, rescale and aggregate window probabilities ``[b, H_kv, G, w, n]`` into scores ``[b, H_kv, n]``."""
    n = p.shape[-1]
    mass = p.sum(-1, keepdim=True)
    if pool_kernel > 1:
        pooled = F.avg_pool1d(p.reshape(-1, 1, n), kernel_size=pool_kernel, stride=1, padding=pool_kernel // 2,
                              count_include_pad=False).reshape(p.shape)
        total = pooled.sum(-1, keepdim=True)
        pooled = torch.where(total > 0, pooled * (mass / total.clamp_min(torch.finfo(torch.float32).tiny)),
                             torch.zeros_like(pooled))
    else:
        pooled = p
    if aggregation == "mean":
        return pooled.mean(dim=3).mean(dim=2)
    r = pooled.amax(dim=(2, 3))
    return torch.maximum(r, r.mean(-1, keepdim=True))


def window_scores_reference(queries: torch.Tensor, keys: torch.Tensor, *, aggregation: str = "defensive",
                            pool_kernel: int = 5, scale: float | None = None) -> torch.Tensor:
    """Unfused torch reference (materialises the [b, H_kv, G, w, L] attention)."""
    return window_scores_and_attention_reference(queries, keys, aggregation=aggregation, pool_kernel=pool_kernel,
                                                 scale=scale)[0]


def window_scores_and_attention_reference(
    queries: torch.Tensor, keys: torch.Tensor, *, aggregation: str = "defensive", pool_kernel: int = 5,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unfused torch reference of :func:`window_scores_and_attention`: both results from one materialised
    attention."""
    b, hq, w, d, hkv, L, g = _check(queries, keys, aggregation, pool_kernel)
    if L == w:
        empty = torch.zeros(b, hkv, 0, dtype=torch.float32, device=keys.device)
        return empty, empty.clone()
    p = _window_probs(queries, keys, scale)                       # [b, hkv, g, w, n]
    return _scores_from_probs(p, aggregation, pool_kernel), p.mean(dim=(2, 3))


def window_scores(queries: torch.Tensor, keys: torch.Tensor, *, aggregation: str = "defensive",
                  pool_kernel: int = 5, scale: float | None = None) -> torch.Tensor:
    """Window scores ``[b, H_kv, n]`` float32: the fused Triton kernel on CUDA (or under
    ``TRITON_INTERPRET=1``), otherwise the torch reference. See the module docstring."""
    b, hq, w, d, hkv, L, g = _check(queries, keys, aggregation, pool_kernel)
    if L == w or not use_triton(_KERNEL, queries, keys):
        return window_scores_reference(queries, keys, aggregation=aggregation, pool_kernel=pool_kernel,
                                       scale=scale)
    return _window_scores_triton(queries, keys, aggregation, pool_kernel, d ** -0.5 if scale is None else scale)


def window_scores_and_attention(queries: torch.Tensor, keys: torch.Tensor, *, aggregation: str = "defensive",
                                pool_kernel: int = 5, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, attention)``, both ``[b, H_kv, n]`` float32, from one pass over the keys: the window scores of
    :func:`window_scores` and the plain window-and-group mean of the unpooled attention (which CriticalKV's
    critical stage ranks entries by), so neither path materialises the
    ``[w, L]`` attention on a GPU and the CPU path computes it once."""
    b, hq, w, d, hkv, L, g = _check(queries, keys, aggregation, pool_kernel)
    if L == w or not use_triton(_KERNEL, queries, keys):
        return window_scores_and_attention_reference(queries, keys, aggregation=aggregation,
                                                     pool_kernel=pool_kernel, scale=scale)
    return _window_scores_triton(queries, keys, aggregation, pool_kernel, d ** -0.5 if scale is None else scale,
                                 with_attention=True)


_KERNEL = None  # set below when triton is importable

# ----------------------------------------------------------------------------------------------------------
# Triton
# ----------------------------------------------------------------------------------------------------------

_LOG2E = 1.4426950408889634

# The @triton.jit kernels leave their parameters bare: Triton reads the annotations (tl.constexpr marks the
# compile-time constants), so mypy's check for annotated defs is waived on each kernel.
if HAS_TRITON:

    @triton.jit
    def _pool_weight(col, n, R: tl.constexpr, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
        """Total weight column `col` gets from the pooling: sum over the outputs j within R of 1/count_j
        (1 away from the edges; the closed form of the pooled row's mass, since pooling is linear)."""
        wt = tl.zeros([BLOCK], dtype=tl.float32)
        for o in tl.static_range(0, 2 * R + 1):
            j = col + (o - R)
            cnt = tl.minimum(j + R, n - 1) - tl.maximum(j - R, 0) + 1
            ok = (j >= 0) & (j < n)
            wt += tl.where(ok, 1.0 / tl.maximum(cnt, 1).to(tl.float32), 0.0)
        return wt

    @triton.jit
    def _window_stats_kernel(  # type: ignore[no-untyped-def]
        q_ptr, k_ptr, m_ptr, lall_ptr, lpre_ptr, lpool_ptr,
        H_KV, L, n, ROWS, W, BLOCKS_PER_SPLIT, SPLITS, ROWS_PAD,
        stride_qb, stride_qh, stride_qw,
        stride_kb, stride_kh, stride_kl,
        qk_scale,                                   # scale * log2(e)
        G: tl.constexpr, D: tl.constexpr, R: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr, DOT_F32: tl.constexpr,
    ):
        pid_bh = tl.program_id(0)
        pid_r = tl.program_id(1)
        pid_s = tl.program_id(2)
        bi = (pid_bh // H_KV).to(tl.int64)          # int64: b*H*L*d may pass 2**31
        hk = (pid_bh % H_KV).to(tl.int64)

        rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)          # row = g * W + i
        row_ok = rows < ROWS
        g_idx = rows // W
        i_idx = rows % W
        offs_d = tl.arange(0, D)
        q_ptrs = (q_ptr + bi * stride_qb + (hk * G + g_idx)[:, None] * stride_qh
                  + i_idx[:, None] * stride_qw + offs_d[None, :])
        q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
        if DOT_F32:
            q = q.to(tl.float32)

        m_i = tl.full([BLOCK_R], float("-inf"), dtype=tl.float32)
        l_all = tl.zeros([BLOCK_R], dtype=tl.float32)
        l_pre = tl.zeros([BLOCK_R], dtype=tl.float32)
        l_pool = tl.zeros([BLOCK_R], dtype=tl.float32)
        k_base = k_ptr + bi * stride_kb + hk * stride_kh
        qpos = n + i_idx                                        # absolute position of each window query

        blk_lo = pid_s * BLOCKS_PER_SPLIT
        for blk in range(blk_lo, blk_lo + BLOCKS_PER_SPLIT):
            cols = blk * BLOCK_L + tl.arange(0, BLOCK_L)
            col_ok = cols < L
            k = tl.load(k_base + cols[:, None] * stride_kl + offs_d[None, :], mask=col_ok[:, None], other=0.0)
            if DOT_F32:
                k = k.to(tl.float32)
                s = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                s = tl.dot(q, tl.trans(k))
            s = s * qk_scale
            visible = col_ok[None, :] & (cols[None, :] <= qpos[:, None])
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_safe)
            e = tl.exp2(s - m_safe[:, None])
            is_pre = (cols < n)[None, :]
            wt = _pool_weight(cols, n, R, BLOCK_L)
            l_all = l_all * alpha + tl.sum(e, axis=1)
            l_pre = l_pre * alpha + tl.sum(tl.where(is_pre, e, 0.0), axis=1)
            l_pool = l_pool * alpha + tl.sum(tl.where(is_pre, e * wt[None, :], 0.0), axis=1)
            m_i = m_new

        out = (pid_bh.to(tl.int64) * SPLITS + pid_s) * ROWS_PAD + rows
        tl.store(m_ptr + out, m_i, mask=row_ok)
        tl.store(lall_ptr + out, l_all, mask=row_ok)
        tl.store(lpre_ptr + out, l_pre, mask=row_ok)
        tl.store(lpool_ptr + out, l_pool, mask=row_ok)

    @triton.jit
    def _window_pool_kernel(  # type: ignore[no-untyped-def]
        q_ptr, k_ptr, m_ptr, coef_ptr, out_ptr, invl_ptr, att_ptr,
        H_KV, n, ROWS, W, ROWS_PAD,
        stride_qb, stride_qh, stride_qw,
        stride_kb, stride_kh, stride_kl,
        qk_scale,
        G: tl.constexpr, D: tl.constexpr, R: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, MEAN: tl.constexpr, ATT: tl.constexpr,
        DOT_F32: tl.constexpr,
    ):
        BLOCK_OUT: tl.constexpr = BLOCK_K - 2 * R
        pid_bh = tl.program_id(0)
        pid_n = tl.program_id(1)
        bi = (pid_bh // H_KV).to(tl.int64)          # int64: b*H*L*d may pass 2**31
        hk = (pid_bh % H_KV).to(tl.int64)
        start = pid_n * BLOCK_OUT

        loc = tl.arange(0, BLOCK_K)
        ext_cols = start - R + loc                              # key columns with the halo
        ext_ok = (ext_cols >= 0) & (ext_cols < n)
        out_cols = start + loc                                  # output column of local index j
        out_ok = (loc < BLOCK_OUT) & (out_cols < n)
        cnt = tl.minimum(out_cols + R, n - 1) - tl.maximum(out_cols - R, 0) + 1
        inv_cnt = 1.0 / tl.maximum(cnt, 1).to(tl.float32)
        t2 = loc[:, None]
        j2 = loc[None, :]
        band = tl.where((t2 >= j2) & (t2 <= j2 + 2 * R), inv_cnt[None, :], 0.0)   # [BLOCK_K ext, BLOCK_K out]

        k_base = k_ptr + bi * stride_kb + hk * stride_kh
        offs_d = tl.arange(0, D)
        k = tl.load(k_base + ext_cols[:, None] * stride_kl + offs_d[None, :], mask=ext_ok[:, None], other=0.0)
        if DOT_F32:
            k = k.to(tl.float32)

        if MEAN:
            acc = tl.zeros([BLOCK_K], dtype=tl.float32)
        else:
            acc = tl.full([BLOCK_K], float("-inf"), dtype=tl.float32)
        att = tl.zeros([BLOCK_K], dtype=tl.float32)             # unpooled probabilities, by halo column
        for r0 in range(0, ROWS, BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            row_ok = rows < ROWS
            g_idx = rows // W
            i_idx = rows % W
            q = tl.load(q_ptr + bi * stride_qb + (hk * G + g_idx)[:, None] * stride_qh
                        + i_idx[:, None] * stride_qw + offs_d[None, :], mask=row_ok[:, None], other=0.0)
            if DOT_F32:
                q = q.to(tl.float32)
                s = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                s = tl.dot(q, tl.trans(k))
            m = tl.load(m_ptr + pid_bh * ROWS_PAD + rows, mask=row_ok, other=0.0)
            coef = tl.load(coef_ptr + pid_bh * ROWS_PAD + rows, mask=row_ok, other=0.0)
            e = tl.exp2(s * qk_scale - m[:, None])
            e = tl.where(ext_ok[None, :] & row_ok[:, None], e, 0.0)
            pooled = tl.dot(e, band, input_precision="ieee") * coef[:, None]   # [BLOCK_R, BLOCK_K out]
            if ATT:
                inv_l = tl.load(invl_ptr + pid_bh * ROWS_PAD + rows, mask=row_ok, other=0.0)
                att += tl.sum(e * inv_l[:, None], axis=0)
            if MEAN:
                acc += tl.sum(pooled, axis=0)
            else:
                acc = tl.maximum(acc, tl.max(tl.where(row_ok[:, None], pooled, float("-inf")), axis=0))
        if MEAN:
            acc = acc / ROWS
        tl.store(out_ptr + pid_bh.to(tl.int64) * n + out_cols, acc, mask=out_ok)
        if ATT:
            # halo column t is key column start - R + t: this program owns t in [R, R + BLOCK_OUT)
            att_ok = (loc >= R) & (loc < R + BLOCK_OUT) & (ext_cols < n)
            tl.store(att_ptr + pid_bh.to(tl.int64) * n + ext_cols, att / ROWS, mask=att_ok)


    _KERNEL = _window_pool_kernel


def gpu_tiles(rows: int, d: int) -> dict[str, int]:
    """Tile sizes on a GPU: 64-key tiles, row chunks of at most 32 rows, 8 warps. On sm_90 these compile without
    spills for head dims 64 and 128 in both passes (``benchmarks/kv_kernel_resources.py``); 64-row chunks at
    d=64, or 4 warps at d=128, spill in the pool pass."""
    return dict(BLOCK_R=max(16, min(32, next_pow2(rows))), BLOCK_L=64, BLOCK_K=64, num_warps=8)


def _pick_blocks(rows: int, d: int, n_cols: int, device: torch.device) -> dict[str, int]:
    """Tile sizes. Under the interpreter the cost grows with programs x ops, so use few, large tiles. On a GPU:
    :func:`gpu_tiles`, and enough key splits in the stats pass for ~4 programs per SM."""
    if interpreting() and device.type != "cuda":
        block_r = max(16, next_pow2(rows))
        return dict(BLOCK_R=block_r, BLOCK_L=max(16, min(256, next_pow2(n_cols))),
                    BLOCK_K=max(16, min(128, next_pow2(n_cols + 4))), target_programs=1, num_warps=4)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return dict(gpu_tiles(rows, d), target_programs=4 * sms)


@overload
def _window_scores_triton(queries: torch.Tensor, keys: torch.Tensor, aggregation: str, pool_kernel: int,
                          scale: float, blocks: dict[str, int] | None = None,
                          with_attention: Literal[False] = False) -> torch.Tensor: ...
@overload
def _window_scores_triton(queries: torch.Tensor, keys: torch.Tensor, aggregation: str, pool_kernel: int,
                          scale: float, blocks: dict[str, int] | None = None, *,
                          with_attention: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
def _window_scores_triton(queries: torch.Tensor, keys: torch.Tensor, aggregation: str, pool_kernel: int,
                          scale: float, blocks: dict[str, int] | None = None,
                          with_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Launch both kernels; with ``with_attention`` also return the unpooled mean attention (same pass).
    `blocks` overrides the tile choice (BLOCK_R, BLOCK_L, BLOCK_K, target_programs): the tests use it to run
    GPU-sized tiles, several row chunks and several key splits under the interpreter."""
    b, hq, w, d = queries.shape
    hkv, L = keys.shape[1], keys.shape[2]
    g = hq // hkv
    n = L - w
    r = pool_kernel // 2
    if d < 16 or d & (d - 1):
        raise ValueError(f"the Triton kernel needs a power-of-two head_dim >= 16, got {d}")
    if queries.dtype != keys.dtype:
        raise ValueError(f"queries and keys must share a dtype, got {queries.dtype} and {keys.dtype}")
    queries = queries if queries.stride(-1) == 1 else queries.contiguous()
    keys = keys if keys.stride(-1) == 1 else keys.contiguous()
    rows = g * w
    dev = keys.device
    cfg = {**_pick_blocks(rows, d, n, dev), **(blocks or {})}
    if 2 * r >= cfg["BLOCK_K"] // 2:
        raise ValueError(f"pool_kernel={pool_kernel} too large for the kernel's tile ({cfg['BLOCK_K']})")
    dot_f32 = queries.dtype == torch.float32 or (interpreting() and dev.type != "cuda")
    block_r = cfg["BLOCK_R"]
    row_chunks = triton.cdiv(rows, block_r)
    rows_pad = row_chunks * block_r
    n_blocks = triton.cdiv(L, cfg["BLOCK_L"])
    splits = max(1, min(n_blocks, cfg["target_programs"] // max(1, b * hkv * row_chunks)))
    per_split = triton.cdiv(n_blocks, splits)
    splits = triton.cdiv(n_blocks, per_split)
    qk_scale = float(scale) * _LOG2E

    stats = torch.zeros(4, b * hkv, splits, rows_pad, dtype=torch.float32, device=dev)   # padded rows stay 0
    _window_stats_kernel[(b * hkv, row_chunks, splits)](
        queries, keys, stats[0], stats[1], stats[2], stats[3],
        hkv, L, n, rows, w, per_split, splits, rows_pad,
        queries.stride(0), queries.stride(1), queries.stride(2),
        keys.stride(0), keys.stride(1), keys.stride(2),
        qk_scale, G=g, D=d, R=r, BLOCK_R=block_r, BLOCK_L=cfg["BLOCK_L"], DOT_F32=dot_f32,
        num_warps=cfg["num_warps"],
    )
    # Merge the split partials (tiny: [b*H_kv, splits, rows]).
    m_s, l_all_s, l_pre_s, l_pool_s = stats
    m = m_s.amax(dim=1)
    alpha = torch.exp2(m_s - m[:, None, :])
    l_all = (l_all_s * alpha).sum(1)
    l_pre = (l_pre_s * alpha).sum(1)
    l_pool = (l_pool_s * alpha).sum(1)
    # rescaled pooled prob = pooled(exp2(s - m)) * l_pre / (l_all * l_pool): the row's mass before pooling
    # (l_pre / l_all) over its mass after pooling (l_pool / l_all), times the softmax normalisation 1 / l_all.
    denom = l_all * l_pool
    coef = torch.where(denom > 0, l_pre / denom.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(denom))
    m = m.contiguous()
    coef = coef.contiguous()

    out = torch.empty(b, hkv, n, dtype=torch.float32, device=dev)
    if with_attention:
        inv_l = torch.where(l_all > 0, 1.0 / l_all.clamp_min(torch.finfo(torch.float32).tiny),
                            torch.zeros_like(l_all)).contiguous()
        att = torch.empty(b, hkv, n, dtype=torch.float32, device=dev)
    else:
        inv_l, att = coef, out          # not read: the kernel is specialised with ATT=False
    block_k = cfg["BLOCK_K"]
    _window_pool_kernel[(b * hkv, triton.cdiv(n, block_k - 2 * r))](
        queries, keys, m, coef, out, inv_l, att,
        hkv, n, rows, w, rows_pad,
        queries.stride(0), queries.stride(1), queries.stride(2),
        keys.stride(0), keys.stride(1), keys.stride(2),
        qk_scale, G=g, D=d, R=r, BLOCK_R=block_r, BLOCK_K=block_k, MEAN=aggregation == "mean",
        ATT=with_attention, DOT_F32=dot_f32, num_warps=cfg["num_warps"],
    )
    if aggregation == "defensive":
        out = torch.maximum(out, out.mean(-1, keepdim=True))
    return (out, att) if with_attention else out
