"""Which offers a car can be shown: ahead of it, valid and open when it gets there, within its
budget. Retrieval and the serving rules run on numpy arrays of index records; the final check
of a shortlist against the catalogue and the budget counters is one pipelined round trip.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from redis import Redis

from geo.cells import corridor_cells, radius_cells
from geo.earth import WGS84, distance_m
from geo.route import Route
from ranking import Candidates

from . import keys
from .catalogue import offer_state
from .geo_index import CATEGORIES, GeoIndex
from .hours import is_open_exactly, local_slot, open_at, zone_name
from .redemptions import driver_key
from .search import DETOUR_SPEED_MS, ROAD_FACTOR, detour_m

DEFAULT_SPEED_KMH = 50.0  # when the car does not say, or is crawling in traffic
MIN_SPEED_KMH = 20.0


@dataclass(frozen=True)
class Trip:
    """Where the car is and where it is going, as the recommendation request says."""

    lat: float
    lng: float
    at: datetime
    route: Route | None = None        # already cut to what is ahead of the car
    corridor_m: float = 1000.0
    radius_m: float = 2000.0
    heading_deg: float | None = None
    speed_kmh: float | None = None

    @property
    def cruise_ms(self) -> float:
        speed = self.speed_kmh if self.speed_kmh and self.speed_kmh >= MIN_SPEED_KMH \
            else DEFAULT_SPEED_KMH
        return speed / 3.6


@dataclass(frozen=True)
class Shortlisted:
    offer: dict
    place: dict


class OfferServing:
    def __init__(self, redis: Redis):
        self.redis = redis
        self.index = GeoIndex(redis)

    def candidates(self, trip: Trip, categories: list[str] | None = None,
                   max_detour_s: float | None = None) -> tuple[Candidates, np.ndarray]:
        """Every live offer record the car could be shown, with its geo measures, and the
        index records behind them (row for row)."""
        if trip.route is not None:
            records = self.index.offers_in(corridor_cells(trip.route, trip.corridor_m))
            # Exact distances along: a route that comes back near itself has two candidates,
            # and arrival times decide validity and opening hours.
            located = trip.route.locate(records["lat"], records["lng"], trip.corridor_m)
            offset = located.offset_m
            keep = offset <= trip.corridor_m
            along = located.along_m - trip.route.along_m[0]
            detour = detour_m(offset)
            eta = along / trip.cruise_ms + ROAD_FACTOR * offset / DETOUR_SPEED_MS
            distance = None  # from the car: measured for the final candidates only
        else:
            records = self.index.offers_in(radius_cells(trip.lat, trip.lng, trip.radius_m))
            distance = distance_m(trip.lat, trip.lng, records["lat"], records["lng"])
            keep = distance <= trip.radius_m
            along = np.full(len(records), np.nan)
            detour = ROAD_FACTOR * distance
            eta = detour / trip.cruise_ms
            if trip.heading_deg is not None:
                # Without a route, "ahead" is within 90 degrees of the heading (or right here).
                n = len(records)
                azimuth, _, _ = WGS84.inv(np.full(n, trip.lng), np.full(n, trip.lat),
                                          records["lng"], records["lat"])
                turn = np.abs((azimuth - trip.heading_deg + 180.0) % 360.0 - 180.0)
                keep &= (turn <= 90.0) | (distance < 50.0)
        if categories:
            keep &= np.isin(records["category"], [CATEGORIES.index(c) for c in categories])
        detour_s = detour / DETOUR_SPEED_MS
        if max_detour_s is not None:
            keep &= detour_s <= max_detour_s
        arrival = trip.at.timestamp() + eta
        keep &= (records["valid_from"] <= arrival) & (arrival < records["valid_until"])
        # Columns above, rows from here: the weekly mask and the copy of whole records only
        # for what is left.
        rows = np.flatnonzero(keep)
        slot = local_slot(records["zone"][rows], arrival[rows])
        is_open = open_at(records["serving"][rows], slot)
        rows, slot = rows[is_open], slot[is_open]
        records = records[rows]
        if distance is None:
            distance = distance_m(trip.lat, trip.lng, records["lat"], records["lng"])
        else:
            distance = distance[rows]
        return Candidates(
            offer_id=records["offer_id"], place_id=records["place_id"],
            category=records["category"].astype(np.intp), brand=records["brand"],
            value_estimate=records["value_estimate"].astype(float),
            discount_kind=records["discount_kind"].astype(np.intp),
            discount_value=records["discount_value"].astype(float),
            price_level=records["price_level"].astype(np.intp), distance_m=distance,
            along_m=along[rows], detour_s=detour_s[rows], eta_s=eta[rows],
            expires_in_s=records["valid_until"] - arrival[rows], arrival_slot=slot,
        ), records

    def servable(self, records: np.ndarray, eta_s: np.ndarray, trip: Trip, fleet_id: str,
                 driver_id: str) -> list[Shortlisted | None]:
        """Check a shortlist against the catalogue and the budgets, in one round trip: the
        offer still live at arrival, its place unmoved and open (exactly, for rules a weekly
        mask cannot hold), and its budget, today's cap and this driver's limit not used up."""
        driver = driver_key(fleet_id, driver_id)
        arrivals = [datetime.fromtimestamp(trip.at.timestamp() + eta, UTC) for eta in eta_s]
        offer_ids = [o.decode() for o in records["offer_id"]]
        place_ids = [p.decode() for p in records["place_id"]]
        merchants = [keys.owner_of(o) or keys.SHARED_MERCHANT for o in offer_ids]
        # One command per merchant for offers and counters (its keys share a hash tag), one
        # per place owner, and each offer's per-driver count: a round trip of a few dozen
        # commands, not five per row.
        by_merchant: dict[str, list[int]] = defaultdict(list)
        by_owner: dict[str, list[int]] = defaultdict(list)
        for i, (merchant, place_id) in enumerate(zip(merchants, place_ids, strict=True)):
            by_merchant[merchant].append(i)
            by_owner[keys.owner_of(place_id) or merchant].append(i)
        with self.redis.pipeline(transaction=False) as pipe:
            for merchant, rows in by_merchant.items():
                pipe.hmget(keys.offers(merchant), [offer_ids[i] for i in rows])
                counters = []
                for i in rows:
                    day = arrivals[i].astimezone(ZoneInfo(zone_name(records["cap_zone"][i])))
                    counters += [keys.offer_redeemed(merchant, offer_ids[i]),
                                 keys.offer_redeemed_on(merchant, offer_ids[i],
                                                        day.date().isoformat())]
                pipe.mget(counters)
            for owner, rows in by_owner.items():
                pipe.hmget(keys.places(owner), [place_ids[i] for i in rows])
            for offer_id, merchant in zip(offer_ids, merchants, strict=True):
                pipe.hget(keys.offer_redeemed_by(merchant, offer_id), driver)
            answers = iter(pipe.execute())
        offers, totals, todays, places = {}, {}, {}, {}
        for rows in by_merchant.values():
            found, counts = next(answers), next(answers)
            for k, i in enumerate(rows):
                offers[i], totals[i], todays[i] = found[k], counts[2 * k], counts[2 * k + 1]
        for rows in by_owner.values():
            for i, raw in zip(rows, next(answers), strict=True):
                places[i] = raw
        out: list[Shortlisted | None] = []
        for i, record in enumerate(records):  # the shortlist only: a few dozen rows
            out.append(_servable(record, arrivals[i], offers[i], places[i],
                                 int(totals[i] or 0), int(todays[i] or 0),
                                 int(next(answers) or 0)))
        return out


def _servable(record, arrival: datetime, raw_offer, raw_place, total: int, today: int,
              mine: int) -> Shortlisted | None:
    if raw_offer is None or raw_place is None:
        return None
    offer, place = orjson.loads(raw_offer), orjson.loads(raw_place)
    if offer_state(offer, arrival) != "active" or place["id"] not in offer["place_ids"]:
        return None
    if (place["lat"], place["lng"]) != (record["lat"], record["lng"]):
        return None
    budget = offer.get("budget") or {}
    limits = ((budget.get("max_redemptions"), total), (budget.get("daily_max"), today),
              (offer.get("per_driver_limit"), mine))
    if any(limit and used >= limit for limit, used in limits):
        return None
    if not record["hours_exact"] and not (
            is_open_exactly(place.get("opening_hours"), place["timezone"], arrival)
            and is_open_exactly(offer.get("schedule"), place["timezone"], arrival)):
        return None
    return Shortlisted(offer, place)

