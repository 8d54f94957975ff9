"""Benchmark the fused window-scores kernel against the unfused torch reference (not part of the test suite).

On a CUDA device: for each context length, checks the kernel against the reference, then times both with
`triton.testing.do_bench` and prints the time, the achieved memory bandwidth (bytes of keys + queries read
once / time) next to the device's peak, and the speed-up; results can be merged into a JSON file keyed by
`torch.cuda.get_device_name()`.

Without CUDA it runs a small correctness check under the Triton interpreter only, and says so.

    python benchmarks/bench_kv_scoring.py                       # 4k..128k, 32 q heads, 8 kv heads, d=128, w=32
    python benchmarks/bench_kv_scoring.py --lengths 4096,32768 --aggregation mean --json .benchmarks/kv.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    # must precede the first import of triton and of the kernel modules
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cachesvc.kernels.window_scores import window_scores, window_scores_reference  # noqa: E402

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


def make_inputs(batch: int, heads: int, kv_heads: int, length: int, dim: int, window: int, dtype: torch.dtype,
                device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(length)
    q = torch.randn(batch, heads, window, dim, device=device, generator=g).to(dtype)
    k = torch.randn(batch, kv_heads, length, dim, device=device, generator=g).to(dtype)
    return q, k


def max_rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def run_gpu(args: argparse.Namespace) -> None:
    import triton.testing

    name = torch.cuda.get_device_name()
    peak = peak_gbps(name)
    print(f"device: {name} (peak DRAM bandwidth {peak or 'unknown'} GB/s); b={args.batch}, H_q={args.heads}, "
          f"H_kv={args.kv_heads}, d={args.head_dim}, w={args.window}, {args.dtype}, aggregation={args.aggregation}")
    header = ("| L | fused ms | fused GB/s | % of peak | reference ms | reference GB/s | speed-up | max rel err |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(header)
    rows = []
    for length in args.lengths:
        q, k = make_inputs(args.batch, args.heads, args.kv_heads, length, args.head_dim, args.window,
                           getattr(torch, args.dtype), "cuda")
        nbytes = q.numel() * q.element_size() + k.numel() * k.element_size()
        fused = lambda: window_scores(q, k, aggregation=args.aggregation)  # noqa: E731
        unfused = lambda: window_scores_reference(q, k, aggregation=args.aggregation)  # noqa: E731
        out = fused()
        try:
            ref = unfused()
            err = max_rel_err(out, ref)
            del ref
            t_ref = triton.testing.do_bench(unfused, warmup=args.warmup, rep=args.rep)
        except torch.OutOfMemoryError:
            err, t_ref = float("nan"), float("nan")
        torch.cuda.empty_cache()
        t_fused = triton.testing.do_bench(fused, warmup=args.warmup, rep=args.rep)
        gbps = nbytes / t_fused / 1e6
        gbps_ref = nbytes / t_ref / 1e6
        pct = f"{100 * gbps / peak:.0f}%" if peak else "n/a"
        row = dict(length=length, fused_ms=t_fused, fused_gbps=gbps, reference_ms=t_ref, reference_gbps=gbps_ref,
                   speedup=t_ref / t_fused, max_rel_err=err)
        rows.append(row)
        print(f"| {length} | {t_fused:.3f} | {gbps:.0f} | {pct} | {t_ref:.3f} | {gbps_ref:.0f} | "
              f"{t_ref / t_fused:.1f}x | {err:.1e} |")
    if args.json:
        path = Path(args.json)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = dict(peak_gbps=peak, config=dict(batch=args.batch, heads=args.heads, kv_heads=args.kv_heads,
                                                      head_dim=args.head_dim, window=args.window, dtype=args.dtype,
                                                      aggregation=args.aggregation),
                          results=rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        print(f"wrote {path} (key {name!r})")


def run_cpu_check(args: argparse.Namespace) -> int:
    from cachesvc.kernels._triton_support import HAS_TRITON, interpreter_ready

    print("No CUDA device: correctness check only under the Triton interpreter (no timings; GPU numbers pending).")
    if not HAS_TRITON or not interpreter_ready():
        print("triton is not importable in interpreter mode here; nothing to check.")
        return 1
    # Same head layout as the benchmark, short contexts (the interpreter's cost grows with programs x ops).
    worst = 0.0
    print("| L | aggregation | dtype | max rel err vs reference |\n|---:|---|---|---:|")
    for length in (67, 131, 293):
        for dtype in (torch.float16, torch.float32):
            q, k = make_inputs(1, args.heads, args.kv_heads, length, args.head_dim, args.window, dtype, "cpu")
            for agg in ("defensive", "mean"):
                err = max_rel_err(window_scores(q, k, aggregation=agg), window_scores_reference(q, k, aggregation=agg))
                worst = max(worst, err)
                print(f"| {length} | {agg} | {str(dtype).split('.')[-1]} | {err:.1e} |")
    ok = worst < 1e-4
    print(f"{'OK' if ok else 'MISMATCH'}: worst relative error {worst:.1e}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")],
                    default=[4096, 8192, 16384, 32768, 65536, 131072], help="context lengths, comma-separated")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=32, help="query heads")
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    ap.add_argument("--aggregation", choices=["defensive", "mean"], default="defensive")
    ap.add_argument("--warmup", type=int, default=25, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=int, default=100, help="do_bench repetition time, ms")
    ap.add_argument("--json", help="merge results into this JSON file, keyed by device name")
    args = ap.parse_args()
    if torch.cuda.is_available():
        run_gpu(args)
        return 0
    return run_cpu_check(args)


if __name__ == "__main__":
    sys.exit(main())
