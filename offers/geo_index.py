"""The geo index: places and live offers filed under H3 cells, as fixed-size binary records.

Each cell is one Redis string: its records packed back to back, so a search reads all its cells
with one `MGET` per region (one round trip) and decodes every candidate at once with
`numpy.frombuffer`; no candidate is ever parsed on its own. (Hashes of one field per record
cost 7x more to read: Redis and the client then handle every record as a reply of its own.)
Writes go through one Lua script per region that rewrites the cells it touches atomically. A place's
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

from geo.cells import cell_of, region_of, regions_of

from . import keys
from .hours import MASK_BYTES, serving_slots, zone_id
from .scan import unlink_matching

CATEGORIES = ("restaurant", "cafe", "fast_food", "bar", "fuel", "ev_charging",
              "convenience", "supermarket", "car_wash", "parking", "other")
DISCOUNT_KINDS = ("percent", "amount", "per_unit")

# A record starts with its identity (the place id; the offer and place ids), which is what a
# write matches on. Ids are at most 46 characters (`keys.owner_of`), padded with NULs.
ID_BYTES = 48
PLACE_RECORD = np.dtype([
    ("place_id", f"S{ID_BYTES}"), ("lat", "<f8"), ("lng", "<f8"), ("brand", "<u8"),
    ("category", "u1"),
])
OFFER_RECORD = np.dtype([
    ("offer_id", f"S{ID_BYTES}"), ("place_id", f"S{ID_BYTES}"),
    ("lat", "<f8"), ("lng", "<f8"), ("valid_from", "<f8"), ("valid_until", "<f8"),
    ("brand", "<u8"), ("value_estimate", "<f4"), ("discount_value", "<f4"),
    ("category", "u1"), ("discount_kind", "u1"), ("price_level", "u1"), ("hours_exact", "u1"),
    ("zone", "<u4"), ("cap_zone", "<u4"), ("serving", "u1", (MASK_BYTES,)),
])

_RECORD_BY_IDENTITY = {ID_BYTES: PLACE_RECORD, 2 * ID_BYTES: OFFER_RECORD}
Entry = tuple[str, bytes, bytes | None]  # (cell key, identity, record); None removes it

# KEYS: the cells of one region. ARGV: record size, identity size, then (key index, identity,
# record or "" to remove) triples, removals first. Each touched cell is read once, its records
# kept unless their identity is being written, and the new records appended. A cell with few
# writes is cut around the records found by a plain `string.find` (memory speed); with many,
# one pass over its records is cheaper than a scan per identity.
_APPLY = """
local size, id_size = tonumber(ARGV[1]), tonumber(ARGV[2])
local FIND_LIMIT = 16
local cells = {}
for i = 3, #ARGV, 3 do
  local k, id, record = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local cell = cells[k]
  if not cell then
    cell = {touched = {}, added = {}, order = {}, count = 0}
    cells[k] = cell
  end
  if not cell.touched[id] then cell.count = cell.count + 1 end
  cell.touched[id] = true
  if record == "" then
    cell.added[id] = nil
  else
    if not cell.added[id] then cell.order[#cell.order + 1] = id end
    cell.added[id] = record
  end
end
for k, cell in pairs(cells) do
  local blob = redis.call("GET", KEYS[k]) or ""
  local parts = {}
  if cell.count <= FIND_LIMIT then
    -- a few writes: find each identity (a C scan) and cut around the records found
    local drop = {}
    for id in pairs(cell.touched) do
      local from = 1
      while true do
        local p = string.find(blob, id, from, true)
        if not p then break end
        if (p - 1) % size == 0 then drop[#drop + 1] = p; break end
        from = p + 1
      end
    end
    table.sort(drop)
    local from = 1
    for _, p in ipairs(drop) do
      parts[#parts + 1] = string.sub(blob, from, p - 1)
      from = p + size
    end
    parts[#parts + 1] = string.sub(blob, from)
  else
    -- many writes (bulk loads): one pass over the cell's records
    for p = 1, #blob, size do
      if not cell.touched[string.sub(blob, p, p + id_size - 1)] then
        parts[#parts + 1] = string.sub(blob, p, p + size - 1)
      end
    end
  end
  for _, id in ipairs(cell.order) do
    if cell.added[id] then parts[#parts + 1] = cell.added[id] end
  end
  local value = table.concat(parts)
  if value == "" then
    redis.call("DEL", KEYS[k])
  else
    redis.call("SET", KEYS[k], value)
  end
end
return 0
"""


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


def _identity(*ids: str) -> bytes:
    return b"".join(i.encode().ljust(ID_BYTES, b"\0") for i in ids)


def place_entry(place: dict, remove: bool = False) -> Entry:
    record = None
    if not remove:
        record = np.array([(place["id"], place["lat"], place["lng"],
                            brand_key(place.get("brand")), CATEGORIES.index(place["category"]))],
                          dtype=PLACE_RECORD).tobytes()
    return _cell_key(keys.cell_places, place), _identity(place["id"]), record


def offer_entries(offer: dict, places: dict[str, dict], remove: bool = False) -> list[Entry]:
    """One entry per place of the offer; a paused offer's entries are removals."""
    remove = remove or offer["status"] != "active"
    discount = offer["discount"]
    entries = []
    for place_id in offer["place_ids"]:
        place = places[place_id]
        record = None
        if not remove:
            slots, exact = serving_slots(place.get("opening_hours"), offer.get("schedule"))
            record = np.array([(
                offer["id"], place_id, place["lat"], place["lng"], _epoch(offer["valid_from"], 0.0),
                _epoch(offer.get("valid_until"), np.inf), brand_key(place.get("brand")),
                offer.get("value_estimate") or 0.0, discount["value"],
                CATEGORIES.index(offer["category"]), DISCOUNT_KINDS.index(discount["kind"]),
                (place.get("attributes") or {}).get("price_level") or 0, exact,
                zone_id(place["timezone"]), zone_id(offer["timezone"]),
                np.frombuffer(slots, np.uint8),
            )], dtype=OFFER_RECORD).tobytes()
        entries.append((_cell_key(keys.cell_offers, place), _identity(offer["id"], place_id),
                        record))
    return entries


class GeoIndex:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._apply = redis.register_script(_APPLY)

    def apply(self, removals: Iterable[Entry], additions: Iterable[Entry]) -> None:
        """Remove then add entries: one script per region hash tag and record kind (atomic),
        so a record moving between cells of one region never disappears or shows twice."""
        batches: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for key, identity, record in itertools.chain(removals, additions):
            batches[key[: key.index("}") + 1], len(identity)][key].append((identity, record))
        if not batches:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for (_, identity_size), cells in batches.items():
                size = _RECORD_BY_IDENTITY[identity_size].itemsize
                args: list = [size, identity_size]
                for index, writes in enumerate(cells.values(), start=1):
                    for identity, record in writes:
                        args += [index, identity, record or b""]
                self._apply(keys=list(cells), args=args, client=pipe)
            pipe.execute()

    def clear(self) -> None:
        """Remove every cell of the index (before a full reindex)."""
        for pattern in ("{g:*}:places:*", "{g:*}:offers:*"):
            unlink_matching(self.redis, pattern)

    def places_in(self, cells: list[int]) -> np.ndarray:
        return self._read(keys.cell_places, cells, PLACE_RECORD)

    def offers_in(self, cells: list[int]) -> np.ndarray:
        return self._read(keys.cell_offers, cells, OFFER_RECORD)

    def _read(self, kind, cells: list[int], dtype: np.dtype) -> np.ndarray:
        cells = np.asarray(cells, np.uint64)
        regions = regions_of(cells)
        with self.redis.pipeline(transaction=False) as pipe:
            for region in np.unique(regions).tolist():
                tag = f"{region:x}"
                pipe.mget([kind(tag, cell) for cell in cells[regions == region].tolist()])
            values = pipe.execute()
        return np.frombuffer(b"".join(v for v in itertools.chain.from_iterable(values) if v),
                             dtype=dtype)

