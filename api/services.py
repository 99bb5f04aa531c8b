"""The Redis-backed domain objects one application instance uses, bound in `create_app`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from flask import current_app
from redis import Redis

from offers.catalogue import Catalogue
from offers.errors import NotFound
from offers.redemptions import Redemptions, use_driver_key_secret
from offers.registry import Registry
from offers.search import PlaceSearch
from offers.serving import OfferServing
from ranking import BaselineRanker, Ranker
from ranking.exploration import Policy
from ranking.learned import LearnedRanker
from ranking.learning import LearningLoop, Profile
from ranking.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    redis: Redis
    registry: Registry
    catalogue: Catalogue
    redemptions: Redemptions
    search: PlaceSearch
    serving: OfferServing
    learning: LearningLoop
    models: ModelRegistry
    policy: Policy
    rng: np.random.Generator
    baseline: Ranker = BaselineRanker()  # until a model version is activated

    @classmethod
    def connect(cls, redis: Redis, policy: Policy, seed: int | None = None,
                driver_key_secret: str | None = None) -> Services:
        use_driver_key_secret(redis, driver_key_secret)
        catalogue = Catalogue(redis)
        index = catalogue.index  # one cache of cells and masks per process
        return cls(redis, Registry(redis), catalogue, Redemptions(redis, catalogue),
                   PlaceSearch(redis, index), OfferServing(redis, index), LearningLoop(redis),
                   ModelRegistry(redis), policy, np.random.default_rng(seed))

    def driver_reads(self, fleet_id: str, driver_id: str) -> list[Callable]:
        """The reads of what the engine holds on a driver and of the ranker serving now (a
        command each), for another read to queue on its round trip (the index read's)."""
        return [self.models.active_command, *self.learning.profile_commands(fleet_id, driver_id)]

    def driver_and_ranker(self, replies: list) -> tuple[Profile, Ranker]:
        """What the engine holds on a driver and the ranker serving now, from the replies to
        `driver_reads`."""
        active, erasures, profile = replies
        pointer = self.models.pointer_from(active)
        ranker = self._ranker(pointer) if pointer else None
        return self.learning.profile_from(erasures, profile), ranker or self.baseline

    def learner(self) -> LearnedRanker | None:
        """The learned ranker serving now (feedback trains its driver states), if any."""
        active = self.models.active_pointer()
        return self._ranker(active) if active else None

    def _ranker(self, pointer: str) -> LearnedRanker | None:
        """The active version's ranker; None (the baseline serves) if it cannot be loaded,
        e.g. trained on features this release no longer computes: logged, never a 500."""
        try:
            return self.models.ranker(pointer)
        except (ValueError, NotFound) as error:
            log.error("model %s cannot be served, the baseline ranks: %s", pointer, error)
            return None


def services() -> Services:
    return current_app.extensions["offers"]
