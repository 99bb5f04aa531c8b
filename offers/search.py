"""Place search: around a point, and along a route (Azure Maps / TomTom "search along route",
HERE's route corridor).

Each search reads its H3 cells in one round trip, measures every candidate exactly with numpy
(`geo.Route.locate`, geodesic distances), and reads the documents of the answer only, in one
more round trip; those documents are also the final check that a record is not stale.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import orjson
from redis import Redis

from geo.cells import cell_groups, corridor_cells, radius_cells
from geo.route import WGS84, Route

from . import keys
from .geo_index import CATEGORIES, GeoIndex, brand_key, take

# How a detour is estimated: out to the place and back, along roads that are on average this
# much longer than the straight line, at this speed (urban driving off the main route).
ROAD_FACTOR = 1.3
DETOUR_SPEED_MS = 30 / 3.6


def detour_m(offset_m: np.ndarray) -> np.ndarray:
    return 2.0 * ROAD_FACTOR * offset_m


def _with_spare(limit: int) -> int:
    """How many to fetch for `limit` answers, with spares for stale records dropped."""
    return limit + limit // 10 + 5


def _wanted(records: np.ndarray, categories: list[str] | None,
            brands: list[str] | None) -> np.ndarray:
    keep = np.ones(len(records), dtype=bool)
    if categories:
        keep &= np.isin(records["category"], [CATEGORIES.index(c) for c in categories])
    if brands:
        keep &= np.isin(records["brand"], np.array([brand_key(b) for b in brands], np.uint64))
    return keep


class PlaceSearch:
    def __init__(self, redis: Redis, index: GeoIndex | None = None):
        self.redis = redis
        self.index = index or GeoIndex(redis)

    def nearby(self, lat: float, lng: float, radius_m: float, limit: int,
               categories: list[str] | None = None) -> list[dict]:
        """Places within `radius_m` of (lat, lng), nearest first."""
        records = self.index.places_in(radius_cells(lat, lng, radius_m))
        records = take(records, _wanted(records, categories, None))
        _, _, distance = WGS84.inv(np.full(len(records), lng), np.full(len(records), lat),
                                   records["lng"], records["lat"])
        inside = distance <= radius_m
        records, distance = take(records, inside), distance[inside]
        order = np.lexsort((records["place_id"], distance))
        return self._answer(take(records, order), {"distance_m": distance[order]}, limit)

    def along_route(self, route: Route, corridor_m: float, limit: int,
                    categories: list[str] | None = None,
                    brands: list[str] | None = None) -> list[dict]:
        """Places within `corridor_m` of the route, in order along it. Distances along are
        measured from the route's start (for a route from `remaining_from`, from the car)."""
        found = self.index.places_by_cell(corridor_cells(route, corridor_m))
        wanted = _wanted(found.records, categories, brands)
        records = take(found.records, wanted)
        located = route.locate(records["lat"], records["lng"], corridor_m,
                               cell_groups(found.cells, found.counts).keep(wanted))
        inside = located.offset_m <= corridor_m
        records, located = take(records, inside), located.take(inside)
        order = np.lexsort((records["place_id"], located.along_m))
        records, offset = take(records, order), located.offset_m[order]
        along = located.along_m[order] - route.along_m[0]
        detour = detour_m(offset)
        return self._answer(records, {
            "distance_along_route_m": along, "offset_m": offset,
            "side": np.where(located.side[order] < 0, "left", "right"),
            "detour_m": detour, "detour_s": detour / DETOUR_SPEED_MS}, limit)

    def _answer(self, records: np.ndarray, measures: dict[str, np.ndarray],
                limit: int) -> list[dict]:
        """The first `limit` places with their documents, dropping any record whose place was
        deleted or moved since it was filed (possible only while a write is in flight)."""
        count = min(len(records), _with_spare(limit))
        place_ids = [pid.decode() for pid in records["place_id"][:count]]
        docs = self.place_documents(place_ids)
        where = list(zip(records["lat"][:count].tolist(), records["lng"][:count].tolist(),
                         strict=True))
        columns = {name: values[:count].tolist() for name, values in measures.items()}
        items = []
        for i, place_id in enumerate(place_ids):
            doc = docs.get(place_id)
            if doc is None or (doc["lat"], doc["lng"]) != where[i]:
                continue
            item = {"place_id": doc["id"], "name": doc["name"], "category": doc["category"],
                    "brand": doc.get("brand"), "lat": doc["lat"], "lng": doc["lng"]}
            for name, values in columns.items():
                item[name] = values[i]
            items.append(item)
            if len(items) == limit:
                break
        return items

    def place_documents(self, place_ids: list[str]) -> dict[str, dict]:
        """Place documents by id, one HMGET per merchant, all in one round trip."""
        by_owner: dict[str, list[str]] = defaultdict(list)
        for pid in place_ids:
            by_owner[keys.owner_of(pid) or keys.SHARED_MERCHANT].append(pid)
        with self.redis.pipeline(transaction=False) as pipe:
            for owner, ids in by_owner.items():
                pipe.hmget(keys.places(owner), ids)
            found = pipe.execute()
        return {pid: orjson.loads(raw)
                for ids, raws in zip(by_owner.values(), found, strict=True)
                for pid, raw in zip(ids, raws, strict=True) if raw is not None}
