"""The per-driver online component: what POST /v1/feedback and `evaluate` both call."""

from __future__ import annotations

import numpy as np
import pytest

from offers.geo_index import CATEGORIES
from ranking import online
from ranking.features import FEATURE_NAMES

COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}


def offer(category: str) -> np.ndarray:
    row = np.full(len(FEATURE_NAMES), np.nan)
    for c in CATEGORIES:
        row[COLUMN[f"category={c}"]] = float(c == category)
    return row[None, :]


@pytest.fixture
def fresh() -> online.DriverState:
    return online.initial_state(np.full(online.N_TERMS, 0.5))


def test_a_new_driver_gets_the_global_model(fresh):
    assert online.predict(np.array([0.3]), fresh, offer("bar"))[0] == pytest.approx(
        1 / (1 + np.exp(-0.3)))


def test_taking_an_offer_raises_and_dismissing_lowers_the_next_prediction(fresh):
    before = online.predict(np.zeros(1), fresh, offer("cafe"))[0]
    taken = online.update(fresh, offer("cafe"), np.array([1]), np.zeros(1))
    dismissed = online.update(fresh, offer("cafe"), np.array([0]), np.zeros(1))
    assert online.predict(np.zeros(1), taken, offer("cafe"))[0] > before
    assert online.predict(np.zeros(1), dismissed, offer("cafe"))[0] < before


def test_feedback_moves_its_own_category_most(fresh):
    state = online.update(fresh, offer("bar"), np.array([0]), np.zeros(1))
    bar = online.predict_logit(np.zeros(1), state, offer("bar"))[0]
    cafe = online.predict_logit(np.zeros(1), state, offer("cafe"))[0]
    assert bar < cafe < 0     # the bias carries some of it to every category


def test_update_is_pure_and_orderly(fresh):
    rows = np.vstack([offer("bar"), offer("cafe")])
    once = online.update(fresh, rows, np.array([0, 1]), np.zeros(2))
    stepwise = online.update(online.update(fresh, rows[:1], [0], [0.0]), rows[1:], [1], [0.0])
    np.testing.assert_allclose(once.mean, stepwise.mean, atol=1e-6)  # float32 between calls
    assert fresh.n_feedback == 0 and not fresh.mean.any()
    assert once.n_feedback == 2


def test_a_weak_negative_counts_less_than_a_dismissal(fresh):
    ignored = online.update(fresh, offer("cafe"), [0], [0.0], [0.25])
    dismissed = online.update(fresh, offer("cafe"), [0], [0.0])
    logit = {name: online.predict_logit(np.zeros(1), s, offer("cafe"))[0]
             for name, s in (("ignored", ignored), ("dismissed", dismissed))}
    assert logit["dismissed"] < logit["ignored"] < 0


def test_state_round_trips_through_a_few_hundred_bytes(fresh):
    state = online.update(fresh, offer("fuel"), [1], [0.5])
    data = state.to_bytes()
    assert len(data) == 4 + 8 * online.N_TERMS <= 300
    again = online.DriverState.from_bytes(data)
    np.testing.assert_array_equal(again.mean, state.mean)
    np.testing.assert_array_equal(again.precision, state.precision)
    assert again.n_feedback == 1


def test_a_state_of_another_layout_is_refused(fresh):
    with pytest.raises(ValueError):
        online.DriverState.from_bytes(fresh.to_bytes()[:-4])
