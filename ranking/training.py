"""Fitting a ranking model (the global estimator and the per-driver prior) and storing it.

`train` fits the global `AcceptanceModel` on every row, then the per-driver prior by empirical
Bayes: out-of-fold global logits (folds grouped by driver, so no driver's own rows inform their
baseline), a per-driver MAP correction on them, and the prior covariance (full: how drivers'
terms vary together) that maximises the marginal likelihood (EM with a Laplace
approximation), shrunk towards its diagonal. Finally one scale on that covariance is picked by
replaying the warm-start protocol on the training drivers. The test data never enter.

A model directory holds `global.skops` (the estimator, written with skops so loading it runs no
pickle) and `model.json` (the prior and what the model was trained on).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from numba import njit
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from skops import io as sio

from . import online
from .datasets import Dataset
from .features import FEATURE_NAMES
from .model import AcceptanceModel

MODEL_FORMAT = 2
PRIOR_SCALES = (0.5, 1.0, 2.0)       # tried on the training drivers' replayed warm starts
# The EM covariance is noisy off its diagonal (a few hundred drivers, ~20 answers each): this
# share of each covariance is dropped (chosen by grouped cross-validation, docs/ranking.md).
PRIOR_SHRINKAGE = 0.3
_EM_ITERATIONS = 8
_MAP_NEWTON_STEPS = 12
# Prior variances are kept within these: a vanishing one would freeze a term, an unbounded one
# (a term that is collinear with others within drivers) would make the MAP fits singular.
_VARIANCE_RANGE = (1e-4, 10.0)
# What a model file may hold beyond the types skops trusts itself (scikit-learn's estimators,
# arrays): the trees' parts, dtypes, and estimator classes (scikit-learn's or the engine's),
# whose state is only set on loading. Never a function, which an estimator holding it (a
# FunctionTransformer) would call on scoring: numpy's and scikit-learn's own include some that
# run code given as text. Nor any other class, whose constructor skops may call.
_TRUSTED_TYPES = frozenset({
    "numpy.dtype", "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"})


@dataclass(frozen=True)
class Shortlist:
    """A linear stand-in for the global logit, fitted to it (least squares, a little ridge):
    cheap enough to score every candidate of a request, so the boosted trees only score the
    few it ranks highest. Unknown (nan) features take their training mean, and features are
    clipped to their training range: like the trees, it does not extrapolate (a category code
    or a distance never seen in training would otherwise run off linearly)."""

    fill: np.ndarray
    coef: np.ndarray
    intercept: float
    low: np.ndarray
    high: np.ndarray

    def logits(self, features: np.ndarray, driver: tuple | None = None) -> np.ndarray:
        """The stand-in's logits, plus a driver's own terms when `driver` is
        `online.linear_terms(state)`: one pass over the candidates for both."""
        columns, scales, centres, weights = driver or _NO_DRIVER
        if features.ndim != 2 or features.shape[1] != len(self.coef):
            raise ValueError(f"the stand-in scores rows of {len(self.coef)} features, "
                             f"not an array of shape {features.shape}")
        return standin_logits(np.asarray(features, dtype=np.float64), self.fill, self.low,
                              self.high, self.coef, self.intercept, columns, scales, centres,
                              weights)

    def to_json(self) -> dict:
        return {"fill": self.fill.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept, "low": self.low.tolist(),
                "high": self.high.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> Shortlist:
        return cls(*(np.asarray(data[k], float) for k in ("fill", "coef")),
                   float(data["intercept"]),
                   *(np.asarray(data[k], float) for k in ("low", "high")))


_NO_DRIVER = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(1))


@njit(cache=True)
def standin_logits(features, fill, low, high, coef, intercept, term_columns, term_scales,
                   term_centres, term_weights):
    """fill nan, clip to the training range, dot with coef; then add the driver's terms
    (`online.driver_terms` dotted with their weights: a bias, then one scaled and centred column
    each, unknowns adding nothing). Column by column (serving's feature matrices are
    column-major), into one output array instead of temporary matrices of thousands of
    candidates' rows."""
    rows, columns = features.shape
    out = np.full(rows, intercept)
    for j in range(columns):
        for i in range(rows):
            x = features[i, j]
            if np.isnan(x):
                x = fill[j]
            out[i] += min(max(x, low[j]), high[j]) * coef[j]
    for i in range(rows):
        out[i] += term_weights[0]
    for k in range(len(term_columns)):
        column, scale, centre = term_columns[k], term_scales[k], term_centres[k]
        weight = term_weights[k + 1]
        for i in range(rows):
            x = features[i, column]
            if not np.isnan(x):
                out[i] += weight * (x * scale - centre)
    return out


def fit_shortlist(features: np.ndarray, logits: np.ndarray, ridge: float = 1e-3) -> Shortlist:
    known = ~np.isnan(features)
    fill = np.where(known, features, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    filled = np.where(np.isnan(features), fill, features)
    mean, scale = filled.mean(axis=0), filled.std(axis=0)
    scale[scale == 0] = 1.0
    z = (filled - mean) / scale
    target = logits - logits.mean()
    weights = np.linalg.solve(z.T @ z + ridge * len(z) * np.eye(z.shape[1]), z.T @ target)
    coef = weights / scale
    return Shortlist(fill, coef, float(logits.mean() - mean @ coef), filled.min(axis=0),
                     filled.max(axis=0))


@dataclass
class RankingModel:
    estimator: AcceptanceModel
    prior_covariance: np.ndarray          # over online.DRIVER_TERMS (terms × terms)
    info: dict = field(default_factory=dict)
    shortlist: Shortlist | None = None

    def global_logits(self, features: np.ndarray) -> np.ndarray:
        """The global model's logits of feature rows (`ranking.features`)."""
        logits = getattr(self.estimator, "serving_logits", self.estimator.decision_function)
        return np.asarray(logits(features), dtype=np.float64)

    def initial_state(self) -> online.DriverState:
        return online.initial_state(self.prior_covariance)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sio.dump(self.estimator, directory / "global.skops")
        (directory / "model.json").write_text(json.dumps({
            "format": MODEL_FORMAT, "feature_names": list(FEATURE_NAMES),
            "driver_terms": list(online.DRIVER_TERMS), "state_version": online.STATE_VERSION,
            "prior_covariance": np.asarray(self.prior_covariance, float).tolist(),
            "info": self.info,
            "shortlist": self.shortlist.to_json() if self.shortlist else None,
        }, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> RankingModel:
        directory = Path(directory)
        meta = json.loads((directory / "model.json").read_text())
        if not isinstance(meta, dict) or "prior_covariance" not in meta:
            raise ValueError(f"{directory / 'model.json'} is not a model's description")
        if meta.get("format") != MODEL_FORMAT \
                or meta.get("feature_names") != list(FEATURE_NAMES) \
                or meta.get("driver_terms") != list(online.DRIVER_TERMS):
            raise ValueError(f"{directory} was trained with other features; train it again")
        path = directory / "global.skops"
        untrusted = sio.get_untrusted_types(file=path)
        unexpected = [name for name in untrusted if not _trusted(name)]
        if unexpected:
            raise ValueError(f"{path} holds unexpected types: {', '.join(unexpected)}")
        estimator = sio.load(path, trusted=untrusted)
        shortlist = meta.get("shortlist")
        return cls(estimator, np.asarray(meta["prior_covariance"]), meta.get("info", {}),
                   Shortlist.from_json(shortlist) if shortlist else None)


def _trusted(type_name: str) -> bool:
    """Whether a model file may hold this type (`_TRUSTED_TYPES`); modules are imported only
    from scikit-learn and this package."""
    if type_name in _TRUSTED_TYPES:
        return True
    module, _, name = type_name.rpartition(".")
    if not module.startswith(("sklearn.", "ranking.")):
        return False
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return False
    return isinstance(found, type) and issubclass(found, BaseEstimator)


def out_of_fold_logits(estimator: AcceptanceModel, features: np.ndarray, y: np.ndarray,
                       groups: np.ndarray, folds: int) -> np.ndarray | None:
    """Each row's global logit from a model fitted without its driver's rows; None when, for
    some fold, the other drivers answered all one way (every positive among one fold's
    drivers, as early logs with rare acceptances can be): nothing fitted without those drivers
    could tell their answers apart."""
    logits = np.zeros(len(y))
    for train_rows, test_rows in GroupKFold(folds).split(features, y, groups):
        if len(np.unique(y[train_rows])) < 2:
            return None
        fitted = clone(estimator).fit(features[train_rows], y[train_rows])
        logits[test_rows] = fitted.decision_function(features[test_rows])
    return logits


def _driver_map(terms: np.ndarray, offsets: np.ndarray, y: np.ndarray,
                prior_precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One driver's MAP correction and its Laplace posterior covariance (prior N(0, P⁻¹))."""
    w = np.zeros(terms.shape[1])
    for _ in range(_MAP_NEWTON_STEPS):
        with np.errstate(over="ignore"):  # a logit below -709: exp is inf, p is 0, rightly
            p = 1 / (1 + np.exp(-(offsets + terms @ w)))
        gradient = terms.T @ (p - y) + prior_precision @ w
        hessian = (terms.T * (p * (1 - p))) @ terms + prior_precision
        w -= np.linalg.solve(hessian, gradient)
    return w, np.linalg.inv(hessian)


def fit_prior_covariance(terms: np.ndarray, offsets: np.ndarray, y: np.ndarray,
                         groups: np.ndarray, iterations: int = _EM_ITERATIONS,
                         shrinkage: float = PRIOR_SHRINKAGE) -> np.ndarray:
    """Empirical-Bayes covariance of the per-driver terms (EM, Laplace approximation).

    Each iteration: every driver's MAP correction and posterior covariance under the current
    prior, then the prior becomes their average second moment, with `shrinkage` of its
    off-diagonal part dropped and its variances kept within _VARIANCE_RANGE. Terms no row uses
    keep variance 1 and no covariance with the others."""
    used = np.flatnonzero(np.any(terms != 0, axis=0))
    terms = terms[:, used]
    covariance = np.eye(len(used))
    by_driver = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    for _ in range(iterations):
        precision = np.linalg.inv(covariance)
        second_moment = np.zeros_like(covariance)
        for rows in by_driver:
            w, posterior = _driver_map(terms[rows], offsets[rows], y[rows], precision)
            second_moment += np.outer(w, w) + posterior
        second_moment /= len(by_driver)
        variance = np.clip(np.diag(second_moment), *_VARIANCE_RANGE)
        scale = np.sqrt(variance / np.diag(second_moment))
        covariance = (1 - shrinkage) * second_moment * np.outer(scale, scale)
        covariance[np.diag_indices_from(covariance)] = variance
    full = np.eye(online.N_TERMS)
    full[np.ix_(used, used)] = covariance
    return full


def warm_start_split(groups: np.ndarray, warm_fraction: float) -> np.ndarray:
    """True for each driver's first floor(warm_fraction · n) rows, in row order."""
    warm = np.zeros(len(groups), dtype=bool)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    rank = np.empty(len(groups), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(groups)) - np.repeat(starts, counts)
    # The fraction as the decimal it was written as, in integers: 0.58 · 50 is 29, where the
    # floats' product is 28.999999999999996.
    share = Fraction(repr(float(warm_fraction)))
    firsts = np.array([n * share.numerator // share.denominator for n in counts.tolist()],
                      dtype=np.int64)
    warm[rank < firsts[inverse]] = True
    return warm


def replay_warm_start(features: np.ndarray, y: np.ndarray, groups: np.ndarray,
                      logits: np.ndarray, prior_covariance: np.ndarray,
                      warm_fraction: float, weights: np.ndarray | None = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Feed each driver's warm rows through `online.update` (each counting its `weights`, as
    feedback: `Dataset.feedback_weight`), score the rest with `online.predict`: (mask of
    scored rows, probability per row; nan on warm rows)."""
    warm = warm_start_split(groups, warm_fraction)
    p = np.full(len(y), np.nan)
    weights = np.ones(len(y)) if weights is None else weights
    start = online.initial_state(prior_covariance)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        fed, scored = rows[warm[rows]], rows[~warm[rows]]
        state = online.update(start, features[fed], y[fed], logits[fed], weights[fed])
        p[scored] = online.predict(logits[scored], state, features[scored])
    return ~warm, p


def train(data: Dataset, estimator: AcceptanceModel | None = None, inner_folds: int = 5,
          warm_fraction: float = 0.5) -> RankingModel:
    """The global model on every row of `data` and the per-driver prior fitted on it."""
    estimator = AcceptanceModel() if estimator is None else estimator
    features, y, groups = data.features(), data.y, data.driver_id
    fitted = clone(estimator).fit(features, y)
    shortlist = fit_shortlist(features, np.asarray(fitted.decision_function(features), float))
    n_drivers = len(np.unique(groups))
    info = {"rows": int(len(y)), "drivers": int(n_drivers),
            "positive_rate": float(y.mean()), "estimator": repr(estimator)}
    if n_drivers < max(inner_folds, 2):   # too few drivers to learn how drivers differ
        return RankingModel(fitted, np.eye(online.N_TERMS), info, shortlist)
    logits = out_of_fold_logits(estimator, features, y, groups, inner_folds)
    if logits is None:  # how drivers differ cannot be told from these answers
        info["prior"] = "identity: an inner fold's other drivers answered all one way"
        return RankingModel(fitted, np.eye(online.N_TERMS), info, shortlist)
    terms = online.driver_terms(features)
    covariance = fit_prior_covariance(terms, logits, y, groups)
    used = np.any(terms != 0, axis=0)
    capped = int(np.sum(np.diag(covariance)[used] >= _VARIANCE_RANGE[1]))
    if capped > used.sum() / 2:  # EM ran away: seen with 57 drivers, not with 113 or more
        info["warning"] = (
            f"the per-driver prior did not settle: {capped} of {int(used.sum())} variances at "
            f"the cap, from {n_drivers} drivers; per-driver learning may make predictions "
            f"worse than the global model's: evaluate before publishing, or train on more "
            f"drivers")
    scores = {}
    for scale in PRIOR_SCALES:
        scored, p = replay_warm_start(features, y, groups, logits, covariance * scale,
                                      warm_fraction, data.feedback_weight)
        scores[scale] = (roc_auc_score(y[scored], p[scored])
                         if len(np.unique(y[scored])) == 2 else 0.0)
    best = max(scores, key=scores.get)
    info.update(prior_scale=best, replayed_auc_by_scale={str(k): v for k, v in scores.items()})
    return RankingModel(fitted, covariance * best, info, shortlist)
