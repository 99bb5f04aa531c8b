"""The learned ranker: the global model's logit plus the driver's own online correction.

score = P(driver takes the offer) = sigmoid(global_logit(x) + w_driver · terms(x)), where x is
the one feature definition (`ranking.features`) of each candidate in the request's situation,
the global model and the prior over w come from a trained model directory (`ranking.training`),
and w_driver is what `ranking.online.update` learned from this driver's feedback (the prior's
mean, zero, for a driver with none: the global model, which reads their declared preferences).
"""

from __future__ import annotations

import numpy as np

from offers.geo_index import CATEGORIES

from . import online
from .baseline import where_reasons
from .candidates import Candidates, Situation
from .exploration import top_rows
from .features import N_FEATURES, candidates_to_raw, raw_to_features
from .model import forest_logits
from .training import RankingModel, standin_logits

YEAR_S = 365 * 24 * 3600.0
SLOTS_PER_DAY = 96  # arrival slots are local quarter hours of the week, Monday 00:00 first
_CATEGORY_TERMS = [online.DRIVER_TERMS.index(f"category={c}") for c in CATEGORIES]
_TASTE_REASON_MIN = 0.25  # a learned category offset (in logits) worth telling the driver
SHORTLIST = 200  # candidates the boosted trees rescore per request (about a millisecond)


def raw_of(candidates: Candidates, situation: Situation) -> dict[str, np.ndarray]:
    """The raw fields (`ranking.features.RAW_FIELDS`) of candidates in a situation: what the
    log keeps, so a model trained later recomputes its features from them."""
    slot = np.asarray(candidates.arrival_slot)
    raw = candidates_to_raw(candidates, situation.context, (slot % SLOTS_PER_DAY) / 4,
                            slot // SLOTS_PER_DAY, situation.preferences)
    # An offer without an end is inf here; the features cap it at a year anyway, and a year
    # survives the JSON log (inf would come back as unknown).
    raw["expires_in_s"] = np.minimum(raw["expires_in_s"], YEAR_S)
    return raw


def features_of(candidates: Candidates, situation: Situation) -> np.ndarray:
    """The feature rows of candidates in a situation: what models score."""
    return raw_to_features(raw_of(candidates, situation))


class LearnedRanker:
    def __init__(self, model: RankingModel, version: str, pointer: str | None = None):
        self.model = model
        self.version = version
        self.pointer = pointer or version  # what activates it (`ranking.registry`)

    def state_of(self, situation: Situation) -> online.DriverState:
        return situation.state if situation.state is not None else self.model.initial_state()

    def score(self, candidates: Candidates, situation: Situation,
              features: np.ndarray | None = None) -> np.ndarray:
        """P(take) of each candidate. With more than SHORTLIST candidates, the global model's
        linear stand-in (plus the driver's own terms) scores them all and the trees rescore
        its SHORTLIST best; the rest keep the stand-in's estimate, capped below those."""
        return self.score_and_logits(candidates, situation, features)[0]

    def score_and_logits(self, candidates: Candidates, situation: Situation,
                         features: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`score`, and its logits (what `draws` starts from)."""
        if len(candidates) == 0:
            return np.zeros(0), np.zeros(0)
        if features is None:
            features = features_of(candidates, situation)
        logits = self._logits(features, self.state_of(situation), candidates.eta_s)
        return _sigmoid(logits), logits

    def draws(self, logits: np.ndarray, features: np.ndarray, rows: np.ndarray,
              situation: Situation, draws: int, rng: np.random.Generator) -> np.ndarray:
        """`draws` columns of the logits of candidates `rows` (`logits` and `features` are
        all candidates', from `score_and_logits`) with the driver's weights drawn from their
        posterior (Thompson sampling): where the engine knows little about this driver (a
        category never shown to them) the draws spread, so it gets tried. Logits, not
        probabilities: the policy only compares draws, and the sigmoid keeps their order.
        Drawn for the candidates the policy orders only."""
        if len(rows) == 0:
            return np.zeros((0, draws))
        return _drawn(logits, features, rows, self.state_of(situation), draws, rng)

    def _logits(self, features: np.ndarray, state: online.DriverState,
                eta_s: np.ndarray) -> np.ndarray:
        shortlist = self.model.shortlist
        if shortlist is None or len(features) <= SHORTLIST:
            return online.predict_logit(self.model.global_logits(features), state, features)
        logits = shortlist.logits(features, online.linear_terms(state))
        best = top_rows(logits, SHORTLIST, eta_s)
        rescored = online.predict_logit(self.model.global_logits(features[best]), state,
                                        features[best])
        # The rest keep the stand-in's estimate, capped below every rescored one: the two are
        # on different scales, and the stand-in already ranked these lower.
        np.minimum(logits, rescored.min(), out=logits)
        logits[best] = rescored
        return logits

    def check_serves(self) -> None:
        """Score made-up rows every way serving does (a few rows by the trees, more than
        SHORTLIST through the stand-in, draws from the prior) and raise ValueError unless every
        logit is finite: a version that loads but cannot score (an estimator fitted on other
        columns, or not at all; a prior that is no covariance) must never be activated."""
        try:
            state = self.model.initial_state()
            rng = np.random.default_rng(0)
            for n in (2, SHORTLIST + 2):
                # Column-major, as `raw_to_features` makes them; known and unknown values.
                features = np.zeros((N_FEATURES, n)).T
                features[1::2] = np.nan
                logits = self._logits(features, state, np.zeros(n))
                drawn = _drawn(logits, features, np.arange(n), state, 2, rng)
                if logits.shape != (n,) or not np.isfinite(drawn).all():
                    raise ValueError("its logits are not one finite number a row")
        except Exception as error:  # whatever a broken estimator or prior raises
            raise ValueError(f"it cannot score: {error}") from None

    def reasons(self, candidates: Candidates, situation: Situation,
                scores: np.ndarray) -> list[list[str]]:
        if len(candidates) == 0:
            return []
        chance = scores
        taste = self.state_of(situation).mean[_CATEGORY_TERMS]
        out = []
        for i in range(len(candidates)):  # the answer's few items
            reasons = [f"{chance[i]:.0%} likely for you"]
            if taste[candidates.category[i]] >= _TASTE_REASON_MIN:
                name = CATEGORIES[candidates.category[i]].replace("_", " ")
                reasons.append(f"you often take {name} offers")
            out.append(reasons + where_reasons(candidates, i))
        return out


def _drawn(logits: np.ndarray, features: np.ndarray, rows: np.ndarray,
           state: online.DriverState, draws: int, rng: np.random.Generator) -> np.ndarray:
    """`draws` columns of the logits of `rows` with the driver's weights drawn from `state`."""
    spread = online.covariance_factor(state) @ rng.standard_normal((len(state.mean), draws))
    return logits[rows, None] + online.driver_terms(features, rows) @ spread


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


def warm_up() -> None:
    """Compile the scoring loops (or load them from numba's cache) with the argument types
    serving passes, so that a server's first scored request does not wait for them."""
    rows, ints, flags = np.zeros((1, 1)), np.zeros(1, np.int64), np.zeros(1, np.bool_)
    forest_logits(rows, 0.0, ints, ints, np.zeros(1), flags, ints, ints, ~flags, np.zeros(1),
                  ints, np.zeros(1))
    # Column-major, as `raw_to_features` makes them (two rows: numba types a one-row matrix
    # as row-major, which would leave the real layout to compile on the first request).
    features = np.zeros((N_FEATURES, 2)).T
    standin_logits(features, *(np.zeros(N_FEATURES) for _ in range(4)), 0.0,
                   *online.linear_terms(None))
