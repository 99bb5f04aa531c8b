"""The global acceptance model follows the scikit-learn estimator API."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from ranking import model as model_module
from ranking.model import AcceptanceModel


@parametrize_with_checks([AcceptanceModel(max_iter=10)])
def test_the_global_model_is_a_scikit_learn_estimator(estimator, check):
    check(estimator)


def test_columns_unknown_throughout_training_are_ignored():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=200), np.full(200, np.nan)])
    y = (X[:, 0] > 0).astype(int)
    model = AcceptanceModel(max_iter=20, min_samples_leaf=5).fit(X, y)
    assert model.columns_.tolist() == [0]
    assert model.predict_proba(X).shape == (200, 2)
    assert model.score(X, y) > 0.9


def test_answers_of_one_kind_only_are_refused_not_fitted_to_a_constant():
    """All taken (or none): boosting would fit a constant whose logit ranks every offer as
    never taken; `offers ranking train` passes the error on as one line."""
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="both classes.*all 50 rows are 1"):
        AcceptanceModel(max_iter=5).fit(X, np.ones(50, int))


def test_the_global_model_tunes_in_grid_search():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(int)
    search = GridSearchCV(AcceptanceModel(max_iter=10, min_samples_leaf=5),
                          {"learning_rate": [0.1, 0.3]}, cv=3, scoring="roc_auc").fit(X, y)
    assert search.best_params_["learning_rate"] in (0.1, 0.3)


def test_the_compiled_trees_give_scikit_learns_logits_to_the_last_bit():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 4))
    X[rng.random(X.shape) < 0.2] = np.nan  # unknowns follow each split's missing side
    y = ((np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.isnan(X[:, 2])
          + 0.5 * rng.normal(size=600)) > 0).astype(int)
    model = AcceptanceModel(max_iter=60, min_samples_leaf=5).fit(X, y)
    assert model.forest_ is not None
    compiled = model.decision_function(X)
    assert np.array_equal(compiled, model.booster_.decision_function(X))
    assert np.array_equal(model.serving_logits(X), compiled)  # serving skips the validation
    assert len(np.unique(compiled)) > 50  # many leaves reached, not a constant


def test_rows_on_the_same_side_of_every_split_share_a_walk_and_keep_their_logits():
    # Trained on features at a few levels, the trees split between levels; rows jittered
    # within their levels all differ, yet fall on the same side of every split in groups,
    # each group walked once.
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 3, size=(800, 3)).astype(float)
    levels[rng.random(levels.shape) < 0.1] = np.nan
    y = ((np.nan_to_num(levels[:, 0]) - np.nan_to_num(levels[:, 1])
          + rng.normal(size=800)) > 0).astype(int)
    model = AcceptanceModel(max_iter=40, min_samples_leaf=5).fit(levels, y)
    X = levels + rng.uniform(-0.01, 0.01, size=levels.shape)
    for rows in (X, X[rng.permutation(len(X))], X[:1]):
        assert np.array_equal(model.serving_logits(rows),
                              model.booster_.decision_function(rows))
    assert model.serving_logits(X[:0]).shape == (0,)
    assert len(np.unique(X, axis=0)) == len(X)
    assert 10 < len(np.unique(model.serving_logits(X))) <= 4 ** 3


def test_a_model_fitted_again_scores_with_its_new_trees():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3))
    model = AcceptanceModel(max_iter=20, min_samples_leaf=5)
    first = model.fit(X, (X[:, 0] > 0).astype(int)).serving_logits(X)
    second = model.fit(X, (X[:, 1] > 0).astype(int)).serving_logits(X)
    assert not np.array_equal(first, second)
    assert np.array_equal(second, model.booster_.decision_function(X))
    assert "_walk_arrays" in model.__dict__ and "_walk_arrays" not in model.__getstate__()


def test_many_rows_are_walked_one_by_one_with_the_same_logits():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(model_module._GROUPED_ROWS_MAX + 10, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    model = AcceptanceModel(max_iter=20, min_samples_leaf=5).fit(X, (rng.random(len(X)) < 0.5))
    assert np.array_equal(model.serving_logits(X), model.booster_.decision_function(X))


def test_training_takes_data_whose_positives_are_all_in_one_fold_of_drivers():
    """Early logs with rare acceptances: the drivers outside one inner fold answered all one
    way, so no baseline fitted without a driver's own rows can tell theirs apart. The global
    model still trains on every row; how drivers differ is not fitted (the identity prior,
    as for too few drivers), and the model says why."""
    from ranking import online
    from ranking.training import train

    from .conftest import synthetic_survey
    data = synthetic_survey(drivers=12, rows=30)
    data.y[:] = 0
    data.y[:30][::3] = 1   # only the first driver ever took an offer
    model = train(data, AcceptanceModel(max_iter=5), inner_folds=3)
    assert model.info["rows"] == 360 and model.info["positive_rate"] == 10 / 360
    assert np.array_equal(model.prior_covariance, np.eye(online.N_TERMS))
    assert model.info["prior"].startswith("identity")
