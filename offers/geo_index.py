"""The geo index: places and live offers filed under H3 cells, as fixed-size binary records.

A search reads its cells with one pipelined round trip (`HVALS` per cell) and decodes every
candidate at once with `numpy.frombuffer`; no candidate is ever parsed on its own. A place's
record sits in the cell of its position; an offer has one record per place it is valid at,
carrying what serving filters on (position, validity, weekly serving slots, timezone) and what
the baseline ranking uses (value, discount, category).

The catalogue (`offers.catalogue`) stays the source of truth: it writes here after its own
transaction, and searches re-check their final answers against it, so a stale record can delay
nothing and show nothing that was deleted, paused or moved.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import numpy as np
from redis import Redis

from geo.cells import cell_of, region_of

from . import keys
from .hours import MASK_BYTES, serving_slots, zone_id

CATEGORIES = ("restaurant", "cafe", "fast_food", "bar", "fuel", "ev_charging",
              "convenience", "supermarket", "car_wash", "parking", "other")
DISCOUNT_KINDS = ("percent", "amount", "per_unit")

PLACE_RECORD = np.dtype([
    ("lat", "<f8"), ("lng", "<f8"), ("brand", "<u8"), ("category", "u1"), ("place_id", "S48"),
])
OFFER_RECORD = np.dtype([
    ("lat", "<f8"), ("lng", "<f8"), ("valid_from", "<f8"), ("valid_until", "<f8"),
    ("brand", "<u8"), ("value_estimate", "<f4"), ("discount_value", "<f4"),
    ("category", "u1"), ("discount_kind", "u1"), ("price_level", "u1"), ("hours_exact", "u1"),
    ("zone", "<u4"), ("cap_zone", "<u4"), ("serving", "u1", (MASK_BYTES,)),
    ("offer_id", "S48"), ("place_id", "S48"),
])

Entry = tuple[str, str, bytes | None]  # (key, field, record); None removes the field


def brand_key(brand: str | None) -> int:
    """A 64-bit fingerprint of a brand, case-insensitive; 0 for none."""
    if not brand:
        return 0
    digest = hashlib.blake2b(brand.casefold().strip().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def _epoch(iso: str | None, default: float) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else default


def _cell_key(kind, place: dict) -> str:
    cell = cell_of(place["lat"], place["lng"])
    return kind(region_of(cell), cell)


def place_entry(place: dict, remove: bool = False) -> Entry:
    record = None
    if not remove:
        record = np.array([(place["lat"], place["lng"], brand_key(place.get("brand")),
                            CATEGORIES.index(place["category"]), place["id"])],
                          dtype=PLACE_RECORD).tobytes()
    return _cell_key(keys.cell_places, place), place["id"], record


def offer_entries(offer: dict, places: dict[str, dict], remove: bool = False) -> list[Entry]:
    """One entry per place of the offer; a paused offer's entries are removals."""
    remove = remove or offer["status"] != "active"
    discount = offer["discount"]
    entries = []
    for place_id in offer["place_ids"]:
        place = places[place_id]
        field = f"{offer['id']}|{place_id}"
        record = None
        if not remove:
            slots, exact = serving_slots(place.get("opening_hours"), offer.get("schedule"))
            record = np.array([(
                place["lat"], place["lng"], _epoch(offer["valid_from"], 0.0),
                _epoch(offer.get("valid_until"), np.inf), brand_key(place.get("brand")),
                offer.get("value_estimate") or 0.0, discount["value"],
                CATEGORIES.index(offer["category"]), DISCOUNT_KINDS.index(discount["kind"]),
                (place.get("attributes") or {}).get("price_level") or 0, exact,
                zone_id(place["timezone"]), zone_id(offer["timezone"]),
                np.frombuffer(slots, np.uint8),
                offer["id"], place_id,
            )], dtype=OFFER_RECORD).tobytes()
        entries.append((_cell_key(keys.cell_offers, place), field, record))
    return entries


class GeoIndex:
    def __init__(self, redis: Redis):
        self.redis = redis

    def apply(self, removals: Iterable[Entry], additions: Iterable[Entry]) -> None:
        """Remove then add entries: one MULTI per region hash tag, so a record moving between
        cells of one region never disappears or shows twice to a reader."""
        by_region: dict[str, list[Entry]] = defaultdict(list)
        for entry in itertools.chain(removals, additions):
            by_region[entry[0][: entry[0].index("}") + 1]].append(entry)
        for entries in by_region.values():
            with self.redis.pipeline(transaction=True) as pipe:
                for key, field, record in entries:
                    if record is None:
                        pipe.hdel(key, field)
                    else:
                        pipe.hset(key, field, record)
                pipe.execute()

    def clear(self) -> None:
        """Remove every cell of the index (before a full reindex)."""
        for pattern in ("{g:*}:places:*", "{g:*}:offers:*"):
            batch = []
            for key in self.redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    self.redis.unlink(*batch)
                    batch = []
            if batch:
                self.redis.unlink(*batch)

    def places_in(self, cells: list[int]) -> np.ndarray:
        return self._read(keys.cell_places, cells, PLACE_RECORD)

    def offers_in(self, cells: list[int]) -> np.ndarray:
        return self._read(keys.cell_offers, cells, OFFER_RECORD)

    def _read(self, kind, cells: list[int], dtype: np.dtype) -> np.ndarray:
        with self.redis.pipeline(transaction=False) as pipe:
            for cell in cells:
                pipe.hvals(kind(region_of(cell), cell))
            values = pipe.execute()
        return np.frombuffer(b"".join(itertools.chain.from_iterable(values)), dtype=dtype)
