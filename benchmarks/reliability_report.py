"""The table of docs/reliability.md: run the hostile-input suite (tests/hostile) and count, per case, the inputs
tried, the faults injected and the answers lost or wrong.

    python benchmarks/reliability_report.py            # the whole suite, ~2 min on 2 cores
    python benchmarks/reliability_report.py -k tenant  # extra arguments go to pytest

A case's "lost or wrong" is 0 when every assertion of its test held (each test asserts that no answer was lost,
wrong, leaked across tenants or cached when it must not be); a failed test shows FAILED there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tallies.json"
        env = {**os.environ, "CACHESVC_RELIABILITY_JSON": str(out), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/hostile", *argv],
                             cwd=ROOT, env=env, check=False)
        tallies = json.loads(out.read_text()) if out.exists() else {}
    rows: dict[str, dict[str, int | str]] = {}
    for tally in tallies.values():
        row = rows.setdefault(tally["case"], {"tests": 0, "inputs": 0, "faults": 0, "failed": 0})
        row["tests"] = int(row["tests"]) + 1
        row["inputs"] = int(row["inputs"]) + tally["inputs"]
        row["faults"] = int(row["faults"]) + tally["faults"]
        row["failed"] = int(row["failed"]) + (tally["outcome"] != "passed")
    print("\n| case | tests | inputs tried | faults injected | answers lost or wrong |\n|---|---:|---:|---:|---:|")
    for case in sorted(rows, key=_case_order):
        row = rows[case]
        print(f"| {case} | {row['tests']} | {row['inputs']:,} | {row['faults']:,} | "
              f"{'FAILED' if row['failed'] else 0} |")
    total = {key: sum(int(r[key]) for r in rows.values()) for key in ("tests", "inputs", "faults", "failed")}
    print(f"| **all** | {total['tests']} | {total['inputs']:,} | {total['faults']:,} | "
          f"{'FAILED' if total['failed'] else 0} |")
    return run.returncode


def _case_order(case: str) -> tuple[int, str]:
    number = case.split(".", 1)[0]
    return (int(number), case) if number.isdigit() else (10_000, case)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
