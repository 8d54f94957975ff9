"""The tiles the launchers pick on a GPU compile for sm_90 without spilling registers (no GPU needed: Triton's
compiler and the ptxas/cuobjdump its wheel bundles; benchmarks/kv_kernel_resources.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kv_kernel_resources.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the kernel tests compile for the device itself")
def test_gpu_tiles_do_not_spill_on_sm90() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--arch", "90", "--dtypes", "fp16"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: no configuration spills" in proc.stdout
    # every kernel and specialisation the launchers use was compiled (stats, four pool variants, value norm; d 64/128)
    assert proc.stdout.count("| fp16 |") == 2 * (1 + 4 + 1)
