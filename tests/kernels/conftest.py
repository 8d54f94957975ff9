"""Kernel tests: compiled on a CUDA device, under the Triton interpreter on the CPU.

`TRITON_INTERPRET=1` must be set before triton and the kernel modules run their `@triton.jit` decorators, so
without a CUDA device it is set here, before they are imported (the kernel modules are re-imported if another
test package imported them first; if triton itself was imported first the kernel comparisons are skipped with
the reason). It is then put back as it was for the rest of the session, so that other test
packages (e.g. the eviction policies) keep the fast torch references on the CPU, and set again around each
test in this package by an autouse fixture (the dispatch reads it at call time).
"""

from __future__ import annotations

import importlib
import os
import sys
import zlib

import pytest
import torch

INTERPRET = not torch.cuda.is_available()
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_MODULES = ("cachesvc.kernels.window_scores", "cachesvc.kernels.value_norm")

SKIP_REASON = ""
if INTERPRET:
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        for _name in KERNEL_MODULES:
            if _name in sys.modules:
                importlib.reload(sys.modules[_name])   # functions imported elsewhere see the new kernels
            else:
                importlib.import_module(_name)
    finally:
        if _previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _previous
    from cachesvc.kernels._triton_support import HAS_TRITON, interpreter_ready

    if not HAS_TRITON:
        SKIP_REASON = "triton is not installed"
    elif not interpreter_ready():
        SKIP_REASON = ("triton was imported before TRITON_INTERPRET=1 was set (another test package imported it "
                       "first): run tests/kernels on its own or with TRITON_INTERPRET=1 in the environment")


@pytest.fixture(autouse=True)
def _triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def device() -> str:
    """The device for kernel-vs-reference tests; skips them when the Triton path cannot run (fails in CI, where
    a silently skipped kernel comparison would hide a broken kernel)."""
    if SKIP_REASON:
        if os.environ.get("CI"):
            pytest.fail(SKIP_REASON)
        pytest.skip(SKIP_REASON)
    return DEVICE


@pytest.fixture(autouse=True)
def _fresh_seed(request: pytest.FixtureRequest) -> None:
    """Fresh random inputs per test (a seed per test id, so a failure reproduces); KERNEL_TEST_SEED shifts them."""
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()) + int(os.environ.get("KERNEL_TEST_SEED", "0")))
