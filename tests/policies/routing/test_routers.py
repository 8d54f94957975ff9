"""Every registered router on a simulated adapter cache: it learns (beats random by far), respects capacity,
resumes exactly from its saved state, and the cache-aware ones trade rewards against paging as designed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cachesvc.policies.routing.registry import ROUTERS, make_router
from cachesvc.policies.routing.router import RouterSettings
from cachesvc.policies.routing.simulation import clustered_workload, simulate

ARMS, DIM, CAPACITY, STEPS = 8, 9, 2, 1500


def settings(**overrides: float) -> RouterSettings:
    return RouterSettings(**{"arms": ARMS, "dim": DIM, "capacity": CAPACITY, "epoch": 32, **overrides})


@pytest.fixture(scope="module")
def workload():
    return clustered_workload(STEPS, ARMS, DIM, zipf=1.0, page_s=0.5, seed=5)


@pytest.fixture(scope="module")
def outcomes(workload):
    return {name: simulate(make_router(name, settings(cost_weight=1.0)), workload, CAPACITY, seed=1)
            for name in ROUTERS}


def test_learning_routers_beat_random(outcomes) -> None:
    floor = outcomes["random"].expected_reward
    for name, outcome in outcomes.items():
        if name not in ("random", "greedy-resident"):  # greedy-resident is stuck with its first set by design
            assert outcome.expected_reward > 1.4 * floor, name


def test_cache_aware_routers_page_less_than_lru_and_come_out_ahead(outcomes) -> None:
    lru = outcomes["linucb-lru"]
    for name in ("polar", "polar+"):
        outcome = outcomes[name]
        assert outcome.page_ins + outcome.planned_page_ins < 0.9 * lru.page_ins, name
        assert outcome.net(1.0) > lru.net(1.0), name


def test_paging_cost_is_charged_only_when_weighted(workload) -> None:
    cheap = simulate(make_router("polar", settings(cost_weight=0.0)), workload, CAPACITY, seed=1)
    dear = simulate(make_router("polar", settings(cost_weight=5.0)), workload, CAPACITY, seed=1)
    assert dear.page_ins < cheap.page_ins / 2


def test_resident_only_routers_never_page_while_serving(outcomes) -> None:
    assert outcomes["greedy-resident"].page_ins == 0
    assert outcomes["static-top-k"].page_ins <= 32  # only during its warm-up epoch


def test_polar_plus_explores_every_adapter_and_not_with_one_slot(workload) -> None:
    router = make_router("polar+", settings(cost_weight=5.0))
    simulate(router, workload, CAPACITY, seed=1)
    assert (router.model.counts > 0).all()
    single = make_router("polar+", settings(capacity=1, cost_weight=5.0))
    assert single.under_sampled() == ()


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_state_resumes_exactly(name: str, workload) -> None:
    first = make_router(name, settings(seed=3))
    resident = np.zeros(ARMS, dtype=bool)
    resident[:CAPACITY] = True
    for x, expected in zip(workload.contexts[:300], workload.expected[:300], strict=True):
        arm = first.route(x, resident)
        first.learn(arm, x, float(expected[arm]))
        first.record_page_in(arm, 0.3)
        plan = first.plan(resident)
        if plan is not None:
            resident = plan
    second = make_router(name, settings(seed=3))
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    second.rng = np.random.default_rng(7)
    first.rng = np.random.default_rng(7)
    for x in workload.contexts[300:400]:
        assert first.route(x, resident) == second.route(x, resident)
        assert (first.plan(resident) is None) == (second.plan(resident) is None)


def test_routers_are_deterministic_under_a_seed(workload) -> None:
    runs = [simulate(make_router("polar+", settings(seed=9)), workload, CAPACITY, seed=2).choices for _ in range(2)]
    assert runs[0] == runs[1]


def test_bad_names_settings_rewards_and_states_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown router 'lru'; known: greedy-resident"):
        make_router("lru", settings())
    with pytest.raises(ValueError, match="at least one"):
        RouterSettings(arms=0, dim=3, capacity=1)
    with pytest.raises(ValueError, match="max_epoch"):
        RouterSettings(arms=2, dim=3, capacity=1, epoch=64, max_epoch=8)
    router = make_router("polar", settings())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        router.learn(0, np.ones(DIM), 1.5)
    with pytest.raises(ValueError, match="out of range"):
        router.learn(ARMS, np.ones(DIM), 0.5)
    with pytest.raises(ValueError, match="'polar'"):
        make_router("polar+", settings()).load_state_dict(router.state_dict())


def test_an_unmeasured_adapter_costs_what_measured_ones_do() -> None:
    from cachesvc.policies.routing.paging_cost import PagingCost

    cost = PagingCost(3, prior_s=1.0, weight=2.0)
    assert list(cost.seconds) == [1.0, 1.0, 1.0]  # the prior, until anything is measured
    cost.record(0, 0.1)
    cost.record(1, 0.3)
    assert cost.seconds[2] == pytest.approx(0.2)  # the measured ones' mean
    assert list(cost.penalties(np.array([True, False, False]))) == pytest.approx([0.0, 0.6, 0.4])
    cost.record(2, 0.5)
    cost.record(0, float("nan"))  # not a measurement
    assert cost.seconds[2] == 0.5 and cost.measured.tolist() == [1, 1, 1]
