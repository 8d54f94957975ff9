#!/usr/bin/env bash
# The KV-eviction kernels on a lent GPU, in one call (the `run` tool of the device library; no registry there):
#   1. the kernel tests compiled (tests/kernels: every kernel against its torch reference),
#   2. benchmarks/bench_kv_scoring.py (kernel timings and scoring overhead per layer, do_bench medians),
#   3. its tile sweep at 32k tokens (every kernel under several tile choices).
# It uses the machine's own torch and triton; cachesvc is put on the path without installing it (no registry, and
# the project's pins do not apply there). Full logs and the JSON go to $OUT (default: ./.benchmarks/device).
#   bash benchmarks/device_kv.sh [bench_kv_scoring.py arguments]
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p "${OUT:-.benchmarks/device}"
out="$(cd "${OUT:-.benchmarks/device}" && pwd)"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
} 2>&1 | tee "$out/versions.txt"

# cachesvc.kernels and cachesvc.policies map to kernels/ and policies/ (pyproject's package-dir): run in a mirror of
# the checkout whose cachesvc/ holds them too, so the layout works from any sys.path entry (pytest puts the
# test root first).
repo="$PWD"
mirror="$(mktemp -d)"
for f in "$repo"/*; do [ "$(basename "$f")" = cachesvc ] || ln -s "$f" "$mirror/"; done
mkdir "$mirror/cachesvc"
for f in "$repo"/cachesvc/*; do ln -s "$f" "$mirror/cachesvc/"; done
ln -s "$repo/kernels" "$mirror/cachesvc/kernels"
ln -s "$repo/policies" "$mirror/cachesvc/policies"
cd "$mirror"
export PYTHONPATH="$mirror${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET CACHESVC_TRITON

# Only the kernel tests' own conftest (the suite's root conftest loads the proxy, which needs hnswlib); the
# project's pytest settings name plugins the machine may not have, hence -c /dev/null.
timeout 300 python3 -m pytest -c /dev/null --rootdir . --confcutdir tests/kernels -p no:cacheprovider -q -W default \
  tests/kernels 2>&1 | tee "$out/kernel_tests.log" | tail -n 15
tests_rc=${PIPESTATUS[0]}

timeout 420 python3 benchmarks/bench_kv_scoring.py --json "$out/kv_scoring.json" "$@" 2>&1 | tee "$out/bench.log"
bench_rc=${PIPESTATUS[0]}

sweep_rc=0
if python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  timeout 240 python3 benchmarks/bench_kv_scoring.py --sweep --json "$out/kv_scoring.json" 2>&1 | tee "$out/sweep.log"
  sweep_rc=${PIPESTATUS[0]}
fi

echo "kernel tests rc=$tests_rc, benchmark rc=$bench_rc, tile sweep rc=$sweep_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$sweep_rc" -eq 0 ]
