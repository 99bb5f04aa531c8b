"""The linear stand-in that lets the trees rescore only a request's best candidates."""

from __future__ import annotations

import numpy as np
import pytest

from ranking import exploration, learned
from ranking.training import RankingModel, fit_shortlist


def test_a_linear_logit_is_recovered_exactly_and_unknowns_take_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    logits = 0.5 + x @ np.array([1.0, -2.0, 0.0])
    shortlist = fit_shortlist(x, logits, ridge=0.0)
    assert np.allclose(shortlist.logits(x), logits)
    unknown = x[:1].copy()
    unknown[0, 1] = np.nan
    assert np.isclose(shortlist.logits(unknown)[0],
                      0.5 + unknown[0, 0] - 2.0 * x[:, 1].mean())


def test_the_stand_in_travels_with_the_model_directory(model_dir, tmp_path):
    model = RankingModel.load(model_dir)
    assert model.shortlist is not None
    model.save(tmp_path)
    again = RankingModel.load(tmp_path)
    assert np.array_equal(again.shortlist.coef, model.shortlist.coef)


def test_only_the_shortlisted_are_rescored_by_the_trees(model_dir, monkeypatch):
    model = RankingModel.load(model_dir)
    rng = np.random.default_rng(1)
    features = rng.uniform(0, 3, (50, len(model.shortlist.coef)))
    monkeypatch.setattr(learned, "SHORTLIST", 10)
    monkeypatch.setattr(learned, "features_of", lambda candidates, situation: features)
    ranker = learned.LearnedRanker(model, "v1")

    class Situation:
        state = None

    class Candidates:  # only its length and arrival times matter here
        eta_s = np.zeros(50)

        def __len__(self) -> int:
            return 50

    candidates = Candidates()
    scores = ranker.score(candidates, Situation())
    stand_in = model.shortlist.logits(features)  # a new driver's own terms add nothing
    best = np.argsort(-stand_in)[:10]
    trees = 1 / (1 + np.exp(-model.global_logits(features[best])))
    assert np.allclose(scores[best], trees)
    rest = np.setdiff1d(np.arange(50), best)
    capped = np.minimum(stand_in[rest], model.global_logits(features[best]).min())
    assert np.allclose(scores[rest], 1 / (1 + np.exp(-capped)))
    assert scores[rest].max() <= scores[best].min()


def test_the_stand_in_does_not_extrapolate_beyond_its_training_range():
    x = np.linspace(0, 1, 100)[:, None]
    shortlist = fit_shortlist(x, 3 * x[:, 0], ridge=0.0)
    assert np.isclose(shortlist.logits(np.array([[7.0]]))[0], 3.0)


def test_the_stand_in_adds_a_drivers_terms_in_the_same_pass(model_dir):
    from ranking import online
    from ranking.features import N_FEATURES

    model = RankingModel.load(model_dir)
    rng = np.random.default_rng(4)
    rows = rng.uniform(0, 3, (40, N_FEATURES))
    rows[rng.random(rows.shape) < 0.2] = np.nan  # unknowns add nothing to the driver's part
    state = online.DriverState(rng.normal(size=online.N_TERMS).astype(np.float32),
                               np.eye(online.N_TERMS, dtype=np.float32))
    expected = online.predict_logit(model.shortlist.logits(rows), state, rows)
    for layout in (rows, np.asfortranarray(rows)):  # serving's matrices are column-major
        fused = model.shortlist.logits(layout, online.linear_terms(state))
        assert np.allclose(fused, expected, rtol=0, atol=1e-12)
        assert not np.allclose(fused, model.shortlist.logits(layout))  # the terms count
    for narrow_or_wide in (rows[:, :3], np.hstack([rows, rows])):  # not the model's columns
        with pytest.raises(ValueError):
            model.shortlist.logits(narrow_or_wide, online.linear_terms(state))
        with pytest.raises(ValueError):
            model.shortlist.logits(narrow_or_wide)


def test_ties_at_the_shortlists_edge_go_to_the_earliest_arrival_whatever_the_order():
    rng = np.random.default_rng(2)
    logits = rng.integers(0, 6, 400).astype(float)  # many equal stand-in logits
    eta = rng.permutation(400).astype(float)
    best = exploration.top_rows(logits, 50, eta)
    assert len(best) == len(set(best.tolist())) == 50
    expected = np.lexsort((eta, -logits))[:50]  # by logit, then arrival
    assert sorted(best.tolist()) == sorted(expected.tolist())
    shuffled = rng.permutation(400)
    again = shuffled[exploration.top_rows(logits[shuffled], 50, eta[shuffled])]
    assert sorted(again.tolist()) == sorted(best.tolist())


def test_unknown_logits_come_last_and_a_short_list_is_kept_whole():
    logits = np.array([1.0, np.nan, 3.0, 2.0, np.nan])
    assert sorted(exploration.top_rows(logits, 3, np.zeros(5)).tolist()) == [0, 2, 3]
    assert len(exploration.top_rows(np.full(4, np.nan), 2, np.arange(4.0))) == 2
    assert exploration.top_rows(logits, 9, np.zeros(5)).tolist() == [0, 1, 2, 3, 4]


def test_among_equal_logits_unknown_arrivals_come_last_and_in_row_order():
    arrivals = np.array([np.nan] * 8 + [2.0, 1.0])
    assert exploration.top_rows(np.zeros(10), 5, arrivals).tolist() == [9, 8, 0, 1, 2]
    assert exploration.top_rows(np.zeros(10), 1, arrivals).tolist() == [9]
