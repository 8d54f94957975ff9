"""Replay a workload with known expected rewards through a router and a simulated adapter cache, as the proxy
would drive them: route, page in on demand (evicting the router's victim), serve, learn from a sampled reward,
and apply the controller's plan at epoch ends. What the benchmark and the tests measure routers with."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .router import LinUCBRouter


@dataclass(frozen=True)
class Workload:
    """``contexts`` (T, d) as the router sees them; ``expected`` (T, N) true mean reward of every adapter for each
    request; ``page_s`` (N,) true page-in seconds; rewards are Bernoulli(expected) unless ``noise`` is 0 (then the
    expected value itself)."""

    contexts: np.ndarray
    expected: np.ndarray
    page_s: np.ndarray
    base_ttft_s: float = 0.04
    noise: bool = True


@dataclass
class Outcome:
    reward: float = 0.0
    expected_reward: float = 0.0
    best_expected: float = 0.0
    page_ins: int = 0
    planned_page_ins: int = 0
    paging_s: float = 0.0
    ttft_s: list[float] = field(default_factory=list)
    choices: list[int] = field(default_factory=list)
    step_paging_s: list[float] = field(default_factory=list)  # paging seconds charged at each request

    @property
    def regret(self) -> float:
        """Expected reward given up against the best adapter for every request (paging aside)."""
        return self.best_expected - self.expected_reward

    def net(self, cost_weight: float) -> float:
        """Expected reward minus paging time valued at ``cost_weight`` per second."""
        return self.expected_reward - cost_weight * self.paging_s


def simulate(router: LinUCBRouter, workload: Workload, capacity: int, *, seed: int = 0,
             initial: np.ndarray | None = None) -> Outcome:
    """Run every request of ``workload`` through ``router`` with ``capacity`` resident slots."""
    rng = np.random.default_rng(seed)
    arms = workload.expected.shape[1]
    resident = np.zeros(arms, dtype=bool)
    resident[: capacity] = True if initial is None else False
    if initial is not None:
        resident = np.asarray(initial, dtype=bool).copy()
    out = Outcome()
    for x, expected in zip(workload.contexts, workload.expected, strict=True):
        arm = router.route(x, resident)
        ttft = workload.base_ttft_s
        paging_before = out.paging_s
        if not resident[arm]:
            if resident.sum() >= capacity:
                resident[router.victim(resident, arm)] = False
            resident[arm] = True
            out.page_ins += 1
            out.paging_s += float(workload.page_s[arm])
            ttft += float(workload.page_s[arm])
            router.record_page_in(arm, float(workload.page_s[arm]))
        reward = float(rng.random() < expected[arm]) if workload.noise else float(expected[arm])
        router.learn(arm, x, reward)
        out.reward += reward
        out.expected_reward += float(expected[arm])
        out.best_expected += float(expected.max())
        out.ttft_s.append(ttft)
        out.choices.append(arm)
        plan = router.plan(resident)
        if plan is not None:
            plan = np.asarray(plan, dtype=bool)
            if plan.sum() > capacity:
                raise AssertionError(f"{router.name} planned {int(plan.sum())} adapters for {capacity} slots")
            for incoming in np.flatnonzero(plan & ~resident):
                out.planned_page_ins += 1
                out.paging_s += float(workload.page_s[incoming])
                router.record_page_in(int(incoming), float(workload.page_s[incoming]))
            resident = plan.copy()
        out.step_paging_s.append(out.paging_s - paging_before)
    return out


def clustered_workload(steps: int, arms: int, dim: int, *, clusters: int | None = None, zipf: float = 1.0,
                       page_s: float = 0.5, seed: int = 0, drift_at: int | None = None) -> Workload:
    """A synthetic workload: contexts around ``clusters`` unit directions (popularity Zipf(``zipf``)), adapter ``a``
    the specialist of a random share of the clusters (reward 0.85 there, 0.25 elsewhere; which clusters is drawn,
    so that the first adapters are not the popular ones).
    ``drift_at``: from that request on, the popularity order is reversed."""
    rng = np.random.default_rng(seed)
    clusters = clusters or arms
    centres = rng.standard_normal((clusters, dim - 1))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** zipf
    weights /= weights.sum()
    picks = rng.choice(clusters, size=steps, p=weights)
    if drift_at is not None:
        later = rng.choice(clusters, size=steps, p=weights[::-1])
        picks[drift_at:] = later[drift_at:]
    points = centres[picks] + 0.25 * rng.standard_normal((steps, dim - 1)) / np.sqrt(dim - 1)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    contexts = np.concatenate([points, np.ones((steps, 1))], axis=1)
    expected = np.full((steps, arms), 0.25)
    specialist = rng.permutation(np.arange(clusters) % arms)
    expected[np.arange(steps), specialist[picks]] = 0.85
    return Workload(contexts, expected, np.full(arms, page_s))
