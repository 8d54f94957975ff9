"""Comparison helper that says where a kernel and its reference differ (NaN and inf included)."""

from __future__ import annotations

import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, name: str = "",
                 max_report: int = 5) -> None:
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a = actual.detach().float().cpu()
    e = expected.detach().float().cpu()
    problems = []
    for label, t in (("actual", a), ("expected", e)):
        bad = ~torch.isfinite(t)
        if bad.any():
            idx = bad.nonzero()[:max_report].tolist()
            problems.append(f"{label} has {int(bad.sum())} non-finite values (NaN/inf), first at {idx}: "
                            f"{[t[tuple(i)].item() for i in idx]}")
    if problems:
        raise AssertionError(f"{name}: " + "; ".join(problems))
    diff = (a - e).abs()
    tol = atol + rtol * e.abs()
    bad = diff > tol
    if bad.any():
        idx = bad.nonzero()
        worst = diff.flatten().argmax().item()
        widx = list(torch.unravel_index(torch.tensor(worst), diff.shape))
        first = idx[:max_report].tolist()
        rows = ", ".join(f"{i}: {a[tuple(i)].item():.6g} vs {e[tuple(i)].item():.6g}" for i in first)
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} elements differ beyond atol={atol}, rtol={rtol}; "
            f"max abs diff {diff.max().item():.3g} at {[int(x) for x in widx]}; first: {rows}")
