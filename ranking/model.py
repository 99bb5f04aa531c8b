"""The global acceptance model: P(a driver takes an offer | features), the same for everyone.

A scikit-learn estimator (parameters in `__init__`, fitted attributes ending in `_`), so
analysts can put it in a Pipeline or a GridSearchCV. It wraps histogram gradient boosting,
which takes the feature matrix's nan (unknown) as is; columns that are nan throughout the
training data (fuel level in the coupon survey, say) are left out, since they carry nothing.
Per-driver learning lives in `ranking.online`, on top of this model's logit.

Serving scores a few hundred rows per request, where scikit-learn's prediction costs a fixed
~10 microseconds per tree (400 trees: 4 ms). `fit` therefore also keeps the trees as flat
arrays (`forest_`) that one compiled loop walks, with scikit-learn's own rules (nan follows
the split's missing-value side, else `x <= threshold` goes left) and its order of summation,
so the logits are the same to the last bit (a test checks). Rows that fall on the same side of
every split the trees make are walked once: the trees split each feature at a few points, so
the 200 rows serving rescores collapse to a handful.
"""

from __future__ import annotations

import numpy as np
from numba import njit
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
        if len(np.unique(y)) < 2:
            # Boosting fits a constant then, and its logit (about -34 whatever the class) would
            # rank every offer as never taken.
            raise ValueError(f"needs rows of both classes (taken and not taken), not one "
                             f"class: all {len(y)} rows are {y[0]}")
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
        self.forest_ = _flat_forest(self.booster_)
        self.__dict__.pop("_walk_arrays", None)  # the previous fit's
        return self

    def _columns(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        return self._informative(X)

    def _informative(self, X: np.ndarray) -> np.ndarray:
        return X[:, self.columns_] if len(self.columns_) else np.zeros((len(X), 1))

    def decision_function(self, X) -> np.ndarray:
        """The logit of acceptance (binary) or per-class scores (more classes)."""
        return self._logits(self._columns(X))

    def serving_logits(self, X: np.ndarray) -> np.ndarray:
        """`decision_function` of feature rows that `ranking.features` made (a float matrix
        of every feature column), without scikit-learn's input validation, which serving
        would otherwise pay on every request. The same logits."""
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            return self.decision_function(X)
        return self._logits(self._informative(X))

    def _logits(self, columns: np.ndarray) -> np.ndarray:
        if self.forest_ is not None:  # None for more than two classes or categorical splits
            return forest_logits(np.ascontiguousarray(columns, dtype=np.float64),
                                 *self._walk())
        limit_threads("openmp", self.n_threads)
        return self.booster_.decision_function(columns)

    def _walk(self) -> tuple:
        """`forest_` and its distinct splits, worked out once per loaded model (not saved:
        a model saved by an earlier release has only `forest_`)."""
        walk = self.__dict__.get("_walk_arrays")
        if walk is None:
            walk = self._walk_arrays = (*self.forest_, *_distinct_splits(self.forest_))
        return walk

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: this model keeps its own
        state.pop("_walk_arrays", None)
        return state

    def predict_proba(self, X) -> np.ndarray:
        columns = self._columns(X)
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return self.booster_.predict_proba(columns)

    def predict(self, X) -> np.ndarray:
        columns = self._columns(X)
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return self.booster_.predict(columns)


def _flat_forest(booster: HistGradientBoostingClassifier) -> tuple | None:
    """The binary model's trees as flat arrays for `forest_logits`: baseline, each tree's
    root, and per node its feature, threshold, missing-value side, children (indices into the
    flat arrays), leaf flag and value. None where the compiled walk does not apply (more than
    two classes, or categorical splits)."""
    predictors = booster._predictors
    if len(booster.classes_) != 2 or any(
            p[0].nodes["is_categorical"].any() for p in predictors):
        return None
    nodes = [p[0].nodes for p in predictors]
    offsets = np.cumsum([0] + [len(n) for n in nodes[:-1]]).astype(np.int64)
    flat = np.concatenate(nodes)
    shift = np.repeat(offsets, [len(n) for n in nodes])
    return (float(np.ravel(booster._baseline_prediction)[0]), offsets,
            flat["feature_idx"].astype(np.int64), flat["num_threshold"].astype(np.float64),
            flat["missing_go_to_left"].astype(np.bool_),
            flat["left"].astype(np.int64) + shift, flat["right"].astype(np.int64) + shift,
            flat["is_leaf"].astype(np.bool_), flat["value"].astype(np.float64))


def _distinct_splits(forest: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Every (feature, threshold) some node of the forest splits at, as two arrays."""
    feature, threshold, is_leaf = forest[2], forest[3], forest[7]
    pairs = np.unique(np.stack([feature[~is_leaf].astype(np.float64),
                                threshold[~is_leaf]], axis=1), axis=0)
    return pairs[:, 0].astype(np.int64), np.ascontiguousarray(pairs[:, 1])


# Rows grouped before the walk up to this many: serving's few hundred, not a training set's
# hundreds of thousands (a row's sides of every split take a byte each, and such a set has few
# rows alike).
_GROUPED_ROWS_MAX = 4096


@njit(cache=True)
def forest_logits(X, baseline, roots, feature, threshold, missing_left, left, right, is_leaf,
                  value, split_feature, split_threshold):
    if X.shape[0] > _GROUPED_ROWS_MAX:
        return _walk_trees(X, baseline, roots, feature, threshold, missing_left, left, right,
                           is_leaf, value)
    first, of_row = _alike_rows(X, split_feature, split_threshold)
    return _walk_trees(X[first], baseline, roots, feature, threshold, missing_left, left,
                       right, is_leaf, value)[of_row]


@njit(cache=True)
def _alike_rows(X, split_feature, split_threshold):
    """Rows that fall on the same side of every split (nan a side of its own) reach the same
    leaf of every tree: the first row of each such group, and each row's group. One pass with
    an open-addressing table keyed by the rows' sides."""
    n, m = X.shape[0], len(split_feature)
    sides = np.empty((n, m), np.uint8)
    size = 1
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, np.int64)  # per slot: a group's number
    first = np.empty(n, np.int64)
    of_row = np.empty(n, np.int64)
    groups = 0
    for i in range(n):
        h = np.uint64(0)
        for j in range(m):
            x = X[i, split_feature[j]]
            side = 2 if np.isnan(x) else (0 if x <= split_threshold[j] else 1)
            sides[i, j] = side
            h = (h ^ np.uint64(side + 1)) * np.uint64(0x9E3779B97F4A7C15)
        slot = np.int64((h >> np.uint64(32)) & np.uint64(size - 1))
        while True:
            g = table[slot]
            if g < 0:
                table[slot] = groups
                first[groups] = i
                of_row[i] = groups
                groups += 1
                break
            k = first[g]
            same = True
            for j in range(m):
                if sides[k, j] != sides[i, j]:
                    same = False
                    break
            if same:
                of_row[i] = g
                break
            slot = (slot + 1) & (size - 1)
    return first[:groups], of_row


@njit(cache=True)
def _walk_trees(X, baseline, roots, feature, threshold, missing_left, left, right, is_leaf,
                value):
    # Tree by tree, as scikit-learn adds them (the same sums, bit for bit), so one tree's
    # nodes stay in cache while every row walks it.
    out = np.full(X.shape[0], baseline)
    for root in roots:
        for i in range(X.shape[0]):
            k = root
            while not is_leaf[k]:
                x = X[i, feature[k]]
                if np.isnan(x):
                    k = left[k] if missing_left[k] else right[k]
                elif x <= threshold[k]:
                    k = left[k]
                else:
                    k = right[k]
            out[i] += value[k]
    return out


_threads_limited: dict[str, int] = {}  # per threadpoolctl API, what this process is set to


def limit_threads(user_api: str, threads: int) -> None:
    """Limit a thread pool ("openmp", "blas") for the whole process, once per setting: scoring
    runs on every request, where entering `threadpool_limits` each time costs milliseconds,
    and idle threads spinning up on a busy machine cost far more than the few rows scored."""
    if _threads_limited.get(user_api) != threads:
        threadpool_limits(threads, user_api=user_api)
        _threads_limited[user_api] = threads
