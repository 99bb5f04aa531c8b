"""The geo index: places and live offers filed under H3 cells, as fixed-size binary records.

Each cell is one Redis string: its records packed back to back, so a search reads all its cells
with one `MGET` per region (one round trip) and decodes every candidate at once with
`numpy.frombuffer`; no candidate is ever parsed on its own. (Hashes of one field per record
cost 7x more to read: Redis and the client then handle every record as a reply of its own.)
Writes go through one Lua script per region that rewrites the cells it touches atomically. A place's
record sits in the cell of its position; an offer has one record per place it is valid at,
carrying what serving filters on (position, validity, timezone, and the digest of its weekly
serving slots, whose few distinct masks sit in one hash and a per-process cache) and what
ranking uses (value, discount, category, price level).

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
from typing import NamedTuple

import numpy as np
from redis import Redis

from geo.cells import cell_of, region_of, regions_of

from . import keys
from .hours import MASK_BYTES, open_at, serving_slots, zone_id
from .scan import unlink_matching

CATEGORIES = ("restaurant", "cafe", "fast_food", "bar", "fuel", "ev_charging",
              "convenience", "supermarket", "car_wash", "parking", "other")
DISCOUNT_KINDS = ("percent", "amount", "per_unit")

# A record starts with its identity, which is what a write matches on. A place's is its id,
# padded with NULs to 48 bytes. An offer's is compact: ids are `<o|p>.<merchant>.<16 hex
# digits>` (`keys.id_parts`) and an offer's places are its merchant's, so the merchant, the
# place's digits and the offer's digits name both ids in 43 bytes, not two 48-byte strings.
# Fewer bytes per candidate is the corridor read's main cost, in Redis and in the client.
ID_BYTES = 48
PLACE_RECORD = np.dtype([
    ("place_id", f"S{ID_BYTES}"), ("lat", "<f8"), ("lng", "<f8"), ("brand", "<u8"),
    ("category", "u1"),
])
PLACE_KEY = np.dtype([  # which place: one item per place compares these
    ("merchant", f"S{keys.MAX_MERCHANT_ID}"), ("external", "u1"), ("digits", "<u8"),
])
OFFER_IDENTITY = np.dtype([("place", PLACE_KEY), ("offer", "<u8")])
OFFER_RECORD = np.dtype([
    ("place", PLACE_KEY), ("offer", "<u8"),
    ("lat", "<f8"), ("lng", "<f8"), ("valid_from", "<f8"), ("valid_until", "<f8"),
    ("brand", "<u8"), ("value_estimate", "<f4"), ("discount_value", "<f4"),
    ("category", "u1"), ("discount_kind", "u1"), ("price_level", "u1"), ("hours_exact", "u1"),
    ("zone", "<u4"), ("cap_zone", "<u4"),
    ("serving", "<u8"),  # its weekly serving mask's digest (`GeoIndex.serving_masks`)
])

_RECORD_BY_IDENTITY = {ID_BYTES: PLACE_RECORD, OFFER_IDENTITY.itemsize: OFFER_RECORD}
assert len(_RECORD_BY_IDENTITY) == 2, "record kinds are told apart by their identity's size"
MASK_CACHE_LIMIT = 100_000  # distinct serving masks a process keeps (8.4 MB)


class Entry(NamedTuple):
    key: str                    # the cell's key
    identity: bytes
    record: bytes | None        # None removes the record
    mask: bytes | None = None   # an offer record's serving mask, filed under its digest

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


def offer_identity(offer_id: str, place_id: str) -> tuple:
    """The identity fields of an offer's record at one of its places."""
    offer, place = keys.id_parts(offer_id), keys.id_parts(place_id)
    if offer is None or place is None or offer[0] != "o" or place[0] != "p" \
            or offer[1] != place[1]:
        raise ValueError(f"offer {offer_id} at place {place_id}: not ids of one merchant")
    return (place[1], place[2], place[3]), offer[3]


def ids_of(records: np.ndarray) -> tuple[list[str], list[str]]:
    """The offer ids and place ids of offer records (a shortlist's: a Python loop)."""
    place = records["place"]
    merchants = [m.decode() for m in place["merchant"]]
    return ([keys.object_id("o", m, False, d)
             for m, d in zip(merchants, records["offer"].tolist(), strict=True)],
            [keys.object_id("p", m, bool(x), d) for m, x, d in
             zip(merchants, place["external"].tolist(), place["digits"].tolist(), strict=True)])


def take(records: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`records[rows]` (indices or a mask) for packed records: as opaque bytes numpy copies a
    row in one go rather than field by field, many times faster."""
    opaque = records.view(f"V{records.dtype.itemsize}")
    return opaque[rows].view(records.dtype)


def mask_digest(mask: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(mask, digest_size=8).digest(), "little")


def place_entry(place: dict, remove: bool = False) -> Entry:
    record = None
    if not remove:
        record = np.array([(place["id"], place["lat"], place["lng"],
                            brand_key(place.get("brand")), CATEGORIES.index(place["category"]))],
                          dtype=PLACE_RECORD).tobytes()
    return Entry(_cell_key(keys.cell_places, place), place["id"].encode().ljust(ID_BYTES, b"\0"),
                 record)


def offer_entries(offer: dict, places: dict[str, dict], remove: bool = False) -> list[Entry]:
    """One entry per place of the offer; a paused offer's entries are removals."""
    remove = remove or offer["status"] != "active"
    discount = offer["discount"]
    entries = []
    for place_id in offer["place_ids"]:
        place = places[place_id]
        identity = offer_identity(offer["id"], place_id)
        record = slots = None
        if not remove:
            slots, exact = serving_slots(place.get("opening_hours"), offer.get("schedule"))
            record = np.array([(
                *identity, place["lat"], place["lng"], _epoch(offer["valid_from"], 0.0),
                _epoch(offer.get("valid_until"), np.inf), brand_key(place.get("brand")),
                offer.get("value_estimate") or 0.0, discount["value"],
                CATEGORIES.index(offer["category"]), DISCOUNT_KINDS.index(discount["kind"]),
                (place.get("attributes") or {}).get("price_level") or 0, exact,
                zone_id(place["timezone"]), zone_id(offer["timezone"]), mask_digest(slots),
            )], dtype=OFFER_RECORD).tobytes()
        entries.append(Entry(_cell_key(keys.cell_offers, place),
                             np.array([identity], dtype=OFFER_IDENTITY).tobytes(), record,
                             slots))
    return entries


class GeoIndex:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._apply = redis.register_script(_APPLY)
        # The serving masks this process has read: their digests sorted, each one's row in
        # the table (row 0 stays all zeros: never served, for a digest Redis does not know),
        # so a candidate's mask is found by a binary search, not a dict lookup per row.
        self._mask_digests = np.empty(0, np.uint64)
        self._mask_rows = np.empty(0, np.intp)
        self._mask_table = np.zeros((64, MASK_BYTES), np.uint8)

    def apply(self, removals: Iterable[Entry], additions: Iterable[Entry]) -> None:
        """Remove then add entries: one script per region hash tag and record kind (atomic),
        so a record moving between cells of one region never disappears or shows twice."""
        additions = list(additions)
        batches: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for key, identity, record, _ in itertools.chain(removals, additions):
            batches[key[: key.index("}") + 1], len(identity)][key].append((identity, record))
        if not batches:
            return
        masks = {mask_digest(e.mask).to_bytes(8, "little"): e.mask for e in additions if e.mask}
        if masks:  # before any record that names them, so a reader always finds them
            self.redis.hset(keys.SERVING_MASKS, mapping=masks)
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
        """Remove every cell of the index and the masks they name (before a full reindex)."""
        for pattern in ("{g:*}:places:*", "{g:*}:offers:*"):
            unlink_matching(self.redis, pattern)
        self.redis.unlink(keys.SERVING_MASKS)

    def serving_masks(self, digests: np.ndarray) -> np.ndarray:
        """The weekly serving masks (rows × MASK_BYTES) that records name by digest. A digest
        Redis does not know (its mask deleted under a live record) reads as never served."""
        rows = self._mask_rows_of(digests)  # first: it may grow the table
        return self._mask_table[rows]

    def open_at(self, digests: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Whether each record's serving mask (by digest) has its weekly slot set."""
        rows = self._mask_rows_of(digests)
        return open_at(self._mask_table, slots, rows)

    def _mask_rows_of(self, digests: np.ndarray) -> np.ndarray:
        """Each digest's row of the mask table: from this process's cache, with one HMGET
        for digests it has not seen (masks are content-addressed: a cached one never
        changes). Digests Redis does not know are asked again next time, not cached."""
        rows = self._cached_mask_rows(digests)
        missing = rows < 0
        if missing.any():
            wanted = np.unique(digests[missing])
            if len(self._mask_digests) + len(wanted) > MASK_CACHE_LIMIT:
                self._mask_digests = np.empty(0, np.uint64)
                self._mask_rows = np.empty(0, np.intp)
                wanted = np.unique(digests)
            found = self.redis.hmget(keys.SERVING_MASKS,
                                     [d.to_bytes(8, "little") for d in wanted.tolist()])
            known = [(d, m) for d, m in zip(wanted.tolist(), found, strict=True)
                     if m is not None]
            start = 1 + len(self._mask_digests)  # row 0 is the never-served mask
            if start + len(known) > len(self._mask_table):
                grown = np.zeros((2 * (start + len(known)), MASK_BYTES), np.uint8)
                grown[:start] = self._mask_table[:start]
                self._mask_table = grown
            for row, (_, mask) in enumerate(known, start=start):
                self._mask_table[row] = np.frombuffer(mask, np.uint8)
            digests_now = np.concatenate([self._mask_digests,
                                          np.array([d for d, _ in known], np.uint64)])
            rows_now = np.concatenate([self._mask_rows,
                                       np.arange(start, start + len(known), dtype=np.intp)])
            order = np.argsort(digests_now)
            self._mask_digests, self._mask_rows = digests_now[order], rows_now[order]
            rows = self._cached_mask_rows(digests)
        return np.maximum(rows, 0)

    def _cached_mask_rows(self, digests: np.ndarray) -> np.ndarray:
        """Rows of cached digests, -1 for the others."""
        if len(self._mask_digests) == 0:
            return np.full(len(digests), -1, np.intp)
        where = np.minimum(np.searchsorted(self._mask_digests, digests),
                           len(self._mask_digests) - 1)
        return np.where(self._mask_digests[where] == digests, self._mask_rows[where], -1)

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

