"""The multiple-choice knapsack is optimal: checked against brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from deploypipe.hw import knapsack


def brute_force(costs, values, capacity):
    best = None
    for picks in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(c[k] for c, k in zip(costs, picks))
        value = sum(v[k] for v, k in zip(values, picks))
        if cost <= capacity + 1e-9 and (best is None or value > best[0] + 1e-12):
            best = (value, picks)
    return best


HAND_MADE = [
    # (costs, values, capacity, optimal value): greedy by value/cost fails on the first
    ([[0, 6], [0, 5], [0, 5]], [[0, 10], [0, 8], [0, 8]], 10, 16),
    # one group must pick a middle option for the others to fit
    ([[1, 4, 9], [1, 3, 8], [2, 5]], [[1, 5, 9], [1, 4, 8], [1, 6]], 14, 15),
    # a non-monotonic table: the wider option is cheaper and more valuable
    ([[3, 2], [1, 2, 3]], [[1, 2], [1, 2, 3]], 4, 4),
    # capacity exactly the cheapest picks
    ([[2, 5], [3, 7]], [[1, 9], [1, 9]], 5, 2),
]


@pytest.mark.parametrize("costs,values,capacity,optimum", HAND_MADE)
def test_hand_made_cases_are_solved_optimally(costs, values, capacity, optimum):
    choice = knapsack.solve(costs, values, capacity)
    assert choice is not None
    assert choice.value == pytest.approx(optimum)
    assert choice.value == pytest.approx(brute_force(costs, values, capacity)[0])
    assert choice.cost <= capacity + 1e-9
    assert choice.cost == pytest.approx(sum(c[k] for c, k in zip(costs, choice.picks)))


def test_infeasible_when_the_cheapest_picks_exceed_the_capacity():
    assert knapsack.solve([[2, 5], [3, 7]], [[1, 2], [1, 2]], 4.9) is None


@pytest.mark.parametrize("seed", range(25))
def test_random_integer_costs_match_brute_force_exactly(seed):
    """Costs on the DP's grid (resolution = slack capacity): the DP is exact."""
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(2, 5))
    costs = [np.sort(rng.integers(0, 12, size=int(rng.integers(1, 5)))) for _ in range(groups)]
    values = [np.sort(rng.random(len(c))) * 10 for c in costs]
    base = sum(int(c.min()) for c in costs)
    capacity = base + int(rng.integers(0, 20))
    choice = knapsack.solve(costs, values, capacity, resolution=max(capacity - base, 1))
    expected = brute_force(costs, values, capacity)
    assert choice.value == pytest.approx(expected[0])
    assert choice.cost <= capacity


@pytest.mark.parametrize("seed", range(15))
def test_real_costs_are_feasible_and_within_the_rounding_bound(seed):
    """Off-grid costs: the answer never exceeds the capacity, and it is at least as good
    as the true optimum under a capacity smaller by one unit per group."""
    rng = np.random.default_rng(100 + seed)
    groups = 4
    costs = [np.sort(rng.random(4)) * 3 for _ in range(groups)]
    values = [np.sort(rng.random(4)) for _ in range(groups)]
    base = sum(float(c.min()) for c in costs)
    capacity = base + float(rng.random() * 4)
    resolution = 50
    choice = knapsack.solve(costs, values, capacity, resolution=resolution)
    assert choice.cost <= capacity + 1e-9
    unit = (capacity - base) / resolution
    lower = brute_force(costs, values, capacity - groups * unit)
    assert lower is None or choice.value >= lower[0] - 1e-12
    assert choice.value <= brute_force(costs, values, capacity)[0] + 1e-12
