"""What the ranking sees: candidate offers as parallel numpy arrays, the driver and the context.

The recommendation endpoint builds one `Candidates` per request (after the geo and serving
filters) and asks a `Ranker` for scores and, for the few items it answers with, reasons. Every
ranker, the baseline here and the learned models after it, sees exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Candidates:
    place_key: np.ndarray        # bytes, which place (`offers.geo_index.PLACE_KEY`); one row
                                 # per (offer, place)
    category: np.ndarray         # int, index into offers.geo_index.CATEGORIES
    brand: np.ndarray            # uint64 brand fingerprint (0: none)
    value_estimate: np.ndarray   # float, what the offer is worth to a driver (0: unknown)
    discount_kind: np.ndarray    # int, index into offers.geo_index.DISCOUNT_KINDS
    discount_value: np.ndarray   # float
    price_level: np.ndarray      # int 1..4, 0 unknown
    distance_m: np.ndarray       # geodesic distance from the car
    along_m: np.ndarray          # distance along the route from the car (nan without a route)
    detour_s: np.ndarray         # estimated extra time to visit
    eta_s: np.ndarray            # estimated time until arrival
    expires_in_s: np.ndarray     # time left before the offer ends at arrival (inf: no end)
    arrival_slot: np.ndarray     # local 15-minute slot of the week at arrival (0: Mon 00:00)

    def __len__(self) -> int:
        return len(self.place_key)

    def take(self, rows: np.ndarray) -> Candidates:
        return Candidates(**{name: getattr(self, name)[rows]
                             for name in self.__dataclass_fields__})


@dataclass(frozen=True)
class Situation:
    """The request's driver and context (only fields a car knows; never demographics), and
    what the engine holds on the driver: declared preferences and the online state learned
    from their feedback (`ranking.online.DriverState`; None before any)."""

    driver_id: str
    fleet_id: str
    context: dict = field(default_factory=dict)
    preferences: dict | None = None
    state: Any = None


class Ranker(Protocol):
    version: str

    def score(self, candidates: Candidates, situation: Situation,
              features: np.ndarray | None = None) -> np.ndarray:
        """One score per candidate, higher is better. `features` are the candidates' rows of
        `ranking.features` when the caller has them already (a ranker that reads features
        must not compute them twice; one that does not ignores them)."""

    def reasons(self, candidates: Candidates, situation: Situation,
                scores: np.ndarray) -> list[list[str]]:
        """Short human-readable reasons for each candidate (called for the answer only, with
        the scores `score` gave them)."""
