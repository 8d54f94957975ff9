"""The hostile-input suite: careless and malicious clients, and upstreams that break the wire format, against the
real proxy over loopback. One test (at least) per case of docs/reliability.md.

Every test is tallied under a case: its docstring's first line when that starts with the case's number ("2. ..."),
else its module's ``CASE``. A test counts what it tried with the ``tally`` fixture (a test that counts nothing
tried one input). With ``CACHESVC_RELIABILITY_JSON=FILE`` set, the run writes the counts and outcomes there
(``benchmarks/reliability_report.py`` turns them into the table of docs/reliability.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import pytest


@dataclass
class Tally:
    """What one test tried: requests or inputs sent, faults an upstream injected, and the case it covers."""

    case: str = ""
    inputs: int = 0
    faults: int = 0
    outcome: str = "not run"


_TALLIES: dict[str, Tally] = {}


@pytest.fixture(autouse=True)
def tally(request: pytest.FixtureRequest) -> Tally:
    lines = (request.node.function.__doc__ or "").strip().splitlines()
    own = lines[0] if lines and lines[0][:1].isdigit() else ""
    case = own or getattr(request.module, "CASE", "") or request.node.name
    return _TALLIES.setdefault(request.node.nodeid, Tally(case=case))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    found = _TALLIES.get(item.nodeid)
    if found is not None and found.outcome != "failed" and (report.when == "call" or report.failed):
        found.outcome = "passed" if report.passed else ("skipped" if report.skipped else "failed")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("CACHESVC_RELIABILITY_JSON")
    if path and _TALLIES:
        with open(path, "w") as f:
            json.dump({nodeid: {**asdict(t), "inputs": t.inputs or 1} for nodeid, t in _TALLIES.items()}, f, indent=1)
