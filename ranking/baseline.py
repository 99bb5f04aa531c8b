"""The transparent baseline: value to the driver, discounted by detour and distance ahead.

score = value * exp(-detour_s / DETOUR_SCALE_S) * exp(-along_m / AHEAD_SCALE_M)

where value is the merchant's `value_estimate`, or, when absent, a rough worth of the discount
(a percent off a typical basket, an amount, or a per-unit discount over a typical fill-up).
"""

from __future__ import annotations

import numpy as np

from offers.geo_index import CATEGORIES, DISCOUNT_KINDS

from .candidates import Candidates, Situation

DETOUR_SCALE_S = 600.0     # a 10-minute detour costs a factor e
AHEAD_SCALE_M = 30_000.0   # an offer 30 km ahead costs a factor e
TYPICAL_BASKET = 12.0      # what a percent discount is taken off, in the offer's currency
TYPICAL_UNITS = 40.0       # litres or kWh in a typical fill-up


def offer_value(candidates: Candidates) -> np.ndarray:
    kind = np.asarray(DISCOUNT_KINDS)[candidates.discount_kind]
    derived = np.select(
        [kind == "percent", kind == "amount", kind == "per_unit"],
        [candidates.discount_value / 100 * TYPICAL_BASKET, candidates.discount_value,
         candidates.discount_value * TYPICAL_UNITS])
    return np.where(candidates.value_estimate > 0, candidates.value_estimate, derived)


class BaselineRanker:
    version = "baseline-1"

    def score(self, candidates: Candidates, situation: Situation,
              features: np.ndarray | None = None) -> np.ndarray:
        ahead = np.nan_to_num(candidates.along_m, nan=candidates.distance_m)
        return (offer_value(candidates) * np.exp(-candidates.detour_s / DETOUR_SCALE_S)
                * np.exp(-ahead / AHEAD_SCALE_M))

    def reasons(self, candidates: Candidates, situation: Situation,
                scores: np.ndarray) -> list[list[str]]:
        value = offer_value(candidates)
        return [[f"worth about {value[i]:.2f}", *where_reasons(candidates, i)]
                for i in range(len(candidates))]  # the answer's few items, not the candidates


def where_reasons(candidates: Candidates, i: int) -> list[str]:
    """Where and when, in words: detour, distance ahead, expiry, category."""
    reasons = []
    minutes = candidates.detour_s[i] / 60
    reasons.append("right on your way" if minutes < 1 else f"{minutes:.0f} min detour")
    if np.isfinite(candidates.along_m[i]):
        reasons.append(f"{candidates.along_m[i] / 1000:.1f} km ahead")
    else:
        reasons.append(f"{candidates.distance_m[i] / 1000:.1f} km away")
    if candidates.expires_in_s[i] < 24 * 3600:
        reasons.append("ends within a day")
    reasons.append(f"{CATEGORIES[candidates.category[i]].replace('_', ' ')}")
    return reasons
