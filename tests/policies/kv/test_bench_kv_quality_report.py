"""benchmarks/bench_kv_quality.py --report with several runs: contexts pooled, mismatched settings refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_kv_quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_kv_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(seed: int, hits: list[int], kl: list[float], **meta) -> dict:
    return {"meta": {"policies": ["snapkv", "defensivekv"], "budgets": [0.2], "window": 32, "cont": 64, "seed": seed,
                     **meta},
            "acc": {"1024": {"retrieval": {"full": [[1, 1]], "snapkv@0.2": [[0, 0]], "defensivekv@0.2": [hits]}}},
            "fidelity": {"1024": {"kl": {"snapkv@0.2": [0.2], "defensivekv@0.2": kl},
                                  "agree": {"snapkv@0.2": [0.8], "defensivekv@0.2": [0.9]}}}}


def test_pooling_concatenates_contexts_of_every_run() -> None:
    bench = _bench()
    pooled = bench.pool_results([_run(1, [1, 0], [0.1]), _run(2, [0, 0], [0.15], kv_heads=0)])
    assert pooled["meta"]["seeds"] == [1, 2]
    assert pooled["acc"]["1024"]["retrieval"]["defensivekv@0.2"] == [[1, 0], [0, 0]]
    assert pooled["acc"]["1024"]["retrieval"]["full"] == [[1, 1], [1, 1]]
    assert pooled["fidelity"]["1024"]["kl"]["defensivekv@0.2"] == [0.1, 0.15]
    table = bench.markdown_tables(pooled)
    assert "retrieval: 2 contexts / 4 questions, text: 2 contexts" in table


def test_pooling_refuses_runs_with_other_settings() -> None:
    bench = _bench()
    with pytest.raises(SystemExit, match="kv_heads"):
        bench.pool_results([_run(1, [1, 0], [0.1]), _run(2, [0, 0], [0.15], kv_heads=9)])
