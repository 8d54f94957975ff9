"""benchmarks/bench_kv_scoring.py --smoke: every code path a GPU run takes (kernel table, a decoder layer's
prefill, SnapKV and DefensiveKV scoring with the kernels and with the torch references), on tiny shapes, so the
script a lent GPU runs has run before it gets there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kv_scoring.py"


def test_smoke_run_checks_every_path_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "kv.json"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("CACHESVC_TRITON", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--lengths", "67", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: every kernel matches its reference" in proc.stdout
    (result,) = json.loads(out.read_text()).values()
    assert result["ok"] is True
    assert {r["kernel"] for r in result["kernels"]} == {"window_scores", "value_norm"}
    assert all(r["max_rel_err"] < 1e-4 for r in result["kernels"])
    assert all(r["max_rel_err"] > 0 for r in result["kernels"])        # the kernels ran, not the references twice
    overhead = {r["policy"]: r for r in result["overhead"]}
    assert set(overhead) == {"snapkv", "defensivekv"}
    for row in overhead.values():
        assert row["keep_agreement"] == 1.0 and row["layer_ms"] > 0 and row["reference_ms"] > 0


def test_smoke_tile_sweep_checks_each_variant(tmp_path: Path) -> None:
    out = tmp_path / "kv.json"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("CACHESVC_TRITON", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--sweep", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = json.loads(out.read_text()).values()
    rows = result["sweep"]
    for kernel in ("window_scores", "value_norm"):
        mine = [r for r in rows if r["kernel"] == kernel]
        assert mine[0]["tiles"] is None and mine[0]["vs_launcher"] == 1.0      # the launcher's own choice first
        assert len({json.dumps(r["tiles"]) for r in mine}) == len(mine) == 3  # then distinct variants
        assert all(0 < r["max_rel_err"] < 1e-4 for r in mine)
