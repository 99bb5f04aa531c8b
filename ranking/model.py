"""The global acceptance model: P(a driver takes an offer | features), the same for everyone.

A scikit-learn estimator (parameters in `__init__`, fitted attributes ending in `_`), so
analysts can put it in a Pipeline or a GridSearchCV. It wraps histogram gradient boosting,
which takes the feature matrix's nan (unknown) as is; columns that are nan throughout the
training data (fuel level in the coupon survey, say) are left out, since they carry nothing.
Per-driver learning lives in `ranking.online`, on top of this model's logit.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits


class AcceptanceModel(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees over `ranking.features.FEATURE_NAMES` (nan: unknown).

    `n_threads` bounds OpenMP: the data are small, and on a shared machine more threads than
    free cores make boosting tens of times slower, not faster.

    The defaults were chosen by grouped cross-validation on the coupon survey
    (docs/ranking.md): shallow, slow trees with large leaves, since the context alone
    explains little and deeper trees only learn the training drivers."""

    def __init__(self, learning_rate: float = 0.03, max_iter: int = 400, max_depth: int = 4,
                 min_samples_leaf: int = 50, l2_regularization: float = 1.0,
                 n_threads: int = 1, random_state: int | None = 0):
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_threads = n_threads
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X, y) -> AcceptanceModel:
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan")
        informative = ~np.isnan(X).all(axis=0)
        self.columns_ = np.flatnonzero(informative)
        booster = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate, max_iter=self.max_iter, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            early_stopping=False, random_state=self.random_state)
        with threadpool_limits(self.n_threads, user_api="openmp"):
            self.booster_ = booster.fit(X[:, self.columns_] if informative.any()
                                        else np.zeros((len(X), 1)), y)
        self.classes_ = self.booster_.classes_
        self.n_iter_ = self.booster_.n_iter_
        return self

    def _columns(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        return X[:, self.columns_] if len(self.columns_) else np.zeros((len(X), 1))

    def decision_function(self, X) -> np.ndarray:
        """The logit of acceptance (binary) or per-class scores (more classes)."""
        columns = self._columns(X)
        _limit_openmp(self.n_threads)
        return self.booster_.decision_function(columns)

    def predict_proba(self, X) -> np.ndarray:
        columns = self._columns(X)
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return self.booster_.predict_proba(columns)

    def predict(self, X) -> np.ndarray:
        columns = self._columns(X)
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return self.booster_.predict(columns)


_openmp_limited: list[int] = []


def _limit_openmp(threads: int) -> None:
    """Limit OpenMP for the whole process, once: scoring runs on every request, where entering
    `threadpool_limits` each time costs milliseconds, and idle threads spinning up on a busy
    machine cost far more than the few rows scored."""
    if threads not in _openmp_limited:
        threadpool_limits(threads, user_api="openmp")
        _openmp_limited[:] = [threads]
