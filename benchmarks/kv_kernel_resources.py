"""Compile the KV-eviction kernels for a GPU architecture without a GPU and report their resource usage.

Each kernel is compiled with the tiles its launcher picks on a GPU (`gpu_tiles` in each kernel module), for head
dims 64 and 128 and every specialisation the launchers use, by Triton's own compiler and the `ptxas` its wheel
bundles; the registers, stack and local memory per thread come from the bundled `cuobjdump`. A stack or local
frame means spilled registers (slow local-memory traffic): the exit code is 1 if any configuration spills.

    python benchmarks/kv_kernel_resources.py                # sm_90 (H100/H200)
    python benchmarks/kv_kernel_resources.py --arch 80      # A100
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    sys.exit("unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from cachesvc.kernels import value_norm as vn
from cachesvc.kernels import window_scores as ws

CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")

GROUP, WINDOW = 4, 32           # Llama-3.1-8B: 32 query heads over 8 KV heads; the default window

# Runtime arguments by kernel: pointers first (the dtype is filled in), then 32-bit ints, then the fp32 scale.
STATS_ARGS = (["q_ptr", "k_ptr"], ["m_ptr", "lall_ptr", "lpre_ptr", "lpool_ptr"],
              ["H_KV", "L", "n", "ROWS", "W", "BLOCKS_PER_SPLIT", "SPLITS", "ROWS_PAD", "stride_qb", "stride_qh",
               "stride_qw", "stride_kb", "stride_kh", "stride_kl"], ["qk_scale"])
POOL_ARGS = (["q_ptr", "k_ptr"], ["m_ptr", "coef_ptr", "out_ptr", "invl_ptr", "att_ptr"],
             ["H_KV", "n", "ROWS", "W", "ROWS_PAD", "stride_qb", "stride_qh", "stride_qw", "stride_kb", "stride_kh",
              "stride_kl"], ["qk_scale"])
VALUE_NORM_ARGS = (["v_ptr", "w_ptr"], ["out_ptr"], ["H_KV", "L", "HIDDEN", "stride_vb", "stride_vh", "stride_vl",
                                                     "stride_wo"], [])


def signature(args: tuple[list[str], ...], dtype: str, constexprs: dict[str, object]) -> dict[str, str]:
    inputs, outputs, ints, floats = args
    sig = {name: f"*{dtype}" for name in inputs}
    sig |= {name: "*fp32" for name in outputs}
    sig |= {name: "i32" for name in ints}
    sig |= {name: "fp32" for name in floats}
    return sig | {name: "constexpr" for name in constexprs}


def usage(kernel: object, args: tuple[list[str], ...], dtype: str, constexprs: dict[str, object], num_warps: int,
          arch: int) -> dict[str, int]:
    src = ASTSource(fn=kernel, signature=signature(args, dtype, constexprs), constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        report = subprocess.run([CUOBJDUMP, "--dump-resource-usage", f.name], capture_output=True, text=True,
                                check=True).stdout
    return {k.lower(): int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", report)}


def configurations() -> list[tuple[str, object, tuple, dict, int]]:
    """(label, kernel, argument layout, constexprs without the dtype flag, warps) as the launchers run them."""
    rows = GROUP * WINDOW
    out = []
    for d in (64, 128):
        t = ws.gpu_tiles(rows, d)
        common = dict(G=GROUP, D=d, R=2, BLOCK_R=t["BLOCK_R"])
        out.append((f"window stats d={d} BLOCK_R={t['BLOCK_R']}", ws._window_stats_kernel, STATS_ARGS,
                    common | dict(BLOCK_L=t["BLOCK_L"]), t["num_warps"]))
        for mean in (False, True):
            for att in (False, True):
                label = f"window pool d={d} {'mean' if mean else 'max'}{' +attention' if att else ''}"
                out.append((label, ws._window_pool_kernel, POOL_ARGS,
                            common | dict(BLOCK_K=t["BLOCK_K"], MEAN=mean, ATT=att), t["num_warps"]))
        v = vn.gpu_tiles(d)
        out.append((f"value norm d={d} BLOCK_H={v['BLOCK_H']}", vn._value_norm_kernel, VALUE_NORM_ARGS,
                    dict(G=GROUP, D=d, BLOCK_L=v["BLOCK_L"], BLOCK_H=v["BLOCK_H"]), v["num_warps"]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90 = H100/H200, 80 = A100)")
    ap.add_argument("--dtypes", nargs="+", default=["fp16", "bf16"])
    args = ap.parse_args(argv)
    print(f"sm_{args.arch}, triton {triton.__version__}, G={GROUP}, w={WINDOW}")
    print("| kernel | dtype | warps | registers | stack B | local B | shared B |\n|---|---|---:|---:|---:|---:|---:|")
    spills = []
    for label, kernel, layout, constexprs, warps in configurations():
        for dtype in args.dtypes:
            u = usage(kernel, layout, dtype, constexprs | dict(DOT_F32=False), warps, args.arch)
            print(f"| {label} | {dtype} | {warps} | {u['reg']} | {u['stack']} | {u['local']} | {u['shared']} |")
            if u["stack"] or u["local"]:
                spills.append(f"{label} {dtype}")
    print(f"\nSPILLS: {', '.join(spills)}" if spills else "\nOK: no configuration spills")
    return 1 if spills else 0


if __name__ == "__main__":
    sys.exit(main())
