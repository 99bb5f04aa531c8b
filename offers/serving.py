"""Which offers a car can be shown: ahead of it, valid and open when it gets there, within its
budget. Retrieval and the serving rules run on numpy arrays of index records; the final check
of a shortlist against the catalogue and the budget counters is one pipelined round trip.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from numba import njit
from redis import Redis

from geo.cells import cell_groups, corridor_cells, radius_cells
from geo.earth import WGS84, distance_m
from geo.route import Route
from ranking import Candidates

from . import geo_index, keys
from .catalogue import offer_state
from .geo_index import (
    CATEGORIES,
    OFFER_KEY,
    PLACE_KEY,
    GeoIndex,
    ids_of,
    mask_digest,
    offer_key_of,
    offer_keys,
    take,
)
from .hours import is_open_exactly, local_slot, serving_slots, zone_id, zone_name
from .redemptions import driver_key
from .scripts import run_pipelined
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


# KEYS: a merchant's offers hash and places hash, then per offer its three counters (total,
# the arrival's local day, per driver). ARGV: the driver key, then per offer its id and its
# place id. Answers per offer: the offer and place documents (nil when gone) and the three
# counts. Read-only.
_SHORTLIST_CHECK = """
local out = {}
for i = 1, (#ARGV - 1) / 2 do
  local c = 2 + 3 * (i - 1)
  out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[2 * i]) or false
  out[#out + 1] = redis.call('HGET', KEYS[2], ARGV[2 * i + 1]) or false
  out[#out + 1] = redis.call('GET', KEYS[c + 1]) or false
  out[#out + 1] = redis.call('GET', KEYS[c + 2]) or false
  out[#out + 1] = redis.call('HGET', KEYS[c + 3], ARGV[1]) or false
end
return out
"""


@dataclass(frozen=True)
class Shortlisted:
    offer: dict
    place: dict


class Refused(enum.Enum):
    """Why the final check refused a record: its offer, wherever it is (gone, paused, its
    budget, today's cap or this driver's limit used up), or the offer at this place (the place
    gone or moved, closed or the offer not valid at the arrival there, the record behind the
    documents), where another of its places may pass."""

    OFFER = "offer"
    PLACE = "place"


class OfferServing:
    def __init__(self, redis: Redis, index: GeoIndex | None = None):
        self.redis = redis
        self.index = index or GeoIndex(redis)
        self._check = redis.register_script(_SHORTLIST_CHECK)

    def candidates(self, trip: Trip, categories: list[str] | None = None,
                   max_detour_s: float | None = None, also: Sequence[Callable] = (),
                   driver: str | None = None) -> tuple[Candidates, np.ndarray, list]:
        """Every live offer record the car could be shown, with its geo measures, the index
        records behind them (row for row), and the replies to `also`: other reads queued on
        the index read's round trip (`GeoIndex.offers_by_cell`). With the `driver`'s key,
        without the offers whose per-driver limit they have used up (read on that round trip
        too)."""
        if driver is not None:
            also = [*also, lambda pipe: pipe.hgetall(keys.driver_used_up(driver))]
        if trip.route is not None:
            found = self.index.offers_by_cell(corridor_cells(trip.route, trip.corridor_m), also)
            records = found.records
            # Exact distances along: a route that comes back near itself has two candidates,
            # and arrival times decide validity and opening hours.
            located = trip.route.locate(records["lat"], records["lng"], trip.corridor_m,
                                        cell_groups(found.cells, found.counts))
            offset = located.offset_m
            keep = offset <= trip.corridor_m
            along = located.along_m - trip.route.along_m[0]
            detour = detour_m(offset)
            eta = along / trip.cruise_ms + ROAD_FACTOR * offset / DETOUR_SPEED_MS
            distance = None  # from the car: measured for the final candidates only
        else:
            found = self.index.offers_by_cell(radius_cells(trip.lat, trip.lng, trip.radius_m),
                                              also)
            records = found.records
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
        replies = found.also
        if driver is not None:
            replies, used_up = replies[:-1], replies[-1]
            if used_up:
                keep &= ~_used_up_by(records, used_up)
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
        is_open = self.index.open_at(records["serving"][rows], slot)
        rows, slot = rows[is_open], slot[is_open]
        records = take(records, rows)
        if distance is None:
            distance = distance_m(trip.lat, trip.lng, records["lat"], records["lng"],
                                  located.ecef[rows])
        else:
            distance = distance[rows]
        return Candidates(
            place_key=np.ascontiguousarray(records["place"]).view(f"S{PLACE_KEY.itemsize}"),
            category=records["category"].astype(np.intp), brand=records["brand"],
            value_estimate=records["value_estimate"].astype(float),
            discount_kind=records["discount_kind"].astype(np.intp),
            discount_value=records["discount_value"].astype(float),
            price_level=records["price_level"].astype(np.intp), distance_m=distance,
            along_m=along[rows], detour_s=detour_s[rows], eta_s=eta[rows],
            expires_in_s=records["valid_until"] - arrival[rows], arrival_slot=slot,
        ), records, replies

    def servable(self, records: np.ndarray, eta_s: np.ndarray, trip: Trip, fleet_id: str,
                 driver_id: str) -> list[Shortlisted | Refused]:
        """Check a shortlist against the catalogue and the budgets, in one round trip: the
        offer still live at arrival, its place unmoved and open (exactly, for rules a weekly
        mask cannot hold), and its budget, today's cap and this driver's limit not used up."""
        driver = driver_key(fleet_id, driver_id)
        arrivals = [datetime.fromtimestamp(trip.at.timestamp() + eta, UTC) for eta in eta_s]
        offer_ids, place_ids = ids_of(records)
        # One script per merchant reads its offers, their places (an offer's places are in its
        # merchant's catalogue) and their counters: a command per merchant, not five per row
        # (each command costs the client more than it costs Redis).
        by_merchant: dict[str, list[int]] = defaultdict(list)
        for i, offer_id in enumerate(offer_ids):
            by_merchant[keys.owner_of(offer_id) or keys.SHARED_MERCHANT].append(i)
        commands = []
        for merchant, rows in by_merchant.items():
            counters, args = [], [driver]
            for i in rows:
                day = arrivals[i].astimezone(ZoneInfo(zone_name(records["cap_zone"][i])))
                counters += [keys.offer_redeemed(merchant, offer_ids[i]),
                             keys.offer_redeemed_on(merchant, offer_ids[i],
                                                    day.date().isoformat()),
                             keys.offer_redeemed_by(merchant, offer_ids[i])]
                args += [offer_ids[i], place_ids[i]]
            commands.append(("EVALSHA", self._check.sha, 2 + len(counters),
                             keys.offers(merchant), keys.places(merchant), *counters, *args))
        replies: list = [None] * len(records)
        found = run_pipelined(self.redis, self._check, commands)
        for rows, reply in zip(by_merchant.values(), found, strict=True):
            for k, i in enumerate(rows):
                replies[i] = reply[5 * k: 5 * k + 5]
        return [_servable(record, arrivals[i], offer, place, *(int(c or 0) for c in counts))
                for i, (record, (offer, place, *counts)) in enumerate(
                    zip(records, replies, strict=True))]  # the shortlist only: a few dozen rows


def _used_up_by(records: np.ndarray, used_up: dict[bytes, bytes]) -> np.ndarray:
    """Rows whose offer the driver has used up: listed in their `used_up` (offer id → the
    per-driver limit they reached, then `:` and until when it is kept) with the record's limit
    at most that. A limit raised since serves the offer again; records without a limit they
    can say (`driver_limit` 0) are left to the final check."""
    listed = {offer_key_of(offer.decode()): int(noted.partition(b":")[0])
              for offer, noted in used_up.items()}
    listed.pop(None, None)
    if not listed:
        return np.zeros(len(records), bool)
    wanted = np.array(list(listed), f"S{OFFER_KEY.itemsize}")
    reached = np.array(list(listed.values()))
    order = np.argsort(wanted)
    wanted, reached = wanted[order], reached[order]
    offers = offer_keys(records, np.arange(len(records)))
    at = np.searchsorted(wanted, offers).clip(max=len(wanted) - 1)
    limit = records["driver_limit"]
    return (wanted[at] == offers) & (limit > 0) & (limit <= reached[at])


def _servable(record, arrival: datetime, raw_offer, raw_place, total: int, today: int,
              mine: int) -> Shortlisted | Refused:
    if raw_offer is None:
        return Refused.OFFER
    if raw_place is None:
        return Refused.PLACE
    offer, place = orjson.loads(raw_offer), orjson.loads(raw_place)
    state = offer_state(offer, arrival)
    if state == "paused":
        return Refused.OFFER
    if state != "active" or place["id"] not in offer["place_ids"]:
        return Refused.PLACE  # not valid at this arrival, or no longer offered here
    if (place["lat"], place["lng"]) != (record["lat"], record["lng"]):
        return Refused.PLACE
    # A record whose hours are not the documents' own (an edit's index write under way, for
    # milliseconds) filtered on other hours or another zone: the documents' are then checked
    # exactly, so the offer is neither served closed nor left out while open.
    slots, exact = serving_slots(place.get("opening_hours"), offer.get("schedule"))
    if record["serving"] != mask_digest(slots) or record["zone"] != zone_id(place["timezone"]):
        exact = False
    budget = offer.get("budget") or {}
    limits = ((budget.get("max_redemptions"), total), (budget.get("daily_max"), today),
              (offer.get("per_driver_limit"), mine))
    if any(limit and used >= limit for limit, used in limits):
        return Refused.OFFER
    position = (place["lat"], place["lng"])
    if not exact and not (
            is_open_exactly(place.get("opening_hours"), place["timezone"], arrival, position)
            and is_open_exactly(offer.get("schedule"), place["timezone"], arrival, position)):
        return Refused.PLACE
    return Shortlisted(offer, place)


def best_of_each(key: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The row of each key's best score (the earliest among equals), in row order: one item
    per place or per offer. `key` holds fixed-width bytes per row (`geo_index.PLACE_KEY`,
    `geo_index.OFFER_KEY`)."""
    n, width = len(key), -(-key.itemsize // 8) * 8
    words = np.zeros((n, width), np.uint8)
    words[:, :key.itemsize] = np.ascontiguousarray(key).view(np.uint8).reshape(n, key.itemsize)
    # Sorted here, not in the compiled loop: sorts inside compiled loops gave wrong rankings
    # in this suite (tests/test_compiled.py).
    return np.sort(_best_of_each(words.view("<u8"), np.asarray(scores, np.float64)))


@njit(cache=True)
def _best_of_each(words, scores):
    """One pass with an open-addressing table keyed by each row's words (a multiply-xor hash,
    rows compared word by word on a match): thousands of candidates in tens of microseconds,
    where sorting their 35-byte ids took a millisecond."""
    n, width = words.shape
    size = 1
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, np.int64)  # per slot: the best row so far of one place
    for i in range(n):
        h = np.uint64(0)
        for j in range(width):
            h = (h ^ words[i, j]) * np.uint64(0x9E3779B97F4A7C15)
        slot = np.int64((h >> np.uint64(32)) & np.uint64(size - 1))
        while True:
            k = table[slot]
            if k < 0:
                table[slot] = i
                break
            same = True
            for j in range(width):
                if words[k, j] != words[i, j]:
                    same = False
                    break
            if same:  # a better score replaces; any score replaces an unknown (nan) one
                if scores[i] > scores[k] or (np.isnan(scores[k]) and not np.isnan(scores[i])):
                    table[slot] = i
                break
            slot = (slot + 1) & (size - 1)
    return table[table >= 0]


def warm_up() -> None:
    """Compile the one-per-place pass, the ordering of cells read, the arrival slots and the
    serving masks' lookup (or load them from numba's cache) before any request."""
    best_of_each(np.zeros(2, PLACE_KEY).view(f"S{PLACE_KEY.itemsize}"), np.zeros(2))
    geo_index.warm_up()
    local_slot(np.full(2, zone_id("UTC"), np.uint32), np.zeros(2))
