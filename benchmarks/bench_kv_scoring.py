"""Benchmark the KV-eviction kernels against their unfused torch references (not part of the test suite).

Two tables, both timed with `triton.testing.do_bench` (median) on a CUDA device:

1. **Kernels**: the fused window-scores kernel (`window_scores`, DefensiveKV aggregation) and the value-norm
   kernel against their torch references, with achieved memory bandwidth next to the device's peak and the
   speed-up; each output is checked against the reference first.
2. **Scoring overhead**: what eviction adds to one layer's prefill. A Llama-3.1-8B-shaped decoder layer (random
   weights; RMSNorm, RoPE, SDPA causal attention with GQA, SwiGLU MLP) is timed on `L` tokens; then, for SnapKV
   and DefensiveKV, the work the prefill hook does on that layer (window queries, `policy.score`,
   `policy.select`) with the Triton kernels and with the torch references (`CACHESVC_TRITON=0`), as a share of
   the layer's prefill time.

Inputs rotate among enough copies to exceed the L2 cache, so small contexts are not timed from cache.

    python benchmarks/bench_kv_scoring.py                 # GPU: L = 4k..128k, 32 q heads, 8 kv heads, d=128, w=32
    python benchmarks/bench_kv_scoring.py --lengths 4096,32768 --json .benchmarks/kv.json
    python benchmarks/bench_kv_scoring.py --smoke         # tiny shapes through every code path (CPU: interpreter)
    python benchmarks/bench_kv_scoring.py --flops         # matrix FLOPs of the scoring against the layer (no device)
    python benchmarks/bench_kv_scoring.py --sweep         # each kernel under several tile choices, L = 32k

Without CUDA (and without `--smoke`) it runs a correctness check of the fused kernel under the Triton
interpreter only, and says so. `--smoke` on the CPU prints interpreter times, which measure nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

if not torch.cuda.is_available():
    # must precede the first import of triton and of the kernel modules
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import cachesvc.kernels  # noqa: F401  (installed, or put on the path by benchmarks/device_kv.sh)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cachesvc.kernels._triton_support import DISABLE_ENV
from cachesvc.kernels.value_norm import value_norm, value_norm_chunked
from cachesvc.kernels.window_scores import window_scores, window_scores_reference
from cachesvc.policies.kv import make_policy
from cachesvc.policies.kv.apply import _rotate_half, window_queries
from cachesvc.policies.kv.base import MUST_KEEP, ScoreInputs

# Peak DRAM bandwidth in GB/s by (substring of) device name; the first match wins.
PEAK_GBPS = [
    ("H200", 4800.0),
    ("H100 SXM", 3350.0), ("H100 80GB HBM3", 3350.0), ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0), ("H100", 3350.0),
    ("A100-SXM4-80GB", 2039.0), ("A100 80GB", 1935.0), ("A100", 1555.0),
    ("L40S", 864.0), ("L40", 864.0), ("L4", 300.0), ("A10G", 600.0), ("A10", 600.0),
    ("RTX 4090", 1008.0), ("RTX 3090", 936.0), ("V100", 900.0), ("T4", 320.0),
]


def peak_gbps(name: str) -> float | None:
    for key, gbps in PEAK_GBPS:
        if key in name:
            return gbps
    return None


@dataclass(frozen=True)
class Shape:
    """One layer's shape (default: Llama-3.1-8B) and the eviction setting."""

    batch: int = 1
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    hidden: int = 4096
    intermediate: int = 14336
    window: int = 32
    keep: float = 0.2
    dtype: str = "float16"

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


SMOKE = Shape(heads=4, kv_heads=2, head_dim=64, hidden=128, intermediate=256, window=8, dtype="float32")
SMOKE_LENGTHS = [67, 131]
DEFAULT_LENGTHS = [4096, 8192, 16384, 32768, 65536, 131072]


# -- timing -------------------------------------------------------------------------------------------------------

Timer = Callable[[Callable[[], object]], float]


def make_timer(device: str, warmup_ms: int, rep_ms: int) -> Timer:
    """Median milliseconds of a call: `do_bench` (CUDA events) on a GPU, a host clock elsewhere."""
    if device == "cuda":
        import triton.testing

        return lambda fn: float(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))

    def host(fn: Callable[[], object]) -> float:
        fn()
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(runs)

    return host


def rotating(fn: Callable[..., object], input_sets: list[tuple]) -> Callable[[], object]:
    """A call of `fn` on the next of several input sets, so that repeated calls do not read from the L2 cache."""
    state = {"i": 0}

    def call() -> object:
        args = input_sets[state["i"] % len(input_sets)]
        state["i"] += 1
        return fn(*args)

    return call


def copies_for(nbytes: int, device: str) -> int:
    """How many input sets of `nbytes` it takes to exceed the L2 cache four times over (1 on the CPU)."""
    if device != "cuda":
        return 1
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * 2**20)
    return max(1, min(16, math.ceil(4 * l2 / max(nbytes, 1))))


def on_references(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` run with the torch references instead of the Triton kernels (``CACHESVC_TRITON=0`` around the call)."""
    def call() -> object:
        old = os.environ.get(DISABLE_ENV)
        os.environ[DISABLE_ENV] = "0"
        try:
            return fn()
        finally:
            if old is None:
                del os.environ[DISABLE_ENV]
            else:
                os.environ[DISABLE_ENV] = old

    return call


def max_rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-30)).item()


# -- a decoder layer of the benchmark's shape ---------------------------------------------------------------------

class SyntheticLayer(torch.nn.Module):
    """A Llama-style decoder layer with random weights: what one layer's prefill costs, and the attention module
    the eviction hook sees (``q_proj``, ``o_proj``, ``head_dim``, ``scaling``)."""

    def __init__(self, shape: Shape, device: str) -> None:
        super().__init__()
        d, hq, hkv, hid = shape.head_dim, shape.heads, shape.kv_heads, shape.hidden
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = lin(hid, hq * d), lin(hid, hkv * d), lin(hid, hkv * d), \
            lin(hq * d, hid)
        self.gate_proj, self.up_proj = lin(hid, shape.intermediate), lin(hid, shape.intermediate)
        self.down_proj = lin(shape.intermediate, hid)
        self.head_dim, self.heads, self.kv_heads = d, hq, hkv
        self.scaling = d ** -0.5
        self.to(device=device, dtype=shape.torch_dtype)

    @staticmethod
    def rope(length: int, dim: int, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv = 1.0 / (500000.0 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
        freqs = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[None]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @staticmethod
    def rms(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5).to(x.dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """The layer's output, and what the eviction hook reads: the attention input, keys and values."""
        b, L, _ = x.shape
        h = self.rms(x)
        q = self.q_proj(h).view(b, L, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, L, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, L, self.kv_heads, self.head_dim).transpose(1, 2)
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, L, -1))
        m = self.rms(x)
        x = x + self.down_proj(torch.nn.functional.silu(self.gate_proj(m)) * self.up_proj(m))
        return x, h, k, v


def eviction_work(
    policy, layer: SyntheticLayer, hidden, cos, sin, keys, values
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the prefill hook computes on one layer before the gather: window queries, scores, keep mask."""
    queries = window_queries(layer, hidden, (cos, sin), policy.window_size)
    scores = policy.score(ScoreInputs(layer, hidden, keys, values, queries, policy.window_size)).float()
    return scores, policy.select(scores)


# -- operation counts ---------------------------------------------------------------------------------------------

def layer_flops(shape: Shape, length: int) -> float:
    """Matrix FLOPs of one layer's prefill: the projections, the MLP and causal attention (QK and PV, half the
    square)."""
    d, hq, hkv, hid = shape.head_dim, shape.heads, shape.kv_heads, shape.hidden
    linear = 2 * length * hid * (2 * hq * d + 2 * hkv * d + 3 * shape.intermediate)
    attention = 2 * 2 * hq * d * length * length / 2
    return shape.batch * (linear + attention)


def window_scores_flops(shape: Shape, length: int) -> float:
    """The fused kernel's matrix FLOPs: ``q k^T`` in both passes (G*w rows per KV head) and the banded pooling
    product of the second pass (a [rows, 64] x [64, 64] tile per 60 output columns)."""
    rows = shape.heads * shape.window
    return shape.batch * rows * length * (2 * 2 * shape.head_dim + 2 * 64 * 64 / 60)


def value_norm_flops(shape: Shape, length: int) -> float:
    """``v W_O^h`` for every query head: as many FLOPs as the output projection itself."""
    return shape.batch * 2 * length * shape.heads * shape.head_dim * shape.hidden


def print_flop_shares(lengths: list[int], shape: Shape) -> None:
    """What the scoring costs in matrix FLOPs against the layer's prefill: a floor for its share of the time if
    the kernels ran as efficiently as the layer's own matrix products (no device needed)."""
    print(f"Matrix FLOPs per layer (H_q={shape.heads}, H_kv={shape.kv_heads}, d={shape.head_dim}, "
          f"hidden={shape.hidden}, MLP {shape.intermediate}, w={shape.window})")
    print("| L | layer prefill GFLOP | window scores GFLOP | share | value norms GFLOP | share |\n"
          "|---:|---:|---:|---:|---:|---:|")
    for length in lengths:
        lf, wf, vf = layer_flops(shape, length), window_scores_flops(shape, length), value_norm_flops(shape, length)
        print(f"| {length} | {lf / 1e9:,.0f} | {wf / 1e9:,.1f} | {100 * wf / lf:.2f}% | {vf / 1e9:,.0f} | "
              f"{100 * vf / lf:.2f}% |")


# -- tables ---------------------------------------------------------------------------------------------------------

def random_o_weight(shape: Shape, device: str, g: torch.Generator) -> torch.Tensor:
    """An attention output projection weight ``[hidden, H_q * d]`` at the scale of a trained model's."""
    return (torch.randn(shape.hidden, shape.heads * shape.head_dim, device=device, generator=g) * 0.02).to(
        shape.torch_dtype)


def random_kernel_inputs(shape: Shape, length: int, device: str, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Window queries, keys and values of one layer: ``[b, H_q, w, d]``, ``[b, H_kv, L, d]`` twice."""
    q = torch.randn(shape.batch, shape.heads, shape.window, shape.head_dim, device=device, generator=g)
    kv = torch.randn(2, shape.batch, shape.kv_heads, length, shape.head_dim, device=device, generator=g)
    return q.to(shape.torch_dtype), kv[0].to(shape.torch_dtype), kv[1].to(shape.torch_dtype)


def input_sets(shape: Shape, length: int, device: str, g: torch.Generator) -> list[tuple[torch.Tensor, ...]]:
    """Enough sets of :func:`random_kernel_inputs` to exceed the L2 cache (see :func:`copies_for`)."""
    first = random_kernel_inputs(shape, length, device, g)
    nbytes = sum(t.numel() * t.element_size() for t in first)
    return [first] + [random_kernel_inputs(shape, length, device, g) for _ in range(copies_for(nbytes, device) - 1)]


def kernel_rows(lengths: list[int], shape: Shape, device: str, timer: Timer, peak: float | None,
                aggregation: str) -> list[dict]:
    print(f"\nKernels (b={shape.batch}, H_q={shape.heads}, H_kv={shape.kv_heads}, d={shape.head_dim}, "
          f"w={shape.window}, hidden={shape.hidden}, {shape.dtype}; window scores with {aggregation} aggregation)")
    print("| kernel | L | fused ms | fused GB/s | % of peak | reference ms | speed-up | same-FLOP GEMM ms "
          "| max rel err |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    g = torch.Generator(device=device).manual_seed(0)
    o_weight = random_o_weight(shape, device, g)
    rows = []
    for length in lengths:
        sets = input_sets(shape, length, device, g)
        first = sets[0]
        cases = [
            ("window_scores", lambda q, k, v: window_scores(q, k, aggregation=aggregation),
             lambda q, k, v: window_scores_reference(q, k, aggregation=aggregation),
             lambda q, k, v: q.numel() * q.element_size() + k.numel() * k.element_size()),
            ("value_norm", lambda q, k, v: value_norm(v, o_weight, shape.heads // shape.kv_heads),
             lambda q, k, v: value_norm_chunked(v, o_weight, shape.heads // shape.kv_heads),
             lambda q, k, v: v.numel() * v.element_size() + o_weight.numel() * o_weight.element_size()),
        ]
        for name, fused, reference, count_bytes in cases:
            out = fused(*first)
            try:
                err = max_rel_err(out, reference(*first))
                t_ref = timer(rotating(reference, sets))
            except torch.OutOfMemoryError:
                err, t_ref = float("nan"), float("nan")
            t_fused = timer(rotating(fused, sets))
            gbps = count_bytes(*first) / t_fused / 1e6
            pct = f"{100 * gbps / peak:.0f}%" if peak else "n/a"
            # value norms do the output projection's FLOPs: the library GEMM of that size is their ceiling
            t_gemm = timer(gemm_of_o_proj(shape, length, o_weight, device)) if name == "value_norm" else None
            row = dict(kernel=name, length=length, fused_ms=t_fused, fused_gbps=gbps, reference_ms=t_ref,
                       speedup=t_ref / t_fused, gemm_ms=t_gemm, max_rel_err=err)
            rows.append(row)
            gemm = f"{t_gemm:.3f}" if t_gemm is not None else "-"
            print(f"| {name} | {length} | {t_fused:.3f} | {gbps:.0f} | {pct} | {t_ref:.3f} | {t_ref / t_fused:.1f}x "
                  f"| {gemm} | {err:.1e} |")
        del sets, first
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def gemm_of_o_proj(shape: Shape, length: int, o_weight: torch.Tensor, device: str) -> Callable[[], object]:
    """The attention output projection of ``length`` tokens (as many FLOPs as the value norms), by the library."""
    a = torch.randn(shape.batch * length, shape.heads * shape.head_dim, device=device).to(o_weight.dtype)
    return lambda: torch.nn.functional.linear(a, o_weight)


# Tile variants for --sweep (the launchers' choices are among them).
WINDOW_TILES = [dict(BLOCK_R=r, BLOCK_L=kb, BLOCK_K=kb, num_warps=nw) for r in (16, 32) for kb in (64, 128)
                for nw in (4, 8)]
VALUE_NORM_TILES = [dict(BLOCK_L=lb, BLOCK_H=hb, num_warps=nw) for lb in (64, 128) for hb in (64, 128) for nw in (4, 8)]


def sweep_rows(lengths: list[int], shape: Shape, device: str, timer: Timer, variants: int | None) -> list[dict]:
    """Each kernel under every tile variant (checked against the reference first), against the launcher's choice."""
    from cachesvc.kernels.value_norm import _value_norm_triton, value_norm_reference
    from cachesvc.kernels.window_scores import _window_scores_triton

    print("\nTile sweep (the launcher's choice first)")
    print("| kernel | L | tiles | ms | vs launcher | max rel err |\n|---|---:|---|---:|---:|---:|")
    group = shape.heads // shape.kv_heads
    g = torch.Generator(device=device).manual_seed(1)
    o_weight = random_o_weight(shape, device, g)
    rows = []
    for length in lengths:
        sets = input_sets(shape, length, device, g)
        q, k, v = sets[0]
        cases = [
            ("window_scores", lambda tiles, q, k, v: _window_scores_triton(q, k, "defensive", 5,
                                                                           shape.head_dim ** -0.5, blocks=tiles),
             window_scores_reference(q, k), WINDOW_TILES),
            # the reference on the first 4,096 positions only: it holds [b, H_q, L, hidden] in fp32
            ("value_norm", lambda tiles, q, k, v: _value_norm_triton(v, o_weight, group, tiles=tiles),
             value_norm_reference(v[:, :, :4096], o_weight, group), VALUE_NORM_TILES),
        ]
        for name, launch, ref, variants_all in cases:
            base = None
            for tiles in [None, *variants_all[:variants]]:
                out = launch(tiles, q, k, v)
                err = max_rel_err(out[..., :ref.shape[-1]], ref)
                ms = timer(rotating(partial(launch, tiles), sets))
                base = ms if base is None else base
                label = "launcher" if tiles is None else " ".join(f"{a}={b}" for a, b in tiles.items())
                rows.append(dict(kernel=name, length=length, tiles=tiles, ms=ms, vs_launcher=ms / base,
                                 max_rel_err=err))
                print(f"| {name} | {length} | {label} | {ms:.3f} | {ms / base:.2f}x | {err:.1e} |")
        del q, k, v, sets
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def overhead_rows(lengths: list[int], shape: Shape, device: str, timer: Timer, policies: list[str]) -> list[dict]:
    print(f"\nScoring overhead per layer (keep {shape.keep:.0%}; layer: hidden {shape.hidden}, MLP "
          f"{shape.intermediate}, {shape.heads}/{shape.kv_heads} heads, d={shape.head_dim}, SDPA causal, "
          f"{shape.dtype})")
    print("| L | layer prefill ms | policy | scoring ms (Triton) | share of prefill | scoring ms (torch) | share "
          "| speed-up | kept entries agree |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    layer = SyntheticLayer(shape, device)
    rows = []
    with torch.no_grad():
        for length in lengths:
            rows += overhead_rows_at(length, layer, shape, device, timer, policies)
            if device == "cuda":
                torch.cuda.empty_cache()  # the length's inputs went with the call
    return rows


def overhead_rows_at(length: int, layer: SyntheticLayer, shape: Shape, device: str, timer: Timer,
                     policies: list[str]) -> list[dict]:
    cos, sin = SyntheticLayer.rope(length, shape.head_dim, device, shape.torch_dtype)
    x = torch.randn(shape.batch, length, shape.hidden, device=device, dtype=shape.torch_dtype)
    t_layer = timer(lambda: layer(x, cos, sin))
    first = layer(x, cos, sin)[1:]                                   # hidden, keys, values
    h0, k0, v0 = first
    nbytes = sum(t.numel() * t.element_size() for t in first)
    sets = [first] + [layer(torch.randn_like(x), cos, sin)[1:] for _ in range(copies_for(nbytes, device) - 1)]
    rows = []
    for name in policies:
        policy = make_policy(name, compression_ratio=1.0 - shape.keep, window_size=shape.window)
        work = rotating(lambda h, k, v, policy=policy: eviction_work(policy, layer, h, cos, sin, k, v), sets)
        once = partial(eviction_work, policy, layer, h0, cos, sin, k0, v0)  # for the check
        scores, keep = once()
        try:
            ref_scores, ref_keep = on_references(once)()
            soft = (scores < MUST_KEEP) & (ref_scores < MUST_KEEP)
            err = max_rel_err(scores[soft], ref_scores[soft]) if soft.any() else 0.0
            agree = (keep & ref_keep).sum().item() / max(1, ref_keep.sum().item())
            t_ref = timer(on_references(work))
        except torch.OutOfMemoryError:
            err, agree, t_ref = float("nan"), float("nan"), float("nan")
        t_fused = timer(work)
        row = dict(length=length, layer_ms=t_layer, policy=name, fused_ms=t_fused,
                   fused_share=t_fused / t_layer, reference_ms=t_ref, reference_share=t_ref / t_layer,
                   speedup=t_ref / t_fused, keep_agreement=agree, max_rel_err=err)
        rows.append(row)
        print(f"| {length} | {t_layer:.2f} | {name} | {t_fused:.3f} | {100 * t_fused / t_layer:.2f}% | "
              f"{t_ref:.3f} | {100 * t_ref / t_layer:.2f}% | {t_ref / t_fused:.1f}x | {agree:.4f} |")
    return rows


def run_tables(args: argparse.Namespace, shape: Shape, device: str) -> dict:
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (Triton interpreter: times measure nothing)"
    peak = peak_gbps(name) if device == "cuda" else None
    print(f"device: {name} (peak DRAM bandwidth {peak or 'unknown'} GB/s)")
    print_flop_shares(args.lengths, shape)
    timer = make_timer(device, args.warmup, args.rep)
    if args.sweep:
        result = dict(peak_gbps=peak, config=asdict(shape),
                      sweep=sweep_rows(args.lengths, shape, device, timer, 2 if args.smoke else None))
        bad = [r for r in result["sweep"] if not r["max_rel_err"] <= args.tolerance]
        return finish(args, name, result, bad)
    result = dict(peak_gbps=peak, config=asdict(shape),
                  kernels=kernel_rows(args.lengths, shape, device, timer, peak, args.aggregation),
                  overhead=overhead_rows(args.lengths, shape, device, timer, args.policies))
    bad = [r for r in result["kernels"] if not r["max_rel_err"] <= args.tolerance]
    bad += [r for r in result["overhead"] if not r["keep_agreement"] >= 0.99]
    return finish(args, name, result, bad)


def finish(args: argparse.Namespace, name: str, result: dict, bad: list[dict]) -> dict:
    """Say whether every output matched its reference; merge the result into ``--json`` under the device name
    (a sweep under its own key)."""
    print("\nOK: every kernel matches its reference" if not bad else f"\nMISMATCH: {bad}")
    result["ok"] = not bad
    if args.json:
        path = Path(args.json)
        data = json.loads(path.read_text()) if path.exists() else {}
        key = f"{name} (tile sweep)" if args.sweep else name
        data[key] = result
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        print(f"wrote {path} (key {key!r})")
    return result


def run_cpu_check(args: argparse.Namespace) -> int:
    from cachesvc.kernels._triton_support import HAS_TRITON, interpreter_ready

    print("No CUDA device: correctness check only under the Triton interpreter (no timings; GPU numbers pending).")
    if not HAS_TRITON or not interpreter_ready():
        print("triton is not importable in interpreter mode here; nothing to check.")
        return 1
    shape = Shape()
    # Same head layout as the benchmark, short contexts (the interpreter's cost grows with programs x ops).
    worst = 0.0
    print("| L | aggregation | dtype | max rel err vs reference |\n|---:|---|---|---:|")
    for length in (67, 131, 293):
        for dtype in (torch.float16, torch.float32):
            q = torch.randn(1, shape.heads, shape.window, shape.head_dim).to(dtype)
            k = torch.randn(1, shape.kv_heads, length, shape.head_dim).to(dtype)
            for agg in ("defensive", "mean"):
                err = max_rel_err(window_scores(q, k, aggregation=agg), window_scores_reference(q, k, aggregation=agg))
                worst = max(worst, err)
                print(f"| {length} | {agg} | {str(dtype).split('.')[-1]} | {err:.1e} |")
    ok = worst < 1e-4
    print(f"{'OK' if ok else 'MISMATCH'}: worst relative error {worst:.1e}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="context lengths, comma-separated (default 4096..131072; with --smoke 67,131)")
    ap.add_argument("--policies", nargs="+", default=["snapkv", "defensivekv"])
    ap.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default=None)
    ap.add_argument("--aggregation", choices=["defensive", "mean"], default="defensive",
                    help="aggregation of the window-scores row of the kernel table")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny shapes through every code path of the GPU run (on the CPU: under the interpreter)")
    ap.add_argument("--warmup", type=int, default=25, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=int, default=100, help="do_bench repetition time, ms")
    ap.add_argument("--tolerance", type=float, default=1e-2, help="largest relative error a kernel may show")
    ap.add_argument("--json", help="merge results into this JSON file, keyed by device name")
    ap.add_argument("--flops", action="store_true", help="only print the FLOP shares of the scoring (no device)")
    ap.add_argument("--sweep", action="store_true",
                    help="time each kernel under several tile choices instead (default length 32768)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.flops:
        print_flop_shares(args.lengths or DEFAULT_LENGTHS, Shape())
        return 0
    if not args.smoke and device != "cuda":
        return run_cpu_check(args)
    shape = SMOKE if args.smoke else Shape()
    if args.dtype:
        shape = Shape(**{**asdict(shape), "dtype": args.dtype})
    if args.lengths is None:
        args.lengths = SMOKE_LENGTHS[:1] if args.smoke and args.sweep else SMOKE_LENGTHS if args.smoke else \
            [32768] if args.sweep else DEFAULT_LENGTHS
    return 0 if run_tables(args, shape, device)["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
