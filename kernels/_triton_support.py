"""Shared helpers for the Triton kernels: optional import and the dispatch rule.

Triton is optional at import time so that the torch references stay importable on a machine without it.
`TRITON_INTERPRET=1` must be set before this package's kernel modules are imported (the `@triton.jit`
decorators read it when they run).
"""

from __future__ import annotations

import os

import torch

try:  # pragma: no cover - exercised implicitly
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None
    tl = None

HAS_TRITON = triton is not None

__all__ = ["DISABLE_ENV", "HAS_TRITON", "interpreter_ready", "interpreting", "next_pow2", "tl", "triton",
           "triton_disabled", "use_triton"]


def interpreting() -> bool:
    """True when the Triton interpreter is switched on (`TRITON_INTERPRET` set to a true value)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() not in ("", "0", "false", "no")


def interpreter_ready() -> bool:
    """True when triton itself was imported under the interpreter.

    triton's own `@jit` library functions (`tl.standard.*`) are decorated when triton is imported, so a
    process that imported triton before setting `TRITON_INTERPRET=1` cannot run kernels in the interpreter.
    """
    return HAS_TRITON and type(tl.standard.sigmoid).__name__ == "InterpretedFunction"


# Set to 0 to run the torch references instead of the Triton kernels everywhere (read at call time): a way out
# if a kernel misbehaves on some device, and the unfused baseline of benchmarks/bench_kv_scoring.py.
DISABLE_ENV = "CACHESVC_TRITON"


def triton_disabled() -> bool:
    """True when ``CACHESVC_TRITON`` is set to a false value (``0``, ``false``, ``no``, ``off``)."""
    return os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off")


def use_triton(kernel: object, *tensors: torch.Tensor) -> bool:
    """Dispatch rule: the Triton kernel when the tensors live on CUDA or the interpreter is on, unless
    ``CACHESVC_TRITON=0``.

    On the CPU the kernel (and triton itself) must also have been decorated under the interpreter, i.e.
    imported after `TRITON_INTERPRET=1` was set; otherwise a launch would fail ("0 active drivers"), so the
    torch reference is used instead.
    """
    if not HAS_TRITON or kernel is None or triton_disabled():
        return False
    if all(t.is_cuda for t in tensors):
        return True
    if any(t.is_cuda for t in tensors) or not interpreting():
        return False
    return type(kernel).__name__ == "InterpretedFunction" and interpreter_ready()


def next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())
