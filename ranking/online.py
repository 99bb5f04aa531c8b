"""What the engine learns about one driver from their feedback, online, on top of the global model.

Each driver has a small Bayesian logistic correction to the global model's logit:

    logit P(take) = global_logit + w · terms(features)

`terms` (DRIVER_TERMS) are a bias, an offset per category, and a few sensitivities (price
level, detour, whether the place is ahead, time left, driving alone, a leisure or work trip).
The state is a diagonal Gaussian over w: its mean and its precision, float32,
4 + 8 · len(DRIVER_TERMS) bytes (156 today), so the API
keeps it in one Redis hash field. A new driver starts from the prior (mean 0: exactly the global
model, which already reads their declared preferences); the prior's variances are fitted by
empirical Bayes on the training data (`ranking.training`).

`update` is pure: one assumed-density-filtering step per feedback row (the exact posterior of
one logistic observation projected back onto a diagonal Gaussian), so the next recommendation
reflects it, and replaying a driver's feedback in order gives the same state. It is what
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

from offers.geo_index import CATEGORIES

from .features import FEATURE_NAMES

STATE_VERSION = 1
FEEDBACK_EVENTS = {  # event -> (label, weight)
    "accept": (1, 1.0),
    "redeem": (1, 1.0),
    "dismiss": (0, 1.0),
}
DRIVER_TERMS = (
    "bias", *(f"category={c}" for c in CATEGORIES),
    "price_level", "detour", "ahead", "expires", "alone", "leisure", "work",
)
N_TERMS = len(DRIVER_TERMS)
_HEADER = struct.Struct("<BBH")   # version, number of terms, feedback rows seen (saturating)
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_NEWTON_STEPS = 8


def driver_terms(features: np.ndarray) -> np.ndarray:
    """The per-driver terms (rows × DRIVER_TERMS) of feature rows (rows × FEATURE_NAMES).

    Continuous terms are centred on typical values and unknowns count as typical (0), so a
    term the context does not know neither moves the prediction nor learns."""
    features = np.atleast_2d(features)

    def column(name: str) -> np.ndarray:
        return features[:, _COLUMN[name]]

    categories = features[:, [_COLUMN[f"category={c}"] for c in CATEGORIES]]
    terms = np.column_stack([
        np.ones(len(features)), categories,
        column("price_level") - 1.5,            # 1 cheap .. 4 dear
        column("detour_min") / 10 - 1.5,        # tens of minutes, around 15
        column("ahead") - 0.5,
        column("expires_in_h_log") - 2.5,       # log1p(hours): 2 h is 1.1, 1 d 3.2
        column("passengers=alone") - 0.5,
        column("trip_purpose=leisure") - 0.5,
        column("trip_purpose=work") - 0.25,
    ])
    return np.nan_to_num(terms, nan=0.0)


@dataclass(frozen=True)
class DriverState:
    mean: np.ndarray        # float32 [N_TERMS]
    precision: np.ndarray   # float32 [N_TERMS]
    n_feedback: int = 0

    def to_bytes(self) -> bytes:
        return (_HEADER.pack(STATE_VERSION, N_TERMS, min(self.n_feedback, 0xFFFF))
                + self.mean.astype("<f4").tobytes() + self.precision.astype("<f4").tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> DriverState:
        version, n_terms, n_feedback = _HEADER.unpack_from(data)
        if version != STATE_VERSION or n_terms != N_TERMS or \
                len(data) != _HEADER.size + 8 * n_terms:
            raise ValueError(f"not a version {STATE_VERSION} driver state of {N_TERMS} terms")
        values = np.frombuffer(data, "<f4", offset=_HEADER.size)
        return cls(values[:n_terms].copy(), values[n_terms:].copy(), n_feedback)


def initial_state(prior_variance: np.ndarray) -> DriverState:
    """A driver with no feedback yet: the prior, so predictions are the global model's."""
    variance = np.asarray(prior_variance, dtype=np.float64)
    return DriverState(np.zeros(N_TERMS, np.float32), (1 / variance).astype(np.float32), 0)


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
    precision = state.precision.astype(np.float64)
    for z, label, offset, weight in zip(terms, labels, global_logits, weights, strict=True):
        # The posterior of s = w·z is 1-d: prior N(mu, v) times a logistic likelihood. Find its
        # mode by Newton's method, then move w along the prior covariance towards it.
        mu, spread = mean @ z, z / precision
        v = spread @ z
        if v <= 0 or weight <= 0:
            continue
        s = mu
        for _ in range(_NEWTON_STEPS):
            p = 1 / (1 + np.exp(-(offset + s)))
            s -= ((s - mu) / v + weight * (p - label)) / (1 / v + weight * p * (1 - p))
        p = 1 / (1 + np.exp(-(offset + s)))
        mean = mean + spread * (s - mu) / v
        precision = precision + weight * p * (1 - p) * z * z
    return DriverState(mean.astype(np.float32), precision.astype(np.float32),
                       state.n_feedback + len(labels))


def predict_logit(global_logits: np.ndarray, state: DriverState,
                  features: np.ndarray) -> np.ndarray:
    """The driver's logit of taking each offer: the global logit plus what they taught us."""
    return np.asarray(global_logits, np.float64) + driver_terms(features) @ state.mean.astype(
        np.float64)


def predict(global_logits: np.ndarray, state: DriverState, features: np.ndarray) -> np.ndarray:
    """The driver's probability of taking each offer."""
    return 1 / (1 + np.exp(-predict_logit(global_logits, state, features)))
