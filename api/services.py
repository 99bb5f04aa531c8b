"""The Redis-backed domain objects one application instance uses, bound in `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis

from offers.catalogue import Catalogue
from offers.redemptions import Redemptions
from offers.registry import Registry
from offers.search import PlaceSearch
from offers.serving import OfferServing
from ranking import BaselineRanker, Ranker


@dataclass(frozen=True)
class Services:
    redis: Redis
    registry: Registry
    catalogue: Catalogue
    redemptions: Redemptions
    search: PlaceSearch
    serving: OfferServing
    ranker: Ranker

    @classmethod
    def connect(cls, redis: Redis) -> Services:
        catalogue = Catalogue(redis)
        return cls(redis, Registry(redis), catalogue, Redemptions(redis, catalogue),
                   PlaceSearch(redis), OfferServing(redis), BaselineRanker())


def services() -> Services:
    return current_app.extensions["offers"]
