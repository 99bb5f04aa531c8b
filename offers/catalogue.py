"""The merchant catalogue in Redis: places and offers, each merchant's under its own hash tag.

Documents arrive here already validated by the API schemas (or the importer, which uses the same
schemas); this module owns how they are stored and keeps cross-object rules that need Redis:
an offer may only name its merchant's own places, and a place still named by an offer cannot be
deleted. Every write is one MULTI/EXEC on one hash tag, guarded by WATCH where it depends on
what it read, so a rejected write changes nothing.

The geo index is written after that transaction, from the documents it wrote (the index lives
under other hash tags). So that two writes of one merchant cannot file their index records in
the other order than their documents (a place's edit re-filing an offer from what it read
before the offer's own edit, say, and leaving the older hours in the index for good), a
merchant's writes take turns: each holds a lock on the merchant's hash tag from its transaction
to the end of its index writes. Its transaction marks the index owed, with the documents, until
their records are filed, so that a write that dies in between is made good: by the merchant's
next write, or by `repair_index`, which each serving process runs every half minute.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from time import monotonic, sleep
from zoneinfo import ZoneInfo

import orjson
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from . import keys
from .errors import Conflict, Invalid, NotFound
from .geo_index import USED_UP_FOREVER, GeoIndex, offer_entries, place_entry

log = logging.getLogger(__name__)

MAX_PAGE = 1000
# A write of 10,000 places holds the lock for seconds; the lease outlives any write but not a
# writer that died holding it.
WRITER_LEASE_S = 60.0
WRITER_WAIT_S = 10.0  # well inside a worker's timeout (gunicorn's default: 30 s)
IDEMPOTENCY_TTL_S = 24 * 3600  # how long a create's Idempotency-Key is kept (as Stripe)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def place_id_for(merchant_id: str, external_id: str | None = None) -> str:
    """A new place id; a stable one when the place has an external id (re-imports upsert)."""
    if external_id:
        suffix = "x" + hashlib.sha256(external_id.encode()).hexdigest()[:16]
    else:
        suffix = secrets.token_hex(8)
    return f"p.{merchant_id}.{suffix}"


def offer_id_for(merchant_id: str) -> str:
    return f"o.{merchant_id}.{secrets.token_hex(8)}"


def offer_state(offer: dict, now: datetime) -> str:
    """`paused`, `scheduled` (not yet valid), `expired` or `active`: derived, never stored, so an
    offer expires the moment its validity ends without any job running."""
    if offer["status"] == "paused":
        return "paused"
    if datetime.fromisoformat(offer["valid_from"]) > now:
        return "scheduled"
    until = offer.get("valid_until")
    if until and datetime.fromisoformat(until) <= now:
        return "expired"
    return "active"


# An offer whose budget or today's cap is used up keeps its document and counters but leaves
# the geo index until it can be redeemed again (`used_up_until` in its document: written by the
# catalogue, never by merchants; `geo_index.USED_UP_FOREVER` for a budget used up). Left in, it
# would hold its rank in every corridor while the final check refused it, crowding servable
# offers out of the few a shortlist checks, and with one item per place, hiding its place's
# other offers.
def used_up_until(offer: dict, total: int, today: int, now: datetime) -> str | None:
    """When the offer can next be redeemed, if at `now` its budget is used up (never again)
    or today's cap is (the next midnight in its timezone, where daily caps roll over); None if
    neither. `total` and `today` are its redemptions in all and on `now`'s local day."""
    budget = offer.get("budget") or {}
    if budget.get("max_redemptions") and total >= budget["max_redemptions"]:
        return USED_UP_FOREVER
    if budget.get("daily_max") and today >= budget["daily_max"]:
        zone = ZoneInfo(offer["timezone"])
        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
        return _iso(datetime.combine(tomorrow, time(), zone))
    return None


def schedule_digest(offer: dict) -> str:
    """A short fingerprint of the offer's weekly schedule ("" for none): the redemption script
    compares it with the schedule the caller checked, so a concurrent edit cannot slip one
    redemption through under the old hours."""
    schedule = offer.get("schedule")
    return _fingerprint(schedule) if schedule else ""


def places_digest(offer: dict) -> str:
    """A short fingerprint of the offer's places: the redemption script compares it with the
    places the caller found the redeeming one among, so a place taken off the offer (or
    deleted) meanwhile is not redeemed at."""
    return _fingerprint("\n".join(sorted(offer["place_ids"])))


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def offer_terms(offer: dict) -> dict:
    """The fields the redemption script enforces, as flat numbers (0 means no limit), and the
    fingerprints of the schedule and the places."""
    budget = offer.get("budget") or {}
    until = offer.get("valid_until")
    return {
        "status": offer["status"], "schedule": schedule_digest(offer),
        "places": places_digest(offer),
        "valid_from": datetime.fromisoformat(offer["valid_from"]).timestamp(),
        "valid_until": datetime.fromisoformat(until).timestamp() if until else 0,
        "max_redemptions": budget.get("max_redemptions") or 0,
        "daily_max": budget.get("daily_max") or 0,
        "per_driver_limit": offer.get("per_driver_limit") or 0,
    }


def _one_writer_at_a_time(write: Callable) -> Callable:
    """Run a write of the merchant's catalogue (the merchant id its first argument) in the
    merchant's turn (`Catalogue._turn`)."""

    @functools.wraps(write)
    def taking_turns(self: Catalogue, merchant_id: str, *args, **kwargs):
        with self._turn(merchant_id):
            return write(self, merchant_id, *args, **kwargs)

    return taking_turns


# KEYS: the merchant's writer lock, its index-owed mark. ARGV: the turn's token, lease (ms).
# The lock taken, and whether the mark was there, in one round trip.
_TAKE_TURN = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('exists', KEYS[2])}
end
return {0, 0}
"""
# KEYS, as _TAKE_TURN. ARGV: the turn's token, 1 if its records are filed. Only while the lock
# is still this turn's (its lease may have run out, and another turn taken it over).
_END_TURN = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then redis.call('del', KEYS[2]) end
return redis.call('del', KEYS[1])
"""


class Catalogue:
    def __init__(self, redis: Redis):
        self.redis = redis
        self.index = GeoIndex(redis)
        self._take_turn = redis.register_script(_TAKE_TURN)
        self._end_turn = redis.register_script(_END_TURN)
        self._turns = threading.local()  # `token`: the turn this thread holds, if any

    @contextlib.contextmanager
    def _turn(self, merchant_id: str, wait: bool = True) -> Iterator[bool]:
        """The merchant's turn to write: its writer lock (a token of this turn's, with a
        lease), held from the write's transaction to the end of its index writes. The
        transaction marks the index owed with the documents (`_transaction`), and the mark
        goes with the lock once the records are filed: a write that dies in between (the
        worker killed, Redis out of reach past the retries) leaves it, and the next turn that
        ends well files the whole catalogue again after its own write; it yields whether the
        catalogue was owed. A write refused changes nothing, the repair included (the mark
        stays for the next), and a write that stands is answered so, whatever becomes of the
        repair or the release. A turn whose lease ran out before its transaction writes
        nothing (`_transaction`), and one whose lease ran out leaves the lock and the mark to
        the turn that took them over; its index write is not fenced, though: stalled past the
        lease (60 s) after its transaction, it may file its records after the next turn's,
        until `offers reindex`. (Records the dead write was to remove stay too, never served,
        the final check refusing them.)"""
        turn = [keys.catalogue_writer(merchant_id), keys.index_owed(merchant_id)]
        token = secrets.token_hex(16)
        deadline = monotonic() + (WRITER_WAIT_S if wait else 0.0)
        while True:
            taken, owed = self._take_turn(keys=turn, args=[token, int(WRITER_LEASE_S * 1000)])
            if taken:
                break
            if monotonic() >= deadline:
                raise Conflict("another write to this merchant's catalogue is taking long; "
                               "try again")
            sleep(0.02)
        self._turns.token = token
        filed = False
        try:
            yield bool(owed)
            filed = True
            if owed:
                try:
                    self._file_catalogue(merchant_id)
                except RedisError:  # the mark stays: the repair thread tries again
                    filed = False
                    log.exception("the geo index of %s could not be filed again", merchant_id)
        finally:
            self._turns.token = None
            try:
                self._end_turn(keys=turn, args=[token, int(filed)])
            except RedisError:  # the lock lapses with its lease, the mark stays for the repair
                log.exception("the turn of %s could not be ended", merchant_id)

    def _transaction(self, merchant_id: str, write: Callable[[Pipeline], object],
                     *watched: str) -> object:
        """`redis.transaction(write, *watched)`'s value, the merchant's index marked owed in
        the same MULTI (`_turn`) when `write` wrote. Only in the turn that holds the writer
        lock (watched with the rest): a turn whose lease ran out before it wrote is refused,
        not let write after the turn that took the lock over, nor leave it a mark it would
        take for its own."""
        lock = keys.catalogue_writer(merchant_id)
        token = getattr(self._turns, "token", None)

        def marked(pipe: Pipeline) -> object:
            if token is None or pipe.get(lock) != token.encode():
                raise Conflict("this write took longer than its turn; try again")
            value = write(pipe)
            if pipe.explicit_transaction:  # MULTI: it wrote
                pipe.set(keys.index_owed(merchant_id), int(utc_now().timestamp() * 1000))
            return value

        return self.redis.transaction(marked, lock, *watched, value_from_callable=True)

    def repair_index(self) -> list[str]:
        """File again the catalogues whose last write died before its index records (marked
        owed while their writer lock is free: a write under way holds it, and files them
        itself); returns their merchants."""
        merchants = [m.decode() for m in self.redis.hkeys(keys.MERCHANTS)]
        merchants.append(keys.SHARED_MERCHANT)
        owed = []
        for first in range(0, len(merchants), 1000):  # a round trip per thousand merchants
            chunk = merchants[first:first + 1000]
            with self.redis.pipeline(transaction=False) as pipe:
                for merchant_id in chunk:
                    pipe.exists(keys.index_owed(merchant_id))
                owed += [m for m, marked in zip(chunk, pipe.execute(), strict=True) if marked]
        repaired = []
        for merchant_id in owed:
            try:
                with self._turn(merchant_id, wait=False) as was_owed:
                    pass  # filed again as the turn ends
            except Conflict:  # being written now: that write files it
                continue
            if was_owed and not self.redis.exists(keys.index_owed(merchant_id)):
                repaired.append(merchant_id)
        return repaired

    # -- places ---------------------------------------------------------------------------

    @_one_writer_at_a_time
    def add_places(self, merchant_id: str, places: list[dict]) -> list[dict]:
        """Store places (all or none) and return them with ids, in input order.

        A place with an `external_id` keeps the same id across imports, so importing a file
        again updates those places instead of duplicating them.
        """
        now = _iso(utc_now())
        stored = []
        for place in places:
            pid = place_id_for(merchant_id, place.get("external_id"))
            stored.append({**place, "id": pid, "merchant_id": merchant_id,
                           "created_at": now, "updated_at": now})
        key = keys.places(merchant_id)
        existing = self.redis.hmget(key, [p["id"] for p in stored]) if stored else []
        previous = {}
        for doc, raw in zip(stored, existing, strict=True):
            if raw is not None:
                previous[doc["id"]] = orjson.loads(raw)
                doc["created_at"] = previous[doc["id"]]["created_at"]
        # Before the write: failing, it writes nothing (the writer lock keeps offers as read).
        filed = self._place_entries(merchant_id, previous, {p["id"]: p for p in stored})

        def write(pipe: Pipeline) -> None:
            pipe.multi()
            for chunk in _chunks(stored, 1000):
                pipe.hset(key, mapping={p["id"]: orjson.dumps(p) for p in chunk})
                pipe.zadd(keys.place_ids(merchant_id), {p["id"]: 0 for p in chunk})

        self._transaction(merchant_id, write)
        self.index.apply(*filed)
        return stored

    def get_place(self, merchant_id: str, place_id: str) -> dict:
        raw = self.redis.hget(keys.places(merchant_id), place_id)
        if raw is None:
            raise NotFound(f"place {place_id} not found")
        return orjson.loads(raw)

    def list_places(self, merchant_id: str, cursor: str | None, limit: int) -> tuple[list, str]:
        return self._page(keys.place_ids(merchant_id), keys.places(merchant_id), cursor, limit)

    @_one_writer_at_a_time
    def update_place(self, merchant_id: str, place_id: str,
                     change: Callable[[dict], dict]) -> dict:
        """Apply `change` (which validates and may raise) to the stored place atomically."""
        key = keys.places(merchant_id)

        def write(pipe: Pipeline) -> dict:
            raw = pipe.hget(key, place_id)
            if raw is None:
                raise NotFound(f"place {place_id} not found")
            old = orjson.loads(raw)
            doc = _changed(old, change)
            # Before the write: failing, it writes nothing.
            filed = self._place_entries(merchant_id, {place_id: old}, {place_id: doc}, pipe)
            pipe.multi()
            pipe.hset(key, place_id, orjson.dumps(doc))
            return doc, filed

        doc, filed = self._transaction(merchant_id, write, key, keys.offers(merchant_id))
        self.index.apply(*filed)
        return doc

    @_one_writer_at_a_time
    def delete_place(self, merchant_id: str, place_id: str) -> None:
        places_key, offers_key = keys.places(merchant_id), keys.offers(merchant_id)

        def write(pipe: Pipeline) -> dict:
            raw = pipe.hget(places_key, place_id)
            if raw is None:
                raise NotFound(f"place {place_id} not found")
            using = sorted(o["id"] for o in map(orjson.loads, pipe.hvals(offers_key))
                           if place_id in o["place_ids"])
            if using:
                raise Conflict(f"place {place_id} is still used by offers",
                               {"offer_ids": using})
            pipe.multi()
            pipe.hdel(places_key, place_id)
            pipe.zrem(keys.place_ids(merchant_id), place_id)
            return orjson.loads(raw)

        old = self._transaction(merchant_id, write, places_key, offers_key)
        self.index.apply([place_entry(old, remove=True)], [])

    # -- offers ---------------------------------------------------------------------------

    @_one_writer_at_a_time
    def add_offer(self, merchant_id: str, offer: dict,
                  idempotency_key: str | None = None) -> tuple[dict, bool]:
        """Store a new offer; (its document, False). With an `idempotency_key` that an earlier
        create of the same offer used (within IDEMPOTENCY_TTL_S), nothing is stored: (that
        one's document, True), so a retry after a lost answer or a 503 makes no second offer;
        the key used for another offer is refused."""
        now = _iso(utc_now())
        doc = {**offer, "id": offer_id_for(merchant_id), "merchant_id": merchant_id,
               "created_at": now, "updated_at": now}
        places_key = keys.places(merchant_id)
        once, request = None, ""
        if idempotency_key:
            once = keys.offer_idempotency(merchant_id, idempotency_key)
            request = _fingerprint(orjson.dumps(offer, option=orjson.OPT_SORT_KEYS).decode())

        def write(pipe: Pipeline) -> tuple[dict | None, list]:
            if once is not None and (earlier := pipe.get(once)) is not None:
                return self._earlier_offer(pipe, merchant_id, earlier.decode(), request), []
            places = self._require_places(pipe, merchant_id, doc)
            filed = offer_entries(doc, places)  # before the write: failing, it writes nothing
            pipe.multi()
            self._put_offer(pipe, merchant_id, doc)
            pipe.zadd(keys.offer_ids(merchant_id), {doc["id"]: 0})
            if once is not None:
                pipe.set(once, f"{doc['id']}|{request}", ex=IDEMPOTENCY_TTL_S)
            return None, filed

        watched = [places_key] if once is None else [places_key, once]
        earlier, filed = self._transaction(merchant_id, write, *watched)
        if earlier is not None:
            return earlier, True
        self.index.apply([], filed)
        return doc, False

    @staticmethod
    def _earlier_offer(pipe: Pipeline, merchant_id: str, earlier: str, request: str) -> dict:
        """The offer an idempotency key's first create made (`earlier`: its id and request's
        fingerprint), if this `request` is the same."""
        offer_id, _, fingerprint = earlier.partition("|")
        if fingerprint != request:
            raise Invalid("Idempotency-Key already used for another offer", {
                "Idempotency-Key": ["already used to create another offer: use a new key "
                                    "(e.g. a UUID) per offer"]})
        raw = pipe.hget(keys.offers(merchant_id), offer_id)
        if raw is None:
            raise Conflict(f"offer {offer_id}, created with this Idempotency-Key, was deleted "
                           f"since", {"offer_id": [offer_id]})
        return orjson.loads(raw)

    def get_offer(self, merchant_id: str, offer_id: str) -> dict:
        raw = self.redis.hget(keys.offers(merchant_id), offer_id)
        if raw is None:
            raise NotFound(f"offer {offer_id} not found")
        return orjson.loads(raw)

    def list_offers(self, merchant_id: str, cursor: str | None, limit: int) -> tuple[list, str]:
        return self._page(keys.offer_ids(merchant_id), keys.offers(merchant_id), cursor, limit)

    @_one_writer_at_a_time
    def update_offer(self, merchant_id: str, offer_id: str,
                     change: Callable[[dict], dict]) -> dict:
        offers_key, places_key = keys.offers(merchant_id), keys.places(merchant_id)

        def write(pipe: Pipeline) -> dict:
            raw = pipe.hget(offers_key, offer_id)
            if raw is None:
                raise NotFound(f"offer {offer_id} not found")
            old = orjson.loads(raw)
            doc = _changed(old, change)
            places = self._require_places(pipe, merchant_id, doc)
            places.update(self._places(pipe, merchant_id, old["place_ids"]))
            doc = self._with_used_up(pipe, merchant_id, doc, utc_now())  # a budget raised
            # Before the write: failing, it writes nothing.
            filed = offer_entries(old, places, remove=True), offer_entries(doc, places)
            pipe.multi()
            self._put_offer(pipe, merchant_id, doc)
            return doc, filed

        doc, filed = self._transaction(merchant_id, write, offers_key, places_key)
        self.index.apply(*filed)
        return doc

    @_one_writer_at_a_time
    def file_used_up(self, merchant_id: str, offer_id: str, now: datetime) -> None:
        """After a redemption used up the offer's budget or today's cap (or was refused for
        it): take the offer out of the geo index until it can be redeemed again. Derived from
        its counters and stored terms here, under the writer lock, so that a budget raised
        meanwhile wins; nothing is written if the document already says so."""
        offers_key = keys.offers(merchant_id)

        def write(pipe: Pipeline) -> tuple | None:
            raw = pipe.hget(offers_key, offer_id)
            if raw is None:
                return None
            old = orjson.loads(raw)
            doc = self._with_used_up(pipe, merchant_id, old, now)
            if doc == old:
                return None
            places = self._places(pipe, merchant_id, old["place_ids"])
            filed = offer_entries(old, places, remove=True), offer_entries(doc, places)
            pipe.multi()
            pipe.hset(offers_key, offer_id, orjson.dumps(doc))
            return filed

        filed = self._transaction(merchant_id, write, offers_key, keys.places(merchant_id))
        if filed is not None:
            self.index.apply(*filed)

    @staticmethod
    def _with_used_up(pipe: Pipeline, merchant_id: str, doc: dict, now: datetime) -> dict:
        """`doc` with `used_up_until` as its counters say at `now`, read on `pipe` and watched
        with it: a redemption counted meanwhile (under the terms before this write, so it
        could not tell it used the offer up) makes the transaction read them again."""
        day = now.astimezone(ZoneInfo(doc["timezone"])).date().isoformat()
        counters = (keys.offer_redeemed(merchant_id, doc["id"]),
                    keys.offer_redeemed_on(merchant_id, doc["id"], day))
        pipe.watch(*counters)
        total, today = pipe.mget(*counters)
        until = used_up_until(doc, int(total or 0), int(today or 0), now)
        doc = {k: v for k, v in doc.items() if k != "used_up_until"}
        return doc if until is None else {**doc, "used_up_until": until}

    @_one_writer_at_a_time
    def delete_offer(self, merchant_id: str, offer_id: str) -> None:
        offers_key = keys.offers(merchant_id)

        def write(pipe: Pipeline) -> tuple[dict, dict]:
            raw = pipe.hget(offers_key, offer_id)
            if raw is None:
                raise NotFound(f"offer {offer_id} not found")
            old = orjson.loads(raw)
            places = self._places(pipe, merchant_id, old["place_ids"])
            pipe.multi()
            pipe.hdel(offers_key, offer_id)
            pipe.zrem(keys.offer_ids(merchant_id), offer_id)
            pipe.delete(*keys.offer_counter_keys(merchant_id, offer_id))
            return old, places

        old, places = self._transaction(merchant_id, write, offers_key,
                                        keys.places(merchant_id))
        self.index.apply(offer_entries(old, places, remove=True), [])

    def redemption_counts(self, offers: Iterable[dict]) -> list[int]:
        """Redemptions so far of each offer, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for offer in offers:
                pipe.get(keys.offer_redeemed(offer["merchant_id"], offer["id"]))
            return [int(n or 0) for n in pipe.execute()]

    def reindex(self, merchant_ids: Iterable[str]) -> int:
        """File these merchants' places and live offers in the geo index again (after the
        index layout changed, or to repair it); returns how many places were filed."""
        return sum(self._refile(merchant_id) for merchant_id in merchant_ids)

    @_one_writer_at_a_time
    def _refile(self, merchant_id: str) -> int:
        return self._file_catalogue(merchant_id)

    def _file_catalogue(self, merchant_id: str) -> int:
        """File the merchant's places and live offers in the geo index (in its turn)."""
        places = {pid.decode(): orjson.loads(raw) for pid, raw in
                  self.redis.hgetall(keys.places(merchant_id)).items()}
        offers = map(orjson.loads, self.redis.hvals(keys.offers(merchant_id)))
        self.index.apply([], [place_entry(doc) for doc in places.values()])
        self.index.apply([], [entry for offer in offers for entry in offer_entries(offer, places)])
        return len(places)

    # -- shared mechanics -----------------------------------------------------------------

    def _put_offer(self, pipe: Pipeline, merchant_id: str, doc: dict) -> None:
        pipe.hset(keys.offers(merchant_id), doc["id"], orjson.dumps(doc))
        pipe.hset(keys.offer_terms(merchant_id, doc["id"]), mapping=offer_terms(doc))

    @staticmethod
    def _places(redis: Redis | Pipeline, merchant_id: str, place_ids: list[str]) -> dict:
        """The stored places among `place_ids`, by id (missing ones left out)."""
        found = redis.hmget(keys.places(merchant_id), place_ids) if place_ids else []
        return {pid: orjson.loads(raw) for pid, raw in zip(place_ids, found, strict=True)
                if raw is not None}

    def _require_places(self, pipe: Pipeline, merchant_id: str, offer: dict) -> dict:
        """The offer's places, checking it names only the merchant's own; default its timezone
        to the first place's, so daily caps roll over at that place's midnight."""
        places = self._places(pipe, merchant_id, offer["place_ids"])
        missing = [pid for pid in offer["place_ids"] if pid not in places]
        if missing:
            raise Invalid("offer names places that do not exist",
                          {"place_ids": [f"unknown place: {pid}" for pid in missing]})
        if not offer.get("timezone"):
            offer["timezone"] = places[offer["place_ids"][0]]["timezone"]
        return places

    def _place_entries(self, merchant_id: str, old: dict[str, dict], new: dict[str, dict],
                       redis: Redis | Pipeline | None = None) -> tuple[list, list]:
        """The index entries to remove and add as places change from `old` to `new` (by id):
        the places' own, and the records of every offer that names them (an offer record
        carries its place's position, hours and timezone). Read on `redis` (a watching
        pipeline's immediate reads), by default this catalogue's client."""
        redis = redis or self.redis
        removals = [place_entry(doc, remove=True) for doc in old.values()]
        additions = [place_entry(doc) for doc in new.values()]
        if old:
            offers = [o for o in map(orjson.loads, redis.hvals(keys.offers(merchant_id)))
                      if not old.keys().isdisjoint(o["place_ids"])]
            named = {pid for offer in offers for pid in offer["place_ids"]}
            current = self._places(redis, merchant_id, sorted(named))
            for offer in offers:
                removals += offer_entries(offer, {**current, **old}, remove=True)
                additions += offer_entries(offer, {**current, **new})
        return removals, additions

    def _page(self, ids_key: str, docs_key: str, cursor: str | None,
              limit: int) -> tuple[list[dict], str | None]:
        """One page of documents after `cursor` (an id), in id order, and the next cursor."""
        start = f"({cursor}" if cursor else "-"
        ids = self.redis.zrange(ids_key, start, "+", bylex=True, offset=0, num=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        docs = [orjson.loads(raw) for raw in self.redis.hmget(docs_key, ids) if raw] if ids else []
        return docs, (ids[-1].decode() if more else None)


def _changed(doc: dict, change: Callable[[dict], dict]) -> dict:
    fixed = {k: doc[k] for k in ("id", "merchant_id", "created_at")}
    return {**change(doc), **fixed, "updated_at": _iso(utc_now())}


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
