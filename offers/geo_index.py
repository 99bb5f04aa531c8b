"""The geo index: places and live offers filed under H3 cells, as fixed-size binary records.

Each cell is one Redis string: its records packed back to back, so a search decodes every
candidate at once with `numpy.frombuffer`; no candidate is ever parsed on its own. (Hashes of
one field per record cost 7x more to read: Redis and the client then handle every record as a
reply of its own.) Writes go through one Lua script per region that rewrites the cells it
touches atomically and gives each, and the region, a new random version token. A search sends,
per region, the region's version it last saw and the tokens it holds for the cells it did not
read at that version to one read-only script (one round trip for all regions), which answers
with those cells' tokens and the records of the cells whose token differs, atomically, if the
region's version is unchanged; the rest come from this process's memory. Redis sends a
corridor's megabyte of records only for cells that changed, and looks at each cell's version
only in regions written since, which spares its single thread most of a search's work. A place's
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
import os
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import numpy as np
from numba import njit
from redis import Redis
from redis import exceptions as redis_errors

from geo.cells import cell_of, region_of, regions_of

from . import keys
from .hours import MASK_BYTES, open_at, serving_slots, zone_id
from .scan import unlink_matching
from .scripts import run_pipelined

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
OFFER_KEY = np.dtype([  # which offer, whatever its place: one item per offer compares these
    ("merchant", f"S{keys.MAX_MERCHANT_ID}"), ("offer", "<u8"),
])
OFFER_RECORD = np.dtype([
    ("place", PLACE_KEY), ("offer", "<u8"),
    ("lat", "<f8"), ("lng", "<f8"), ("valid_from", "<f8"), ("valid_until", "<f8"),
    ("brand", "<u8"), ("value_estimate", "<f4"), ("discount_value", "<f4"),
    # driver_limit: the offer's per-driver limit if 1-255, else 0 (none, or too large to say
    # here), which a driver's used-up offers are compared with (`serving`). Records filed by
    # releases before it held whether the hours were exact (0 or 1) in this byte.
    ("category", "u1"), ("discount_kind", "u1"), ("price_level", "u1"), ("driver_limit", "u1"),
    ("zone", "<u4"), ("cap_zone", "<u4"),
    ("serving", "<u8"),  # its weekly serving mask's digest (`GeoIndex.open_at`)
])

_RECORD_BY_IDENTITY = {ID_BYTES: PLACE_RECORD, OFFER_IDENTITY.itemsize: OFFER_RECORD}
assert len(_RECORD_BY_IDENTITY) == 2, "record kinds are told apart by their identity's size"
MASK_CACHE_LIMIT = 100_000  # distinct serving masks a process keeps (8.4 MB)
# What a process keeps of the cells it read: their records and the cache's own bookkeeping
# (counted as _CACHED_CELL_BYTES a cell: the entry, its name and token, the bytes object). A
# 200,000-place catalogue's offer cells hold 33 MB of records in all.
CELL_CACHE_BYTES = 128 * 2**20
_CACHED_CELL_BYTES = 250


# How long an index write waits before trying again after a lost connection.
APPLY_RETRY_WAITS_S = (0.05, 0.2, 0.8)


class Entry(NamedTuple):
    key: str                    # the cell's key
    identity: bytes
    record: bytes | None        # None removes the record
    mask: bytes | None = None   # an offer record's serving mask, filed under its digest

# KEYS: the cells of one region, then the region's cell versions hash. ARGV: record size,
# identity size, this write's token, each key's version field (`keys.cell_version_field`, 9
# bytes each, back to back), then (key index, identity, record or "" to remove) triples,
# removals first. Each touched cell is read once, its records kept unless their
# identity is being written, and the new records appended. A cell with few writes is cut
# around the records found by a plain `string.find` (memory speed); with many, one pass over
# its records is cheaper than a scan per identity. Every cell written gets the token as its
# version (an emptied cell loses both), so a reader's cached copy is current iff the tokens match;
# the region's version (`keys.REGION_VERSION_FIELD`) gets it too, so a reader that saw the region
# at this token knows every cell of it it read since is current, while the token stays.
_APPLY = """
local size, id_size, token, fields = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local versions = KEYS[#KEYS]
local FIND_LIMIT = 16
local cells = {}
for i = 5, #ARGV, 3 do
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
  local field = string.sub(fields, 9 * k - 8, 9 * k)
  if value == "" then
    redis.call("DEL", KEYS[k])
    redis.call("HDEL", versions, field)
  else
    redis.call("SET", KEYS[k], value)
    redis.call("HSET", versions, field, token)
  end
end
redis.call("HSET", versions, "REGION_FIELD", token)
if redis.call("HLEN", versions) == 1 then  -- no cell of the region holds records
  redis.call("DEL", versions)
end
return 0
""".replace("REGION_FIELD", keys.REGION_VERSION_FIELD.decode())


# KEYS: one region's cell versions hash, then the cells to check. ARGV: the region version
# the reader holds ("": none, check these cells only), each cell's version field, then the
# version the reader holds for each ("" none). Answers the region's version and 1, then per
# cell its version (nil: no records) and its records when the reader holds another version
# (nil otherwise); or, when the region's version is not the one held, that version and 0, and
# nothing else (the reader then checks every cell: the cells it did not send, which it holds
# from the region at the version it held, may have changed). Read-only and atomic: what it
# answers is the region at one moment. Versions go by HMGET in chunks (Lua's unpack takes a
# few thousand values at most).
_READ = """
local region = redis.call("HGET", KEYS[1], "REGION_FIELD")
if ARGV[1] ~= "" and region ~= ARGV[1] then
  return {region, 0}
end
local n = #KEYS - 1
local out = {region, 1}
for start = 1, n, 1000 do
  local stop = math.min(start + 999, n)
  local tokens = redis.call("HMGET", KEYS[1], unpack(ARGV, start + 1, stop + 1))
  for j = 1, #tokens do
    local i = start + j - 1
    local token = tokens[j]
    out[2 * i + 1] = token
    if token and token ~= ARGV[1 + n + i] then
      out[2 * i + 2] = redis.call("GET", KEYS[1 + i]) or false
    else
      out[2 * i + 2] = false
    end
  end
end
return out
""".replace("REGION_FIELD", keys.REGION_VERSION_FIELD.decode())


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


def offer_keys(records: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The offer of each of `rows` of offer records, as fixed-width bytes (`OFFER_KEY`): the two
    fields taken for those rows, not whole records (a hundred bytes each)."""
    out = np.empty(len(rows), OFFER_KEY)
    out["merchant"], out["offer"] = records["place"]["merchant"][rows], records["offer"][rows]
    return out.view(f"S{OFFER_KEY.itemsize}")


def offer_key_of(offer_id: str) -> bytes | None:
    """An offer id as `offer_keys` gives it for its records; None for anything else."""
    parts = keys.id_parts(offer_id)
    if parts is None or parts[0] != "o":
        return None
    key = np.zeros(1, OFFER_KEY)
    key["merchant"], key["offer"] = parts[1], parts[3]
    return key.view(f"S{OFFER_KEY.itemsize}")[0]


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


# `used_up_until` of an offer whose budget is used up (`catalogue.used_up_until`).
USED_UP_FOREVER = "9999-12-31T23:59:59+00:00"


def offer_entries(offer: dict, places: dict[str, dict], remove: bool = False) -> list[Entry]:
    """One entry per place of the offer; a paused offer's entries are removals, and so are
    those of an offer used up for good. One used up for today is filed as valid from when it
    can be redeemed again (`catalogue.used_up_until`)."""
    used_up = offer.get("used_up_until")
    valid_from = max(_epoch(offer["valid_from"], 0.0), _epoch(used_up, 0.0))
    valid_until = _epoch(offer.get("valid_until"), np.inf)
    remove = (remove or offer["status"] != "active" or used_up == USED_UP_FOREVER
              or valid_from >= valid_until)
    discount = offer["discount"]
    entries = []
    driver_limit = offer.get("per_driver_limit") or 0
    for place_id in offer["place_ids"]:
        place = places[place_id]
        identity = offer_identity(offer["id"], place_id)
        record = slots = None
        if not remove:
            slots, _ = serving_slots(place.get("opening_hours"), offer.get("schedule"))
            record = np.array([(
                *identity, place["lat"], place["lng"], valid_from, valid_until,
                brand_key(place.get("brand")),
                offer.get("value_estimate") or 0.0, discount["value"],
                CATEGORIES.index(offer["category"]), DISCOUNT_KINDS.index(discount["kind"]),
                (place.get("attributes") or {}).get("price_level") or 0,
                driver_limit if driver_limit <= 255 else 0,
                zone_id(place["timezone"]), zone_id(offer["timezone"]), mask_digest(slots),
            )], dtype=OFFER_RECORD).tobytes()
        entries.append(Entry(_cell_key(keys.cell_offers, place),
                             np.array([identity], dtype=OFFER_IDENTITY).tobytes(), record,
                             slots))
    return entries


def side_by_side(cells: list[bytes], dtype: np.dtype) -> list[bytes]:
    """Cells of records with, in each, the records at one position (a place's offers) side by
    side, in the order they were filed otherwise: the route search then measures each position
    once. Done as cells are read from Redis, so cached or not a cell's records come in the same
    order."""
    records = np.frombuffer(b"".join(cells), dtype)
    counts = np.fromiter(map(len, cells), np.int64, len(cells)) // dtype.itemsize
    order = _position_runs(np.ascontiguousarray(records["lat"]).view(np.uint64),
                           np.ascontiguousarray(records["lng"]).view(np.uint64), counts)
    data = take(records, order).tobytes()
    ends = np.cumsum(counts) * dtype.itemsize
    return [data[end - len(cell):end] for cell, end in zip(cells, ends.tolist(), strict=True)]


@njit(cache=True)
def _position_runs(lat_bits, lng_bits, counts):
    """Per run of `counts[c]` records: the order that puts records of equal position (their
    coordinates' bits) together, positions in order of first appearance, records in their
    order within a position. An open-addressing table per run, then a counting sort."""
    order = np.empty(len(lat_bits), np.int64)
    biggest = 0
    for c in counts:
        biggest = max(biggest, c)
    size = 1
    while size < 2 * biggest:
        size *= 2
    slot_row = np.empty(size, np.int64)   # per slot: a record at that position
    slot_rank = np.empty(size, np.int64)  # and the position's rank in its run
    rank = np.empty(len(lat_bits), np.int64)
    start = 0
    for c in counts:
        width = 1
        while width < 2 * c:
            width *= 2
        slot_rank[:width] = -1
        distinct = 0
        for i in range(start, start + c):
            h = (lat_bits[i] * np.uint64(0x9E3779B97F4A7C15)) ^ lng_bits[i]
            s = np.int64((h * np.uint64(0xBF58476D1CE4E5B9)) >> np.uint64(40)) & (width - 1)
            while slot_rank[s] >= 0 and (lat_bits[slot_row[s]] != lat_bits[i]
                                         or lng_bits[slot_row[s]] != lng_bits[i]):
                s = (s + 1) & (width - 1)
            if slot_rank[s] < 0:
                slot_row[s], slot_rank[s] = i, distinct
                distinct += 1
            rank[i] = slot_rank[s]
        first = np.zeros(distinct + 1, np.int64)  # counting sort by rank, stable
        for i in range(start, start + c):
            first[rank[i] + 1] += 1
        for r in range(distinct):
            first[r + 1] += first[r]
        for i in range(start, start + c):
            order[start + first[rank[i]]] = i
            first[rank[i]] += 1
        start += c
    return order


class CellRecords(NamedTuple):
    """Records read from the index, cell by cell: `counts[i]` records of `cells[i]` in turn
    (cells with no records left out), and the replies to what the read was asked to read
    along (`GeoIndex.offers_by_cell`'s `also`)."""

    records: np.ndarray
    cells: list[int]
    counts: np.ndarray
    also: Sequence = ()


class _Masks(NamedTuple):
    """The serving masks a process has read: their digests, each one's row in the table (row 0
    stays all zeros: never served, for a digest Redis does not know), and an open-addressing
    table from digest to row, so thousands of candidates find their masks in one compiled pass
    (numpy's binary search per candidate cost more). Replaced whole, never changed in
    place where a reader could see it."""

    digests: np.ndarray
    rows: np.ndarray
    table: np.ndarray
    slot_digests: np.ndarray
    slot_rows: np.ndarray

    @classmethod
    def of(cls, digests: np.ndarray, rows: np.ndarray, table: np.ndarray) -> _Masks:
        return cls(digests, rows, table, *_digest_slots(digests, rows))

    @classmethod
    def empty(cls) -> _Masks:
        return cls.of(np.empty(0, np.uint64), np.empty(0, np.int64),
                      np.zeros((64, MASK_BYTES), np.uint8))

    def rows_of(self, digests: np.ndarray) -> np.ndarray:
        """Rows of cached digests, -1 for the others."""
        return _rows_of(self.slot_digests, self.slot_rows,
                        np.ascontiguousarray(digests, np.uint64))


@njit(cache=True)
def _digest_slots(digests, rows):
    """The open-addressing table (linear probing, at most half full): per slot a digest and
    its row, -1 for an empty slot."""
    size = 64
    while size < 2 * len(digests):
        size *= 2
    slot_digests = np.zeros(size, np.uint64)
    slot_rows = np.full(size, -1, np.int64)
    for i in range(len(digests)):
        slot = _slot_of(digests[i], size)
        while slot_rows[slot] >= 0 and slot_digests[slot] != digests[i]:
            slot = (slot + 1) & (size - 1)
        slot_digests[slot], slot_rows[slot] = digests[i], rows[i]
    return slot_digests, slot_rows


@njit(cache=True)
def _rows_of(slot_digests, slot_rows, digests):
    size = len(slot_rows)
    out = np.empty(len(digests), np.int64)
    for i in range(len(digests)):
        slot = _slot_of(digests[i], size)
        while slot_rows[slot] >= 0 and slot_digests[slot] != digests[i]:
            slot = (slot + 1) & (size - 1)
        out[i] = slot_rows[slot]
    return out


@njit(cache=True, inline="always")
def _slot_of(digest, size):
    """A slot from a digest's top bits after a multiply (Fibonacci hashing)."""
    return np.int64((digest * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & (size - 1)


_TRUSTED = object()  # marks a cached cell the read script is not asked about


class _RegionRead:
    """One region's part of a read: its cells, their version fields, this process's cached
    copy of each (None: none), and the region version those marked trusted depend on."""

    def __init__(self, tag: str, cells: list[int], fields: list[bytes], held: list,
                 seen: bytes | None, kind):
        self.tag, self.cells, self.fields, self.held, self.seen = tag, cells, fields, held, seen
        self._kind = kind

    def check_all(self) -> None:
        """Trust nothing: every cell's version is checked."""
        self.seen = None
        self.held = [None if c is None else (c[0], c[1], None) for c in self.held]

    def command(self, sha: str) -> tuple:
        """EVALSHA of the read script (`sha`) for this region."""
        asked = [i for i, c in enumerate(self.held) if c is None or c[2] is not _TRUSTED]
        return ("EVALSHA", sha, 1 + len(asked), keys.cell_versions(self.tag),
                *(self._kind(self.tag, self.cells[i]) for i in asked),
                self.seen if self.seen is not None else b"",
                *(self.fields[i] for i in asked),
                *(self.held[i][0] or b"" if self.held[i] else b"" for i in asked))


class GeoIndex:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._apply = redis.register_script(_APPLY)
        self._read_cells = redis.register_script(_READ)
        self._masks = _Masks.empty()
        self._mask_lock = threading.Lock()
        # Cell version field -> (version token, records, the region's version it is known
        # current at) of the cells this process has read, least recently read first (an
        # empty cell: no token, no records): a search reads a cell from Redis only when it
        # changed, and checks its version only when its region changed.
        self._cells: OrderedDict[bytes, tuple[bytes | None, bytes, bytes | None]] = OrderedDict()
        self._regions: dict[str, bytes | None] = {}  # region tag -> the version last seen
        self._cell_bytes = 0
        self._cell_lock = threading.Lock()  # gthread workers share one index

    def apply(self, removals: Iterable[Entry], additions: Iterable[Entry]) -> None:
        """Remove then add entries: one script per region hash tag and record kind (atomic),
        so a record moving between cells of one region never disappears or shows twice.
        Regions that gain records are written before those that only lose some: a record
        moving between regions is, to a reader between the two, more often in both (which
        the final check sorts out) than in neither."""
        additions = list(additions)
        batches: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
        gaining = set()
        for key, identity, record, _ in itertools.chain(removals, additions):
            batch = key[: key.index("}") + 1], len(identity)
            batches[batch][key].append((identity, record))
            if record:
                gaining.add(batch)
        if not batches:
            return
        batches = dict(sorted(batches.items(), key=lambda batch: batch[0] not in gaining))
        masks = {mask_digest(e.mask).to_bytes(8, "little"): e.mask for e in additions if e.mask}
        # The catalogue's documents are written by now: a connection lost is tried again (the
        # scripts replace records by identity, so what ran twice, or half ran, comes out the
        # same) rather than leave the index behind the documents. Not a timeout: the socket's
        # 5 s each, under the writer lock, and Redis may still be running the write.
        for wait in (*APPLY_RETRY_WAITS_S, None):
            try:
                return self._write(masks, batches)
            except redis_errors.TimeoutError:
                raise
            except redis_errors.ConnectionError:
                if wait is None:
                    raise
                time.sleep(wait)

    def _write(self, masks: dict[bytes, bytes], batches: dict) -> None:
        if masks:  # before any record that names them, so a reader always finds them
            self.redis.hset(keys.SERVING_MASKS, mapping=masks)
        with self.redis.pipeline(transaction=False) as pipe:
            for (tag, identity_size), cells in batches.items():
                size = _RECORD_BY_IDENTITY[identity_size].itemsize
                # Random, so no cell or region ever gets a version a reader has seen; one per
                # script: a reader may run between two scripts of one region (places, then
                # offers), and must not find the region's version unchanged after the second.
                token = os.urandom(8)
                args: list = [size, identity_size, token,
                              b"".join(keys.cell_version_field(key) for key in cells)]
                for index, writes in enumerate(cells.values(), start=1):
                    for identity, record in writes:
                        args += [index, identity, record or b""]
                self._apply(keys=[*cells, keys.cell_versions(tag[len("{g:"):-1])], args=args,
                            client=pipe)
            pipe.execute()

    def clear(self) -> None:
        """Remove every cell of the index and the masks they name (before a full reindex)."""
        # Versions first: a cell without one reads as empty, so no reader serves a cell
        # whose records are being deleted.
        for pattern in ("{g:*}:cells:*", "{g:*}:places:*", "{g:*}:offers:*"):
            unlink_matching(self.redis, pattern)
        self.redis.unlink(keys.SERVING_MASKS)

    def open_at(self, digests: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Whether each record's weekly serving mask (named by digest) has its slot set. A
        digest Redis does not know (its mask deleted under a live record) is never served."""
        rows, table = self._mask_rows_of(digests)
        return open_at(table, slots, rows)

    def _mask_rows_of(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each digest's row of a mask table, and that table: from this process's cache,
        with one HMGET for digests it has not seen (masks are content-addressed: a cached one
        never changes). Digests Redis does not know are asked again next time, not cached."""
        masks = self._masks
        rows = masks.rows_of(digests)
        missing = rows < 0
        if missing.any():
            masks = self._learn_masks(digests, missing)
            rows = masks.rows_of(digests)
        return np.maximum(rows, 0), masks.table

    def _learn_masks(self, digests: np.ndarray, missing: np.ndarray) -> _Masks:
        with self._mask_lock:  # one learner at a time; readers keep the snapshot they took
            masks = self._masks
            wanted = np.unique(digests[missing])
            wanted = wanted[masks.rows_of(wanted) < 0]  # another thread may have read some
            if not len(wanted):  # ... or all (an HMGET of no field is an error)
                return masks
            if len(masks.digests) + len(wanted) > MASK_CACHE_LIMIT:
                masks = _Masks.empty()  # a new table: rows handed out before stay valid
                wanted = np.unique(digests)
            found = self.redis.hmget(keys.SERVING_MASKS,
                                     [d.to_bytes(8, "little") for d in wanted.tolist()])
            known = [(d, m) for d, m in zip(wanted.tolist(), found, strict=True)
                     if m is not None]
            start = 1 + len(masks.digests)  # row 0 is the never-served mask
            table = masks.table
            if start + len(known) > len(table):
                table = np.zeros((2 * (start + len(known)), MASK_BYTES), np.uint8)
                table[:start] = masks.table[:start]
            for row, (_, mask) in enumerate(known, start=start):  # rows no snapshot names yet
                table[row] = np.frombuffer(mask, np.uint8)
            self._masks = _Masks.of(
                np.concatenate([masks.digests, np.array([d for d, _ in known], np.uint64)]),
                np.concatenate([masks.rows, np.arange(start, start + len(known))]), table)
            return self._masks

    def places_in(self, cells: list[int]) -> np.ndarray:
        return self.places_by_cell(cells).records

    def offers_in(self, cells: list[int]) -> np.ndarray:
        return self.offers_by_cell(cells).records

    def places_by_cell(self, cells: list[int]) -> CellRecords:
        return self._read(keys.cell_places, keys.CELL_KINDS["places"], cells, PLACE_RECORD)

    def offers_by_cell(self, cells: list[int], also: Sequence[Callable] = ()) -> CellRecords:
        """The offer records of `cells`; `also` queue other reads on the same round trip (see
        `scripts.run_pipelined`), their replies in the answer's `also`."""
        return self._read(keys.cell_offers, keys.CELL_KINDS["offers"], cells, OFFER_RECORD,
                          also)

    def _read(self, kind, letter: bytes, cells: list[int], dtype: np.dtype,
              also: Sequence[Callable] = ()) -> CellRecords:
        """The records of `cells`, cell by cell in an order that does not depend on what this
        process had cached. One round trip: per region, one script compares the region's
        version with the one this process last saw; if unchanged, the cells it holds from
        that version are current and it reads only the others' versions, and the records of
        those whose version it does not hold. All at one moment, so a record moving between
        cells of a region is seen once, as one MGET of the region saw it. A region written
        since costs a second round trip, which checks every cell of every region."""
        cells = np.asarray(cells, np.uint64)
        regions = regions_of(cells)
        plans = [self._plan(kind, letter, f"{region:x}", cells[regions == region].tolist())
                 for region in np.unique(regions).tolist()]
        replies = run_pipelined(self.redis, self._read_cells,
                                [plan.command(self._read_cells.sha) for plan in plans], also)
        replies, read_along = replies[:len(plans)], replies[len(plans):]
        if not all(reply[1] for reply in replies):
            # A region written since this process last read it: every region is read again,
            # every cell's version checked, in one round trip (a record moving between regions,
            # read from the first round trip in one and the second in the other, could be in
            # neither; within one round trip's scripts it still can, as without the cache,
            # only more rarely).
            for plan in plans:
                plan.check_all()
            replies = run_pipelined(self.redis, self._read_cells,
                                    [plan.command(self._read_cells.sha) for plan in plans])
        parts: list[bytes] = []
        filled: list[int] = []  # the cell of each part
        fresh: list[tuple] = []  # read now: where, field, token, records, region version
        with self._cell_lock:
            for plan, reply in zip(plans, replies, strict=True):
                region = reply[0]
                self._regions[plan.tag] = region
                answers = zip(reply[2::2], reply[3::2], strict=True)
                for cell, field, held in zip(plan.cells, plan.fields, plan.held, strict=True):
                    if held is not None and held[2] is _TRUSTED:
                        token, value = held[0], None
                    else:
                        token, value = next(answers)
                    if token is None:  # no records: every write that leaves some sets one
                        if held is None or held[2] is not _TRUSTED:
                            self._cache_cell(field, (None, b"", region))  # empty, as of now
                        continue
                    filled.append(cell)
                    if held is not None and held[0] == token:
                        # current: still (or again) as of this version of the region
                        self._recache(field, held, region)
                        parts.append(held[1])
                    else:  # read by the script: this process held another version or none
                        fresh.append((len(parts), field, token, value, region))
                        parts.append(b"")
        if fresh:
            self._keep_fresh(fresh, parts, dtype)
        return CellRecords(np.frombuffer(b"".join(parts), dtype=dtype), filled,
                           np.fromiter(map(len, parts), np.int64, len(parts)) // dtype.itemsize,
                           read_along)

    def _plan(self, kind, letter: bytes, tag: str, cells: list[int]) -> _RegionRead:
        """What to ask of one region: this process's cached copies of its cells (taken now,
        so an eviction meanwhile loses nothing), marked trusted where cached at the version
        of the region it last saw, and what the script is asked about the others."""
        ids = np.asarray(cells, "<u8").tobytes()
        # Each cell's version field, which is also its name in this process's cache.
        fields = [letter + ids[8 * i: 8 * i + 8] for i in range(len(cells))]
        with self._cell_lock:
            seen = self._regions.get(tag)
            get = self._cells.get
            held = [get(field) for field in fields]
        if seen is not None:
            held = [(c[0], c[1], _TRUSTED) if c is not None and c[2] == seen else c
                    for c in held]
        return _RegionRead(tag, cells, fields, held, seen, kind)

    def _keep_fresh(self, fresh: list[tuple], parts: list[bytes], dtype: np.dtype) -> None:
        """Put the cells just read into `parts` and the cache, an offer cell's records at one
        position side by side (`side_by_side`, all the cells in one pass)."""
        values = [value or b"" for _, _, _, value, _ in fresh]
        if dtype == OFFER_RECORD:
            values = side_by_side(values, dtype)
        with self._cell_lock:
            for (at, field, token, _, region), value in zip(fresh, values, strict=True):
                parts[at] = value
                self._cache_cell(field, (token, value, region))

    def _recache(self, field: bytes, held: tuple, region: bytes | None) -> None:
        """A cached cell found current: most recently read, and current as of `region`."""
        if field in self._cells:
            self._cells[field] = (held[0], held[1], region)
            self._cells.move_to_end(field)
        else:  # evicted since the plan was made: kept again
            self._cache_cell(field, (held[0], held[1], region))

    def _cache_cell(self, field: bytes, entry: tuple[bytes | None, bytes, bytes | None]) -> None:
        """Keep a cell's (token, records, region version) (least recently read dropped first
        beyond CELL_CACHE_BYTES)."""
        old = self._cells.pop(field, None)
        if old is not None:
            self._cell_bytes -= _CACHED_CELL_BYTES + len(old[1])
        self._cells[field] = entry
        self._cell_bytes += _CACHED_CELL_BYTES + len(entry[1])
        while self._cell_bytes > CELL_CACHE_BYTES:
            _, (_, dropped, _) = self._cells.popitem(last=False)
            self._cell_bytes -= _CACHED_CELL_BYTES + len(dropped)


def warm_up() -> None:
    """Compile the ordering of cells read and the serving masks' lookup (or load them from
    numba's cache), so that a server's first request does not wait for them."""
    side_by_side([np.zeros(2, OFFER_RECORD).tobytes()], OFFER_RECORD)
    masks = _Masks.empty()
    open_at(masks.table, np.zeros(2, np.int64),
            np.maximum(masks.rows_of(np.zeros(2, np.uint64)), 0))
