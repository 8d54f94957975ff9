"""Value-norm scaling for KV eviction (CriticalKV / DefensiveKV step 4): ``N_i = mean_h || v_i W_O^h ||_1``.

``values [b, H_kv, L, d]``, ``o_proj_weight [hidden, H_q * d]`` (the ``nn.Linear`` weight of the attention
output projection; ``W_O^h = o_proj_weight[:, h*d:(h+1)*d].T`` has shape ``[d, hidden]``). For each KV head the
mean over its ``G = H_q / H_kv`` query heads of the L1 norm of the value projected through that head's slice
of the output projection. Result ``[b, H_kv, L]`` float32.

The Triton kernel (grid: b*H_kv, blocks of L) keeps a block of values in registers and loops over the group's
heads and over blocks of ``hidden``, accumulating ``|v @ W_O^h|`` row sums; it never writes the
``[L, hidden]`` projection. Unlike the reference implementation's kernel it indexes the batch correctly.
"""

from __future__ import annotations

import torch

from ._triton_support import HAS_TRITON, interpreting, next_pow2, tl, triton, use_triton

__all__ = ["value_norm", "value_norm_chunked", "value_norm_reference"]


def _check(values: torch.Tensor, o_proj_weight: torch.Tensor, group: int) -> tuple[int, int, int, int, int]:
    if values.dim() != 4 or o_proj_weight.dim() != 2:
        raise ValueError(f"values must be 4-D and o_proj_weight 2-D, got {tuple(values.shape)}, "
                         f"{tuple(o_proj_weight.shape)}")
    b, hkv, L, d = values.shape
    hidden, cols = o_proj_weight.shape
    if group < 1 or cols != hkv * group * d:
        raise ValueError(f"o_proj_weight has {cols} input columns, expected H_kv*group*d = {hkv}*{group}*{d}")
    return b, hkv, L, d, hidden


def value_norm_reference(values: torch.Tensor, o_proj_weight: torch.Tensor, group: int) -> torch.Tensor:
    """Unfused torch reference (materialises ``[b, H_q, L, hidden]`` in fp32)."""
    b, hkv, L, d, hidden = _check(values, o_proj_weight, group)
    w = o_proj_weight.float().reshape(hidden, hkv, group, d)               # [hidden, kv, g, d]
    proj = torch.einsum("bkld,okgd->bkglo", values.float(), w)               # [b, kv, g, L, hidden]
    return proj.abs().sum(-1).mean(2)


def value_norm_chunked(values: torch.Tensor, o_proj_weight: torch.Tensor, group: int, chunk: int = 256) -> torch.Tensor:
    """The reference's math over blocks of ``chunk`` positions, so that the projection held at once is
    ``[b, H_q, chunk, hidden]`` instead of ``[b, H_q, L, hidden]`` (161 MiB at 4k tokens on SmolLM2): the path
    used where the Triton kernel does not run (CPU model servers)."""
    b, hkv, L, d, hidden = _check(values, o_proj_weight, group)
    w = o_proj_weight.float().reshape(hidden, hkv, group, d)
    out = torch.empty(b, hkv, L, dtype=torch.float32, device=values.device)
    for start in range(0, L, chunk):
        block = values[:, :, start:start + chunk].float()
        proj = torch.einsum("bkld,okgd->bkglo", block, w)                    # [b, kv, g, chunk, hidden]
        out[:, :, start:start + chunk] = torch.linalg.vector_norm(proj, ord=1, dim=-1).mean(2)
    return out


def value_norm(values: torch.Tensor, o_proj_weight: torch.Tensor, group: int) -> torch.Tensor:
    """``[b, H_kv, L]`` float32: the Triton kernel on CUDA (or under ``TRITON_INTERPRET=1``), else the
    chunked torch computation."""
    b, hkv, L, d, hidden = _check(values, o_proj_weight, group)
    if L == 0 or not use_triton(_KERNEL, values, o_proj_weight):
        return value_norm_chunked(values, o_proj_weight, group)
    return _value_norm_triton(values, o_proj_weight, group)


_KERNEL = None  # set below when triton is importable

# The @triton.jit kernels leave their parameters bare: Triton reads the annotations (tl.constexpr marks the
# compile-time constants), so mypy's check for annotated defs is waived on each kernel.
if HAS_TRITON:

    @triton.jit
    def _value_norm_kernel(  # type: ignore[no-untyped-def]
        v_ptr, w_ptr, out_ptr,
        H_KV, L, HIDDEN,
        stride_vb, stride_vh, stride_vl,
        stride_wo,
        G: tl.constexpr, D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_H: tl.constexpr,
        DOT_F32: tl.constexpr,
    ):
        pid_bh = tl.program_id(0)
        pid_l = tl.program_id(1)
        bi = (pid_bh // H_KV).to(tl.int64)          # int64: b*H*L*d may pass 2**31
        hk = (pid_bh % H_KV).to(tl.int64)
        offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
        l_ok = offs_l < L
        offs_d = tl.arange(0, D)
        v = tl.load(v_ptr + bi * stride_vb + hk * stride_vh + offs_l[:, None] * stride_vl + offs_d[None, :],
                    mask=l_ok[:, None], other=0.0)
        if DOT_F32:
            v = v.to(tl.float32)
        acc = tl.zeros([BLOCK_L], dtype=tl.float32)
        for g in range(G):
            col0 = (hk * G + g) * D
            for o0 in range(0, HIDDEN, BLOCK_H):
                offs_o = o0 + tl.arange(0, BLOCK_H)
                o_ok = offs_o < HIDDEN
                # W_O^h block [D, BLOCK_H] = o_proj_weight[o0:o0+BLOCK_H, col0:col0+D].T
                wt = tl.load(w_ptr + offs_o[None, :] * stride_wo + (col0 + offs_d)[:, None],
                             mask=o_ok[None, :], other=0.0)
                if DOT_F32:
                    wt = wt.to(tl.float32)
                    proj = tl.dot(v, wt, input_precision="ieee")
                else:
                    proj = tl.dot(v, wt)
                acc += tl.sum(tl.abs(proj), axis=1)
        tl.store(out_ptr + pid_bh.to(tl.int64) * L + offs_l, acc / G, mask=l_ok)


    _KERNEL = _value_norm_kernel


def gpu_tiles(d: int) -> dict[str, int]:
    """Tile sizes on a GPU: 64 positions by 64 (d >= 128) or 128 hidden columns, 4 warps (checked without spills
    for sm_90 by ``benchmarks/kv_kernel_resources.py``)."""
    return dict(BLOCK_L=64, BLOCK_H=64 if d >= 128 else 128, num_warps=4)


def _value_norm_triton(values: torch.Tensor, o_proj_weight: torch.Tensor, group: int,
                       tiles: dict[str, int] | None = None) -> torch.Tensor:
    """Launch the kernel; ``tiles`` (BLOCK_L, BLOCK_H, num_warps) overrides the tile choice (tile sweeps)."""
    b, hkv, L, d = values.shape
    hidden = o_proj_weight.shape[0]
    if d < 16 or d & (d - 1):
        raise ValueError(f"the Triton kernel needs a power-of-two head_dim >= 16, got {d}")
    if values.dtype != o_proj_weight.dtype:
        o_proj_weight = o_proj_weight.to(values.dtype)
    values = values if values.stride(-1) == 1 else values.contiguous()
    o_proj_weight = o_proj_weight.contiguous()
    interp = interpreting() and values.device.type != "cuda"
    dot_f32 = values.dtype == torch.float32 or interp
    if interp:   # few, large programs: interpreter cost grows with programs x ops
        chosen = dict(BLOCK_L=max(16, min(256, next_pow2(L))), BLOCK_H=max(16, min(512, next_pow2(hidden))),
                      num_warps=4)
    else:
        chosen = gpu_tiles(d)
    tiles = {**chosen, **(tiles or {})}
    out = torch.empty(b, hkv, L, dtype=torch.float32, device=values.device)
    _value_norm_kernel[(b * hkv, triton.cdiv(L, tiles["BLOCK_L"]))](
        values, o_proj_weight, out, hkv, L, hidden,
        values.stride(0), values.stride(1), values.stride(2), o_proj_weight.stride(0),
        G=group, D=d, DOT_F32=dot_f32, **tiles,
    )
    return out
