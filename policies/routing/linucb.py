"""Disjoint LinUCB (Li et al., 2010) over N arms at once: per arm ``A = ridge*I + sum x x^T``, ``b = sum r x``,
``theta = A^-1 (b - m s)``; score ``m + theta.x + alpha*sqrt(x^T A^-1 x)``.

``m`` is the mean of every reward seen so far, over all arms, and ``s = sum x`` per arm: each arm's ridge
regression is of its reward's difference from that pooled mean, so an arm with little data is estimated at the
pool's mean reward rather than at 0. With a prior of 0, an untried adapter looks worse than every tried one as soon
as rewards are mostly high (a likelihood ratio, an answer that finished), and a router that explores only through
its confidence bound then never tries it. The centring is exact at every step (``m`` is applied to the sums, not
to each reward as it came), and costs one more vector per arm. It takes contexts that end in a bias term of 1, as
the routers' do: that term's weight is an arm's offset from ``m``.

Arrays are stacked across arms ((N, d, d), (N, d)) so that scoring every arm is one einsum. ``A^-1`` is kept by
Sherman-Morrison and rebuilt from ``A`` every ``refactor_every`` updates of an arm, so that rounding error cannot
accumulate. float64 throughout: at the reduced dimensions used here (d <= 64) it costs nothing measurable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STATE_VERSION = 2


class LinUCB:
    """Per-arm ridge regression of reward on context, with an upper confidence bound."""

    def __init__(self, arms: int, dim: int, *, alpha: float = 1.0, ridge: float = 1.0,
                 refactor_every: int = 256) -> None:
        if arms < 1 or dim < 1:
            raise ValueError("LinUCB needs at least one arm and one dimension")
        if alpha < 0 or ridge <= 0 or refactor_every < 1:
            raise ValueError("alpha must be >= 0, ridge > 0, refactor_every >= 1")
        self.arms, self.dim = arms, dim
        self.alpha, self.ridge, self.refactor_every = alpha, ridge, refactor_every
        eye = np.eye(dim)
        self.a = np.repeat(eye[None] * ridge, arms, axis=0)
        self.a_inv = np.repeat(eye[None] / ridge, arms, axis=0)
        self.b = np.zeros((arms, dim))
        self.s = np.zeros((arms, dim))
        self.raw = np.zeros((arms, dim))  # A^-1 b
        self.lift = np.zeros((arms, dim))  # A^-1 s
        self.counts = np.zeros(arms, dtype=np.int64)
        self.reward_sums = np.zeros(arms)
        self.prior_mean = 0.0  # the pooled mean reward: every arm's estimate before its own data moves it
        self.theta = np.zeros((arms, dim))  # per-arm weights of the reward's difference from the pooled mean

    def _refresh(self) -> None:
        """Recompute the pooled mean and every arm's weights (the mean moves with every reward)."""
        total = int(self.counts.sum())
        self.prior_mean = float(self.reward_sums.sum() / total) if total else 0.0
        self.theta = self.raw - self.prior_mean * self.lift

    def means(self, contexts: np.ndarray) -> np.ndarray:
        """Estimated reward of every arm: (N,) for one context (d,), (M, N) for a batch (M, d)."""
        return self.prior_mean + np.asarray(contexts, dtype=np.float64) @ self.theta.T

    def widths(self, contexts: np.ndarray) -> np.ndarray:
        """Confidence widths ``sqrt(x^T A^-1 x)`` of every arm, shaped like ``means``."""
        x = np.asarray(contexts, dtype=np.float64)
        if x.ndim == 1:
            quad = (self.a_inv @ x) @ x
        else:  # batched matmul (BLAS) then a row-wise dot: far cheaper than one three-operand einsum
            quad = np.einsum("nmj,mj->mn", np.matmul(x[None], self.a_inv), x)
        return np.sqrt(np.maximum(quad, 0.0))

    def upper_bounds(self, contexts: np.ndarray, alpha: float | None = None) -> np.ndarray:
        """``mean + alpha * width`` of every arm (``alpha`` defaults to the router's)."""
        return self.means(contexts) + (self.alpha if alpha is None else alpha) * self.widths(contexts)

    def update(self, arm: int, context: np.ndarray, reward: float) -> None:
        """One observed reward for ``arm`` at ``context``."""
        x = np.asarray(context, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"context has shape {x.shape}, expected ({self.dim},)")
        if not np.isfinite(reward) or not np.all(np.isfinite(x)):
            raise ValueError("reward and context must be finite")
        self.a[arm] += np.outer(x, x)
        self.b[arm] += reward * x
        self.s[arm] += x
        self.counts[arm] += 1
        self.reward_sums[arm] += reward
        if self.counts[arm] % self.refactor_every == 0:
            self.a_inv[arm] = _inverse(self.a[arm])
        else:
            u = self.a_inv[arm] @ x
            self.a_inv[arm] -= np.outer(u, u) / (1.0 + x @ u)
        self.raw[arm] = self.a_inv[arm] @ self.b[arm]
        self.lift[arm] = self.a_inv[arm] @ self.s[arm]
        self._refresh()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (A, b and s; the inverse and the weights are rebuilt exactly on load)."""
        return {"version": STATE_VERSION, "arms": self.arms, "dim": self.dim, "a": self.a.tolist(),
                "b": self.b.tolist(), "s": self.s.tolist(), "counts": self.counts.tolist(),
                "reward_sums": self.reward_sums.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``; a state for another shape or version raises ``ValueError``."""
        if state.get("version") != STATE_VERSION or state.get("arms") != self.arms or state.get("dim") != self.dim:
            raise ValueError(f"router state is for {state.get('arms')} arms x {state.get('dim')} dims "
                             f"(version {state.get('version')}), not {self.arms} x {self.dim}")
        a, b, s = (np.asarray(state[k], dtype=np.float64) for k in ("a", "b", "s"))
        finite = bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(np.isfinite(s)))
        if a.shape != self.a.shape or b.shape != self.b.shape or s.shape != self.s.shape or not finite:
            raise ValueError("router state arrays have the wrong shape or are not finite")
        self.a, self.b, self.s = a, b, s
        self.counts = np.asarray(state["counts"], dtype=np.int64).reshape(self.arms)
        self.reward_sums = np.asarray(state["reward_sums"], dtype=np.float64).reshape(self.arms)
        self.a_inv = np.stack([_inverse(m) for m in self.a])
        self.raw = np.einsum("nij,nj->ni", self.a_inv, self.b)
        self.lift = np.einsum("nij,nj->ni", self.a_inv, self.s)
        self._refresh()


def _inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix through its Cholesky factor."""
    lower_inv = np.linalg.inv(np.linalg.cholesky(matrix))
    return lower_inv.T @ lower_inv
