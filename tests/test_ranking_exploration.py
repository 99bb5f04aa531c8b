"""Exploration policies: their orders, and propensities that match how often choices happen."""

import numpy as np
import pytest

from ranking.exploration import (
    EpsilonGreedy,
    Greedy,
    Softmax,
    Thompson,
    best_first,
    column_tops,
    policy_from_spec,
)

SCORES = np.array([0.1, 0.9, 0.5, 0.3])


def _empirical(policy, draws: int = 20_000) -> dict:
    """How often each (first, second) pair is drawn, with the propensities logged for it."""
    rng = np.random.default_rng(3)
    seen: dict = {}
    for _ in range(draws):
        order, propensity = policy.order(SCORES, 2, rng)
        key = tuple(order)
        count, logged = seen.get(key, (0, None))
        seen[key] = (count + 1, propensity)
    return {key: (count / draws, logged) for key, (count, logged) in seen.items()}


def test_greedy_is_best_first_with_certainty():
    order, propensity = Greedy().order(SCORES, 3, np.random.default_rng(0))
    assert list(order) == [1, 2, 3]
    assert list(propensity) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("policy", [EpsilonGreedy(0.3), Softmax(0.2)])
def test_logged_propensities_are_the_probabilities_of_each_choice(policy):
    for frequency, propensity in _empirical(policy).values():
        # the chance of the pair is the product of the two positions' propensities
        assert frequency == pytest.approx(propensity.prod(), abs=0.012)


@pytest.mark.parametrize("temperature", [0.01, 0.001])
def test_softmax_propensities_hold_when_one_item_dominates(temperature):
    """Each pick's chance among what remained, exactly: the total less the weights picked lost
    every digit once one weight dominated (all 1 at 0.01, nan at 0.001; a review)."""
    scores = np.array([0.9, 0.5, 0.45, 0.44])
    order, propensity = Softmax(temperature).order(scores, 4, np.random.default_rng(0))
    assert list(order) == [0, 1, 2, 3]
    # P(k-th | the first k-1 gone) = 1 / (1 + sum of exp((s_j - s_k) / t) over j after k)
    exact = [1.0, 1 / (1 + np.exp(-5 * 0.01 / temperature) + np.exp(-6 * 0.01 / temperature)),
             1 / (1 + np.exp(-1 * 0.01 / temperature)), 1.0]
    assert propensity == pytest.approx(exact, rel=1e-9)


def test_epsilon_zero_is_greedy():
    order, propensity = EpsilonGreedy(0.0).order(SCORES, 4, np.random.default_rng(1))
    assert list(order) == [1, 2, 3, 0]
    assert list(propensity) == [1.0, 1.0, 1.0, 1.0]


def test_orders_never_repeat_an_item_and_stop_at_the_candidates():
    for policy in (Greedy(), EpsilonGreedy(1.0), Softmax(1.0)):
        order, propensity = policy.order(SCORES, 10, np.random.default_rng(2))
        assert sorted(order) == [0, 1, 2, 3]
        assert ((propensity > 0) & (propensity <= 1)).all()


def test_empty_candidates():
    for policy in (Greedy(), EpsilonGreedy(0.5), Softmax(1.0)):
        order, propensity = policy.order(np.array([]), 5, np.random.default_rng(0))
        assert len(order) == len(propensity) == 0


@pytest.mark.parametrize("spec", ["epsilon:2", "softmax:0", "boltzmann:1", "greedy:1", "epsilon:x"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError, match="exploration policy"):
        policy_from_spec(spec)


def test_specs():
    assert policy_from_spec("epsilon:0.1") == EpsilonGreedy(0.1)
    assert policy_from_spec("softmax:0.05") == Softmax(0.05)
    assert policy_from_spec("greedy") == Greedy()
    assert policy_from_spec("thompson:16") == Thompson(16)


def test_thompson_orders_by_the_first_draw_and_estimates_propensities_from_the_rest():
    rng = np.random.default_rng(4)
    # 30 of the 40 other draws rank 2 > 1 > 0; 10 rank 0 > 2 > 1
    draws = np.column_stack([[0.1, 0.2, 0.9]] + [
        [0.8, 0.1, 0.7] if j % 4 == 0 else [0.1, 0.2, 0.9] for j in range(1, 41)])
    order, propensity = Thompson(40).order(draws[:, 0], 3, rng, draws)
    assert list(order) == [2, 1, 0]
    assert propensity[0] == pytest.approx((30 + 1) / 41)   # 30 of the other 40 draws
    assert propensity[1] == pytest.approx((30 + 1) / 41)   # 1 beats 0 in those 30
    assert propensity[2] == pytest.approx(1.0)             # the last one left


def test_thompson_without_draws_is_greedy():
    order, propensity = Thompson(8).order(SCORES, 2, np.random.default_rng(0))
    assert list(order) == [1, 2] and list(propensity) == [1.0, 1.0]


@pytest.mark.parametrize("rows, depth", [(1, 1), (5, 5), (50, 7), (3000, 73)])
def test_column_tops_are_each_columns_best_rows_in_order(rows, depth):
    rng = np.random.default_rng(rows)
    values = rng.integers(0, 40, (rows, 6)) / 3.0  # many equal values
    expected = np.argsort(-values, axis=0, kind="stable")[:depth]
    assert np.array_equal(column_tops(values, depth), expected)


def test_thompson_over_thousands_of_candidates_finds_each_draws_winners():
    rng = np.random.default_rng(5)
    draws = rng.normal(size=(4000, 33))
    order, propensity = Thompson(32).order(draws[:, 0], 20, rng, draws)
    assert np.array_equal(order, np.argsort(-draws[:, 0])[:20])
    others = draws[:, 1:].copy()
    for k, pick in enumerate(order):  # by brute force: each draw's best not yet placed
        winners = others.argmax(axis=0)
        assert propensity[k] == pytest.approx((np.sum(winners == pick) + 1) / 33)
        others[pick] = -np.inf


@pytest.mark.parametrize("n, length", [(300, 50), (7, 20), (1, 3)])
def test_thompson_orders_equal_draws_by_row_as_a_stable_sort_would(n, length):
    rng = np.random.default_rng(n)
    draws = rng.integers(0, 5, (n, 9)) / 2.0  # many equal draws
    order, propensity = Thompson(8).order(draws[:, 0], length, rng, draws)
    assert np.array_equal(order, np.argsort(-draws[:, 0], kind="stable")[:length])
    assert len(propensity) == min(n, length)
    # With arrival times, equal draws go by them (then by row), and the propensities are
    # those of the same draws taken in that order.
    ties = rng.integers(0, 4, n).astype(float)
    by_ties = np.argsort(ties, kind="stable")
    order, with_ties = Thompson(8).order(draws[:, 0], length, rng, draws, ties)
    assert np.array_equal(order, by_ties[np.argsort(-draws[by_ties, 0], kind="stable")][:length])
    _, expected = Thompson(8).order(draws[by_ties, 0], length, rng, draws[by_ties])
    assert np.array_equal(with_ties, expected)


def test_thompson_serves_with_what_warm_up_compiled():
    from ranking import exploration

    exploration.warm_up()
    compiled = (len(exploration._column_heaps.signatures),
                len(exploration._shares_first.signatures))
    rng = np.random.default_rng(2)
    for n in (0, 1, 2, 50):
        draws = rng.normal(size=(n, 33))
        Thompson(32).order(draws[:, 0], 12, rng, draws)
    assert (len(exploration._column_heaps.signatures),
            len(exploration._shares_first.signatures)) == compiled


@pytest.mark.parametrize("length", [0, 1, 7, 72, 500, 600])
def test_best_first_ranks_as_a_stable_sort_by_ties_then_by_score(length):
    """What serving did before: sort every candidate by arrival (stable), then by score
    (stable), and take the first ones; here only the rows that can make the cut are sorted.
    Scores repeat a lot (piecewise-constant trees), arrivals too, and unknown scores go last."""
    rng = np.random.default_rng(length)
    scores = rng.integers(0, 12, 500) / 12.0
    scores[rng.random(500) < 0.05] = np.nan
    ties = rng.integers(0, 30, 500).astype(float)
    by_ties = np.argsort(ties, kind="stable")
    expected = by_ties[np.argsort(-scores[by_ties], kind="stable")][:length]
    assert best_first(scores, length, ties).tolist() == expected.tolist()
    assert best_first(scores, length).tolist() == np.argsort(
        -scores, kind="stable")[:length].tolist()
    greedy, propensity = Greedy().order(scores, length, rng, ties=ties)
    assert greedy.tolist() == expected.tolist() and (propensity == 1).all()
    ties[rng.random(500) < 0.3] = np.nan  # unknown arrivals sort last among equal scores
    by_ties = np.argsort(ties, kind="stable")
    expected = by_ties[np.argsort(-scores[by_ties], kind="stable")][:length]
    assert best_first(scores, length, ties).tolist() == expected.tolist()
