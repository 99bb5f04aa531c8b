"""What the engine learns about one driver from their feedback, online, on top of the global model.

Each driver has a small Bayesian logistic correction to the global model's logit:

    logit P(take) = global_logit + w · terms(features)

`terms` (DRIVER_TERMS) are a bias, an offset per category, and a few sensitivities (price
level, detour, whether the place is ahead, time left, driving alone, with kids, with friends,
a leisure or work trip). The state is a Gaussian over w with a full covariance: its mean and
the upper triangle of its covariance, float32, 4 + 4 · (n + n(n+1)/2) bytes for n terms
(1,012 for the 21 of today), so the API keeps it in one Redis hash field. A new driver starts
from the prior (mean 0: exactly the global model, which already reads their declared
preferences); the prior's covariance is fitted by empirical Bayes on the training data
(`ranking.training`), so what one answer says about the other terms (a driver who takes cafe
offers tends to take restaurant offers too) is learned from the population.

`update` is pure: one assumed-density-filtering step per feedback row (the posterior of one
logistic observation along its terms z is one-dimensional; its Laplace approximation is a
rank-one update of the Gaussian), so the next recommendation reflects it, and replaying a
driver's feedback in order gives the same state. It is what
POST /v1/feedback calls and what `offers ranking evaluate` calls for warm-start rows; nothing
else may change a state.

Feedback events become labels and weights as FEEDBACK_EVENTS says: an accepted or redeemed
offer is a positive, a dismissed one a negative. Impressions and clicks alone are not feedback
(an offer shown may simply not have been seen); `update` takes per-row weights should weaker
signals ever count.

This module must never read Redis or the clock: the API reads and writes states, this module
only computes them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from offers.geo_index import CATEGORIES

from .features import FEATURE_NAMES

STATE_VERSION = 2
FEEDBACK_EVENTS = {  # event -> (label, weight)
    "accept": (1, 1.0),
    "redeem": (1, 1.0),
    "dismiss": (0, 1.0),
}
DRIVER_TERMS = (
    "bias", *(f"category={c}" for c in CATEGORIES),
    "price_level", "detour", "ahead", "expires", "alone", "kids", "friends", "leisure", "work",
)
N_TERMS = len(DRIVER_TERMS)
_HEADER = struct.Struct("<BBH")   # version, number of terms, feedback rows seen (saturating)
_UPPER = np.triu_indices(N_TERMS)   # the covariance's upper triangle, row by row
N_STATE_BYTES = _HEADER.size + 4 * (N_TERMS + len(_UPPER[0]))
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_MODE_STEPS = 60  # safeguarded Newton: a few steps as a rule, bisection's 1 bit a step at worst


# Each term after the bias is one feature column, scaled and centred on a typical value:
# (column, scale, centre), in the order of DRIVER_TERMS.
_TERM_COLUMNS = (
    *((f"category={c}", 1.0, 0.0) for c in CATEGORIES),
    ("price_level", 1.0, 1.5),                 # 1 cheap .. 4 dear
    ("detour_min", 0.1, 1.5),                  # tens of minutes, around 15
    ("ahead", 1.0, 0.5),
    ("expires_in_h_log", 1.0, 2.5),            # log1p(hours): 2 h is 1.1, 1 d 3.2
    ("passengers=alone", 1.0, 0.5),
    ("passengers=kids", 1.0, 0.1),
    ("passengers=friends", 1.0, 0.25),
    ("trip_purpose=leisure", 1.0, 0.5),
    ("trip_purpose=work", 1.0, 0.25),
)
_COLUMNS = np.array([_COLUMN[name] for name, _, _ in _TERM_COLUMNS])
_SCALES = np.array([scale for _, scale, _ in _TERM_COLUMNS])
_CENTRES = np.array([centre for _, _, centre in _TERM_COLUMNS])
assert len(_TERM_COLUMNS) + 1 == len(DRIVER_TERMS)
for _constant in (_COLUMNS, _SCALES, _CENTRES):  # handed out by `linear_terms`
    _constant.setflags(write=False)


def driver_terms(features: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The per-driver terms (rows × DRIVER_TERMS) of feature rows (rows × FEATURE_NAMES), or
    of those of them `rows` names.

    Continuous terms are centred on typical values and unknowns count as typical (0), so a
    term the context does not know neither moves the prediction nor learns."""
    features = np.atleast_2d(features)
    # The columns the terms read first, then the rows: a request's matrix has 50 columns.
    selected = features[:, _COLUMNS] if rows is None else features[:, _COLUMNS][rows]
    terms = np.empty((len(selected), N_TERMS))
    terms[:, 0] = 1.0
    np.multiply(selected, _SCALES, out=terms[:, 1:])
    terms[:, 1:] -= _CENTRES
    return np.nan_to_num(terms, nan=0.0, copy=False)


@dataclass(frozen=True)
class DriverState:
    mean: np.ndarray         # float32 [N_TERMS]
    covariance: np.ndarray   # float32 [N_TERMS, N_TERMS], symmetric
    n_feedback: int = 0

    def to_bytes(self) -> bytes:
        return (_HEADER.pack(STATE_VERSION, N_TERMS, min(self.n_feedback, 0xFFFF))
                + self.mean.astype("<f4").tobytes()
                + self.covariance[_UPPER].astype("<f4").tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> DriverState:
        version, n_terms, n_feedback = _HEADER.unpack_from(data)
        if version != STATE_VERSION or n_terms != N_TERMS or len(data) != N_STATE_BYTES:
            raise ValueError(f"not a version {STATE_VERSION} driver state of {N_TERMS} terms")
        values = np.frombuffer(data, "<f4", offset=_HEADER.size)
        covariance = np.zeros((N_TERMS, N_TERMS), np.float32)
        covariance[_UPPER] = values[N_TERMS:]
        covariance.T[_UPPER] = values[N_TERMS:]
        return cls(values[:N_TERMS].copy(), covariance, n_feedback)


def initial_state(prior_covariance: np.ndarray) -> DriverState:
    """A driver with no feedback yet: the prior, so predictions are the global model's.

    `prior_covariance` is the prior's covariance over DRIVER_TERMS, or a vector of variances
    (independent terms)."""
    prior = np.asarray(prior_covariance, dtype=np.float64)
    if prior.ndim == 1:
        prior = np.diag(prior)
    if prior.shape != (N_TERMS, N_TERMS):
        raise ValueError(f"a prior over {N_TERMS} terms is needed, not {prior.shape}")
    return DriverState(np.zeros(N_TERMS, np.float32), ((prior + prior.T) / 2).astype(np.float32),
                       0)


def update(state: DriverState, features: np.ndarray, labels: np.ndarray,
           global_logits: np.ndarray, weights: np.ndarray | None = None) -> DriverState:
    """The state after feedback on these rows, in order (pure: `state` is left as it was).

    `features` are the rows' feature vectors (FEATURE_NAMES) as served, `labels` 1 for taken
    and 0 for not, `global_logits` the global model's logit for each row and `weights` how much
    each row counts (FEEDBACK_EVENTS; 1 by default)."""
    terms = driver_terms(features)
    labels = np.atleast_1d(np.asarray(labels, dtype=np.float64))
    global_logits = np.atleast_1d(np.asarray(global_logits, dtype=np.float64))
    weights = np.ones(len(labels)) if weights is None else np.atleast_1d(weights)
    mean = state.mean.astype(np.float64)
    covariance = state.covariance.astype(np.float64)
    for z, label, offset, weight in zip(terms, labels, global_logits, weights, strict=True):
        # The posterior of s = w·z is 1-d: prior N(mu, v) times a logistic likelihood. Find its
        # mode; w moves along the prior covariance to it, and the Laplace curvature there
        # shrinks the covariance along that direction (rank one).
        spread = covariance @ z
        mu, v = mean @ z, spread @ z
        if v <= 0 or weight <= 0:
            continue
        s = _posterior_mode(mu, v, offset, label, weight)
        p = expit(offset + s)
        curvature = weight * p * (1 - p)
        mean = mean + spread * (s - mu) / v
        covariance = covariance - np.outer(spread, spread) * (curvature / (1 + curvature * v))
        covariance = (covariance + covariance.T) / 2
    if not (np.isfinite(mean).all() and np.isfinite(covariance).all()):
        return state  # never keep a state that could not serve again (a NaN feature or logit)
    return DriverState(mean.astype(np.float32), covariance.astype(np.float32),
                       state.n_feedback + len(labels))


def _posterior_mode(mu: float, v: float, offset: float, label: float, weight: float) -> float:
    """The mode of N(mu, v) times a logistic likelihood of `label` (weighted) at logit
    offset + s: the root of (s - mu) / v + weight (p(s) - label), which increases with s and
    lies between mu - v weight (1 - label) and mu + v weight label. Newton's step where it
    stays in that bracket and at least halves the step before, else bisection (`rtsafe` of
    Numerical Recipes): plain Newton swings from side to side and stops far short when v is
    large and the logit saturated, as a rare accept under a confident global model is."""
    low, high = mu - v * weight * (1 - label), mu + v * weight * label
    s, last = mu, high - low
    for _ in range(_MODE_STEPS):
        p = expit(offset + s)
        slope = (s - mu) / v + weight * (p - label)
        if slope == 0:
            return s
        if slope > 0:
            high = s
        else:
            low = s
        step = slope / (1 / v + weight * p * (1 - p))
        if low < s - step < high and abs(step) <= abs(last) / 2:
            last, moved = step, s - step
        else:
            last = (high - low) / 2
            moved = low + last
        if abs(moved - s) <= 1e-12 * (1 + abs(s)):
            return moved
        s = moved
    return s


def covariance_factor(state: DriverState) -> np.ndarray:
    """A matrix L with L Lᵀ the state's covariance (directions of float32 round-off that came
    out slightly negative count as certain): draws of w are mean + L · N(0, I)."""
    values, vectors = np.linalg.eigh(state.covariance.astype(np.float64))
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def linear_terms(state: DriverState | None) -> tuple[np.ndarray, ...]:
    """What `driver_terms` computes, and the state's weights for them (zeros without a state),
    for compiled loops that add a driver's terms without building them
    (`ranking.training.standin_logits`)."""
    weights = np.zeros(N_TERMS) if state is None else state.mean.astype(np.float64)
    return _COLUMNS, _SCALES, _CENTRES, weights


def predict_logit(global_logits: np.ndarray, state: DriverState,
                  features: np.ndarray) -> np.ndarray:
    """The driver's logit of taking each offer: the global logit plus what they taught us."""
    return np.asarray(global_logits, np.float64) + driver_terms(features) @ state.mean.astype(
        np.float64)


def predict(global_logits: np.ndarray, state: DriverState, features: np.ndarray) -> np.ndarray:
    """The driver's probability of taking each offer."""
    return 1 / (1 + np.exp(-predict_logit(global_logits, state, features)))
