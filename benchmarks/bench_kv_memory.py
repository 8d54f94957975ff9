"""Peak memory of one prefill with KV eviction, on the real SmolLM2-135M-Instruct (CPU).

Each configuration runs in its own process: load the model, reset the kernel's peak-RSS counter
(``/proc/self/clear_refs``), prefill ``L`` tokens of natural text inside ``compress`` (logits of the last position
only, as the model server does), then read the peak (``VmHWM``) and the KV bytes held. The baseline in the same run is
Layer-DefensiveKV holding every layer whole until the last is scored (``prefill_pool=inf``, the reference code's
way); the streamed pool (default 1.5) must keep exactly the same entries (compared by a digest of the kept positions).
Workers pin glibc's mmap threshold (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors go back to the OS at once and
the peak tracks live bytes rather than the allocator's retention; the median of ``--repeats`` processes is reported.

    python benchmarks/bench_kv_memory.py --lengths 2048 4096 --budget 0.2 --threads 2
    python benchmarks/bench_kv_memory.py --value-norm 4064 --threads 2   # one layer's ||v W_O||_1, CPU paths

``--value-norm`` compares, for one layer of SmolLM2's shape (3 KV heads, group 3, head dim 64, hidden 576), the
unfused torch reference with the chunked CPU path: median time of 5 calls and peak growth, each in its own process
(default allocator settings).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS: dict[str, tuple[str | None, dict[str, float]]] = {
    "none": (None, {}),
    "snapkv": ("snapkv", {}),
    "defensivekv": ("defensivekv", {}),
    "layer_defensivekv, whole layers (reference)": ("layer_defensivekv", {"prefill_pool": math.inf}),
    "layer_defensivekv, pool 1.5 (default)": ("layer_defensivekv", {"prefill_pool": 1.5}),
    "layer_defensivekv, pool 1.0": ("layer_defensivekv", {"prefill_pool": 1.0}),
    "layer_defensivekv, groups of 3 layers": ("layer_defensivekv", {"layer_group": 3}),
}
REFERENCE = "layer_defensivekv, whole layers (reference)"


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(config: str, length: int, budget: float, threads: int) -> dict[str, object]:
    """Run one prefill in this process and return its measurements."""
    import torch
    from transformers import DynamicCache

    from cachesvc.model_server.hf_model import load_smollm2
    from cachesvc.policies.kv import compress, make_policy
    from cachesvc.policies.kv.ragged_layer import held_bytes

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_kv_quality import doc_text

    torch.set_num_threads(threads)
    model, tok = load_smollm2()
    ids = tok(doc_text(), return_tensors="pt").input_ids[:, :length]
    with torch.no_grad():  # warm-up: first-call allocations are not the policy's cost
        model(input_ids=ids[:, :64], past_key_values=DynamicCache(config=model.config), use_cache=True)
    name, fields = CONFIGS[config]
    policy = make_policy(name, compression_ratio=1.0 - budget, **fields) if name else None
    cache = DynamicCache(config=model.config)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_mib("VmRSS")
    started = time.perf_counter()
    with torch.no_grad():
        if policy is None:
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            positions = []
        else:
            with compress(model, policy) as report:
                model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            positions = [report.layers[i].positions for i in sorted(report.layers)]
    elapsed = time.perf_counter() - started
    peak = _status_mib("VmHWM")
    held = sum(held_bytes(layer) for layer in cache.layers)
    digest = hashlib.sha256()
    for pos in positions:  # the kept entries of every head, as sets (slot order is the layout's business)
        digest.update(pos.sort(dim=-1).values.numpy().tobytes())
    return {"prefill_s": elapsed, "peak_growth_mib": peak - before, "kv_held_mib": held / 2**20,
            "tokens": int(ids.shape[1]), "kept_digest": digest.hexdigest()[:12] if positions else ""}


def value_norm_worker(path: str, length: int, threads: int) -> dict[str, float]:
    """Time and peak growth of one layer's value norms by ``path`` ("reference" or "chunked")."""
    import torch

    from cachesvc.kernels.value_norm import value_norm_chunked, value_norm_reference

    torch.set_num_threads(threads)
    fn = value_norm_reference if path == "reference" else value_norm_chunked
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(1, 3, length, 64, generator=gen)
    weight = torch.randn(576, 9 * 64, generator=gen) * 0.05
    fn(values[:, :, :64], weight, 3)  # warm-up
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mib("VmRSS")
    times = []
    for _ in range(5):
        started = time.perf_counter()
        fn(values, weight, 3)
        times.append(time.perf_counter() - started)
    return {"ms": 1000 * statistics.median(times), "peak_growth_mib": _status_mib("VmHWM") - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--budget", type=float, default=0.2, help="fraction of the KV cache kept")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3, help="processes per configuration (median reported)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--value-norm", type=int, metavar="LENGTH", help="compare the value-norm CPU paths instead")
    ap.add_argument("--worker", nargs=2, metavar=("CONFIG", "LENGTH"), help=argparse.SUPPRESS)
    ap.add_argument("--value-norm-worker", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.budget, args.threads)))
        return
    if args.value_norm_worker:
        print(json.dumps(value_norm_worker(args.value_norm_worker, args.value_norm, args.threads)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    if args.value_norm:
        print(f"one layer's value norms, {args.value_norm:,} positions, {args.threads} threads\n")
        print("| CPU path | median ms (5 calls) | peak growth MiB |\n|---|---|---|")
        for path in ("reference", "chunked"):
            out = subprocess.run(  # default allocator: a pinned mmap threshold would make every block a page fault
                [sys.executable, __file__, "--value-norm-worker", path, "--value-norm", str(args.value_norm),
                 "--threads", str(args.threads)], capture_output=True, text=True, check=True,
                env={k: v for k, v in env.items() if k != "MALLOC_MMAP_THRESHOLD_"})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {path} | {r['ms']:.0f} | {r['peak_growth_mib']:.1f} |")
        return
    print(f"budget {args.budget:.0%}, {args.threads} threads, median of {args.repeats} processes; "
          "peak = VmHWM growth during the prefill\n")
    print("| config | tokens | prefill s | peak growth MiB | vs reference | KV held MiB | same entries as reference |")
    print("|---|---|---|---|---|---|---|")
    for length in args.lengths:
        rows = {}
        for config in args.configs:
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", config, str(length), "--budget", str(args.budget),
                     "--threads", str(args.threads)], capture_output=True, text=True, env=env, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            rows[config] = {**runs[0], **{k: statistics.median(r[k] for r in runs)
                                          for k in ("prefill_s", "peak_growth_mib")}}
            assert len({r["kept_digest"] for r in runs}) == 1, f"{config}: runs kept different entries"
        ref = rows.get(REFERENCE)
        for config, r in rows.items():
            vs = f"{r['peak_growth_mib'] / ref['peak_growth_mib']:.2f}x" if ref else "-"
            same = ("yes" if r["kept_digest"] == ref["kept_digest"] else "NO") if ref and "pool" in config else "-"
            print(f"| {config} | {r['tokens']:,} | {r['prefill_s']:.2f} | {r['peak_growth_mib']:.0f} | {vs} "
                  f"| {r['kv_held_mib']:.1f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
