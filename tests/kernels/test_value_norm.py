"""value_norm: Triton kernel and the chunked CPU path vs the torch reference (batch > 1 included), and the
reference vs a loop."""

from __future__ import annotations

import pytest
import torch

from cachesvc.kernels.value_norm import value_norm, value_norm_chunked, value_norm_reference

from ._assert import assert_close

TOL = {torch.float32: (1e-4, 1e-5), torch.float16: (1e-3, 2e-3), torch.bfloat16: (1e-3, 5e-3)}

# (b, H_kv, G, L, d, hidden), dtype: odd/prime L, L on both sides of the 64-row GPU tile and the 256-row
# interpreter tile, hidden not a multiple of the hidden tile.
CASES = [
    ((2, 2, 4, 37, 64, 96), torch.float32),
    ((2, 1, 8, 131, 128, 256), torch.float16),
    ((1, 2, 1, 61, 64, 64), torch.bfloat16),
    ((2, 2, 1, 257, 64, 80), torch.float32),
    ((1, 1, 4, 64, 128, 200), torch.float16),
    ((2, 1, 4, 65, 64, 48), torch.float32),
]


@pytest.mark.parametrize("shape,dtype", CASES,
                         ids=[f"b{s[0]}-kv{s[1]}-G{s[2]}-L{s[3]}-d{s[4]}-o{s[5]}-{str(t).split('.')[-1]}"
                              for s, t in CASES])
def test_kernel_matches_reference(shape, dtype, device):
    b, hkv, g, L, d, hidden = shape
    v = torch.randn(b, hkv, L, d, device=device).to(dtype)
    w = (torch.randn(hidden, hkv * g * d, device=device) * 0.05).to(dtype)
    out = value_norm(v, w, g)
    atol, rtol = TOL[dtype]
    assert out.dtype == torch.float32 and out.shape == (b, hkv, L)
    assert_close(out, value_norm_reference(v, w, g), atol=atol, rtol=rtol, name=str(shape))
    if b > 1:   # every batch element on its own gives the same numbers (the reference code's kernel does not)
        for bi in range(b):
            assert_close(out[bi:bi + 1], value_norm(v[bi:bi + 1].contiguous(), w, g), atol=atol, rtol=rtol,
                         name=f"batch element {bi}")


def test_reference_matches_loop():
    b, hkv, g, L, d, hidden = 2, 2, 3, 5, 4, 6
    v = torch.randn(b, hkv, L, d)
    w = torch.randn(hidden, hkv * g * d)
    ref = value_norm_reference(v, w, g)
    expected = torch.zeros(b, hkv, L)
    for bi in range(b):
        for kv in range(hkv):
            for i in range(L):
                norms = []
                for gi in range(g):
                    h = kv * g + gi
                    w_oh = w[:, h * d:(h + 1) * d].T                 # [d, hidden]
                    norms.append((v[bi, kv, i] @ w_oh).abs().sum())
                expected[bi, kv, i] = sum(norms) / g
    assert_close(ref, expected, atol=1e-5, rtol=1e-5, name="reference vs loop")


@pytest.mark.parametrize("L,chunk", [(1, 4), (37, 8), (64, 16), (65, 16), (300, 256)])
def test_chunked_cpu_path_matches_reference(L, chunk):
    """The CPU path (no Triton) computes the reference's numbers block by block, the last block partial."""
    v = torch.randn(2, 2, L, 16, dtype=torch.float16)
    w = torch.randn(40, 2 * 3 * 16, dtype=torch.float16) * 0.1
    assert_close(value_norm_chunked(v, w, 3, chunk=chunk), value_norm_reference(v, w, 3), atol=1e-4, rtol=1e-5,
                 name=f"L={L} chunk={chunk}")


def test_bad_shapes():
    with pytest.raises(ValueError):
        value_norm(torch.randn(1, 2, 5, 16), torch.randn(8, 2 * 3 * 16 + 1), 3)
