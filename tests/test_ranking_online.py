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


@pytest.mark.parametrize("variance", [0.5, 6.0, 60.0])
@pytest.mark.parametrize("global_logit, label", [(-6.0, 1), (-3.5, 1), (0.0, 1), (4.0, 0),
                                                 (8.0, 0), (-8.0, 0)])
def test_one_answer_moves_the_row_to_its_exact_posterior_mode(variance, global_logit, label):
    """The row's logit moves to the mode of N(0, v) times the answer's likelihood: where
    s / v = label - p(global + s). Plain Newton steps stopped far short of it for an uncertain
    row under a confident global model (a rare accept)."""
    state = online.initial_state(np.full(online.N_TERMS, variance))
    row = offer("cafe")
    z = online.driver_terms(row)[0]
    v = z @ state.covariance.astype(float) @ z
    after = online.update(state, row, np.array([label]), np.array([global_logit]))
    s = float(online.predict_logit(np.zeros(1), after, row)[0])
    p = 1 / (1 + np.exp(-(global_logit + s)))
    assert s / v == pytest.approx(label - p, abs=1e-5)


def test_an_update_that_would_not_be_finite_leaves_the_state_as_it_was(fresh):
    after = online.update(fresh, offer("cafe"), np.array([1]), np.array([np.nan]))
    assert after is fresh  # kept, it would break every later prediction and draw


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
    np.testing.assert_allclose(once.covariance, stepwise.covariance, atol=1e-6)
    assert fresh.n_feedback == 0 and not fresh.mean.any()
    np.testing.assert_array_equal(fresh.covariance, np.eye(online.N_TERMS) * 0.5)
    assert once.n_feedback == 2


def test_a_weak_negative_counts_less_than_a_dismissal(fresh):
    ignored = online.update(fresh, offer("cafe"), [0], [0.0], [0.25])
    dismissed = online.update(fresh, offer("cafe"), [0], [0.0])
    logit = {name: online.predict_logit(np.zeros(1), s, offer("cafe"))[0]
             for name, s in (("ignored", ignored), ("dismissed", dismissed))}
    assert logit["dismissed"] < logit["ignored"] < 0


def test_state_round_trips_through_about_a_kilobyte(fresh):
    state = online.update(fresh, np.vstack([offer("fuel"), offer("cafe")]), [1, 0], [0.5, 0.0])
    data = state.to_bytes()
    n = online.N_TERMS
    assert len(data) == online.N_STATE_BYTES == 4 + 4 * (n + n * (n + 1) // 2) <= 1100
    again = online.DriverState.from_bytes(data)
    np.testing.assert_array_equal(again.mean, state.mean)
    np.testing.assert_array_equal(again.covariance, state.covariance)
    np.testing.assert_array_equal(again.covariance, again.covariance.T)
    assert again.n_feedback == 2


def correlated_prior(rho: float) -> np.ndarray:
    """Variance 0.5 everywhere; cafe and restaurant offsets correlated by rho."""
    prior = np.eye(online.N_TERMS) * 0.5
    cafe, restaurant = (online.DRIVER_TERMS.index(f"category={c}")
                        for c in ("cafe", "restaurant"))
    prior[cafe, restaurant] = prior[restaurant, cafe] = 0.5 * rho
    return prior


def test_the_prior_covariance_carries_feedback_to_correlated_terms():
    independent = online.initial_state(correlated_prior(0.0))
    correlated = online.initial_state(correlated_prior(0.8))
    gains = {}
    for name, start in (("independent", independent), ("correlated", correlated)):
        state = online.update(start, offer("cafe"), [1], [0.0])
        gains[name] = online.predict_logit(np.zeros(1), state, offer("restaurant"))[0]
    # The bias carries some of a taken cafe offer to every category; the covariance more.
    assert 0 < gains["independent"] < gains["correlated"]


def test_an_accepted_cafe_offer_raises_other_cafe_contexts(fresh):
    morning_alone, evening_with_friends = offer("cafe"), offer("cafe")
    morning_alone[0, [COLUMN["passengers=alone"], COLUMN["trip_purpose=work"]]] = 1
    evening_with_friends[0, COLUMN["passengers=friends"]] = 1
    evening_with_friends[0, COLUMN["trip_purpose=leisure"]] = 1
    state = online.update(fresh, morning_alone, [1], [0.0])
    before = online.predict_logit(np.zeros(1), fresh, evening_with_friends)[0]
    assert online.predict_logit(np.zeros(1), state, evening_with_friends)[0] > before


def test_feedback_narrows_the_covariance_along_what_was_seen(fresh):
    state = online.update(fresh, offer("bar"), [0], [0.0])
    z = online.driver_terms(offer("bar"))[0]
    before = z @ fresh.covariance.astype(float) @ z
    after = z @ state.covariance.astype(float) @ z
    assert 0 < after < before
    assert np.all(np.linalg.eigvalsh(state.covariance.astype(float)) > 0)
    # an offer that shares no term with a bar offer keeps its uncertainty
    fuel_only = online.driver_terms(offer("fuel"))[0] - online.driver_terms(offer("bar"))[0]
    fuel_only[online.DRIVER_TERMS.index("category=bar")] = 0
    assert fuel_only @ state.covariance.astype(float) @ fuel_only == pytest.approx(
        fuel_only @ fresh.covariance.astype(float) @ fuel_only)


def test_a_prior_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError):
        online.initial_state(np.eye(online.N_TERMS - 1))


def test_a_state_of_another_layout_is_refused(fresh):
    with pytest.raises(ValueError):
        online.DriverState.from_bytes(fresh.to_bytes()[:-4])


def test_the_fitted_prior_learns_how_terms_vary_together():
    """Drivers whose cafe and restaurant tastes go together: the EM prior finds it, and leaves
    the terms no row uses at variance 1 with no covariance."""
    from ranking.training import fit_prior_covariance

    rng = np.random.default_rng(0)
    cafe, restaurant = (online.DRIVER_TERMS.index(f"category={c}")
                        for c in ("cafe", "restaurant"))
    rows, groups, labels = [], [], []
    for driver in range(300):
        taste = rng.normal(0, 1.5)             # shared by both categories
        for k in range(24):
            category = ("cafe", "restaurant", "bar")[k % 3]
            rows.append(offer(category)[0])
            effect = taste if category != "bar" else 0.0
            labels.append(rng.random() < 1 / (1 + np.exp(-effect)))
            groups.append(driver)
    terms = online.driver_terms(np.array(rows))
    prior = fit_prior_covariance(terms, np.zeros(len(rows)), np.array(labels, float),
                                 np.array(groups))
    correlation = prior[cafe, restaurant] / np.sqrt(prior[cafe, cafe] * prior[restaurant,
                                                                             restaurant])
    assert correlation > 0.2
    fuel = online.DRIVER_TERMS.index("category=fuel")
    assert prior[fuel, fuel] == 1 and not np.delete(prior[fuel], fuel).any()
    np.testing.assert_allclose(prior, prior.T)


def test_the_terms_of_some_rows_are_those_rows_of_every_rows_terms():
    rng = np.random.default_rng(3)
    features = np.asfortranarray(rng.normal(size=(500, len(FEATURE_NAMES))))
    features[rng.random(features.shape) < 0.1] = np.nan
    rows = rng.permutation(500)[:180]
    np.testing.assert_array_equal(online.driver_terms(features, rows),
                                  online.driver_terms(features)[rows])
