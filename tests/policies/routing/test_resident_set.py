"""The controller's resident-set choice: coverage, switching cost, forced members, swaps, the hindsight oracle."""

from __future__ import annotations

import itertools

import numpy as np

from cachesvc.policies.routing.hindsight_oracle import best_fixed_set
from cachesvc.policies.routing.resident_set import choose_resident, objective

NONE = np.zeros(4, dtype=bool)


def test_greedy_covers_the_contexts() -> None:
    # contexts 0-2 want adapter 0, 3-4 adapter 2, 5 adapter 3; capacity 2 -> {0, 2}
    values = np.full((6, 4), 0.1)
    values[:3, 0] = values[3:5, 2] = values[5, 3] = 0.9
    mask = choose_resident(values, 2, NONE, np.zeros(4))
    assert set(np.flatnonzero(mask)) == {0, 2}


def test_switching_cost_keeps_a_good_enough_set() -> None:
    values = np.array([[0.8, 0.85, 0.1, 0.1]] * 10)
    current = np.array([True, False, False, False])
    stay = choose_resident(values, 1, current, np.full(4, 1.0))  # a gain of 0.5 does not pay a cost of 1
    move = choose_resident(values, 1, current, np.full(4, 0.1))
    assert list(np.flatnonzero(stay)) == [0] and list(np.flatnonzero(move)) == [1]


def test_forced_members_stay_and_capacity_holds() -> None:
    values = np.random.default_rng(0).random((20, 6))
    mask = choose_resident(values, 3, np.zeros(6, dtype=bool), np.zeros(6), forced=[5])
    assert mask[5] and mask.sum() == 3


def test_free_slots_keep_current_adapters() -> None:
    values = np.zeros((5, 4))
    values[:, 1] = 0.9
    current = np.array([True, False, True, False])
    mask = choose_resident(values, 3, current, np.full(4, 0.1))
    assert set(np.flatnonzero(mask)) == {0, 1, 2}


def test_swaps_fix_what_greedy_gets_wrong() -> None:
    # greedy takes the all-rounder 0 first, then cannot cover both halves as well as {1, 2} do
    values = np.array([[0.6, 1.0, 0.0], [0.6, 1.0, 0.0], [0.6, 0.0, 1.0], [0.6, 0.0, 1.0]])
    none = np.zeros(3, dtype=bool)
    greedy = choose_resident(values, 2, none, np.zeros(3))
    better = choose_resident(values, 2, none, np.zeros(3), local_search=True)
    assert set(np.flatnonzero(better)) == {1, 2}
    assert objective(values, np.flatnonzero(better), none, np.zeros(3), 1.0) > objective(
        values, np.flatnonzero(greedy), none, np.zeros(3), 1.0)


def test_hindsight_oracle_is_the_brute_force_best() -> None:
    expected = np.random.default_rng(3).random((50, 7))
    mask, total = best_fixed_set(expected, 3)
    brute = max(expected[:, list(s)].max(axis=1).sum() for s in itertools.combinations(range(7), 3))
    assert total == brute and mask.sum() == 3


def test_placement_keeps_adapters_where_they_are_and_fills_spare_slots() -> None:
    from cachesvc.policies.routing.placement import place

    current = [{0, 1}, {2, 5}]
    target = place([1, 2, 3], current, 2, demand=np.array([0, 5, 9, 1, 0, 0]))
    assert 1 in target[0] and 2 in target[1]  # stayed home: no page-in for them
    assert 3 in target[0] or 3 in target[1]  # the new one went where there was room
    assert all(len(t) <= 2 for t in target)
    assert 5 not in target[1] and 0 not in target[0]  # not chosen: their slots were given away
    assert sum(len(t) for t in target) == 4  # the spare slot holds a second copy of the busiest adapter
    assert 2 in target[0] or 1 in target[1]


def test_placement_never_exceeds_the_slots() -> None:
    from cachesvc.policies.routing.placement import place

    target = place(list(range(10)), [set(), set()], 3)
    assert [len(t) for t in target] == [3, 3] and len(target[0] | target[1]) == 6
