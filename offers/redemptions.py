"""Redeeming offers: budgets, daily caps and per-driver limits, enforced inside Redis.

The check and the increments happen in one Lua script on the offer's merchant hash tag, so no
number of concurrent requests can redeem an offer past its limits, and a retried request with
the same idempotency key is counted once. The script re-reads the offer's terms itself rather
than trusting the caller, so a concurrent PATCH (pausing, shortening validity, lowering a budget)
takes effect on the very next redemption.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from redis import Redis

from . import keys
from .catalogue import Catalogue, places_digest, schedule_digest, utc_now
from .errors import Conflict, Invalid, NotFound
from .hours import is_open_exactly

log = logging.getLogger(__name__)
IDEMPOTENCY_TTL_S = 7 * 24 * 3600
DAY_COUNTER_TTL_S = 3 * 24 * 3600  # a local day plus any timezone offset, with room to spare
REDEMPTION_LOG_MAXLEN = 1_000_000
# Each entry says where and when a (pseudonymous) driver redeemed: a location history, kept for
# a merchant's monthly reconciliation with some room, then trimmed (the counters stay).
REDEMPTION_LOG_RETENTION_S = 90 * 24 * 3600
# Which offers a driver has used up says what they redeemed: each kept as long as the log (see
# _NOTE_USED_UP for how long past it). Past it, the final check before serving still refuses
# them.
DRIVER_USED_UP_TTL_S = REDEMPTION_LOG_RETENTION_S

# KEYS: terms, redeemed, redeemed_today, redeemed_by, idempotency, log
# ARGV: now, driver_key, fingerprint, redemption_id, place_id, fleet_id, idem_ttl, day_ttl,
#       log_maxlen, offer_id, the digest of the schedule the caller checked `now` against, and
#       '1' if `now` is outside it (the script has no opening-hours parser), the oldest log id
#       kept, the digest of the places the caller found place_id among
# Returns the outcome and the redemption id; once counted, '1' if this redemption used up the
# offer's budget or today's cap, and the per-driver limit if it used that up ('0' if not),
# which a refusal for that limit returns too.
_REDEEM = """
local prior = redis.call('GET', KEYS[5])
if prior then
  local sep = string.find(prior, '|', 1, true)
  if string.sub(prior, sep + 1) ~= ARGV[3] then return {'idempotency_key_reused', ''} end
  return {'replayed', string.sub(prior, 1, sep - 1)}
end
local t = redis.call('HMGET', KEYS[1], 'status', 'valid_from', 'valid_until',
                     'max_redemptions', 'daily_max', 'per_driver_limit', 'schedule', 'places')
if not t[1] then return {'gone', ''} end
local now = tonumber(ARGV[1])
if t[1] ~= 'active' then return {'paused', ''} end
if now < tonumber(t[2]) then return {'not_yet_valid', ''} end
if tonumber(t[3]) > 0 and now >= tonumber(t[3]) then return {'expired', ''} end
if t[7] and t[7] ~= ARGV[11] then return {'schedule_changed', ''} end
if t[8] and t[8] ~= ARGV[14] then return {'places_changed', ''} end
if ARGV[12] == '1' then return {'outside_schedule', ''} end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(t[4]) > 0 and total >= tonumber(t[4]) then return {'budget_exhausted', ''} end
local today = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(t[5]) > 0 and today >= tonumber(t[5]) then return {'daily_cap_reached', ''} end
local mine = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
if tonumber(t[6]) > 0 and mine >= tonumber(t[6]) then
  return {'driver_limit_reached', '', '0', t[6]}
end
redis.call('INCR', KEYS[2])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[8]))
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
redis.call('SET', KEYS[5], ARGV[4] .. '|' .. ARGV[3], 'EX', tonumber(ARGV[7]))
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[9], '*', 'redemption_id', ARGV[4],
           'offer_id', ARGV[10], 'place_id', ARGV[5],
           'fleet_id', ARGV[6], 'driver', ARGV[2], 'at', ARGV[1])
redis.call('XTRIM', KEYS[6], 'MINID', ARGV[13])
local used_up, driver_used_up = '0', '0'
if (tonumber(t[4]) > 0 and total + 1 >= tonumber(t[4]))
    or (tonumber(t[5]) > 0 and today + 1 >= tonumber(t[5])) then used_up = '1' end
if tonumber(t[6]) > 0 and mine + 1 >= tonumber(t[6]) then driver_used_up = t[6] end
return {'counted', ARGV[4], used_up, driver_used_up}
"""

# KEYS: the driver's used-up offers, their erasure token. ARGV: the token as read before the
# redemption, offer id, the per-driver limit used up, now (epoch seconds), how long to keep it.
# Nothing if the driver was erased since (a redemption racing an erase must not note again what
# it removed; a refusal after it does, from the merchant's per-driver count, which an erase keeps),
# nor if the offer is noted already at that limit (a refusal then changes nothing); entries past
# their time are dropped here, so an entry outlives its own time only until the next note or
# the hash's expiry with its newest entry (Redis 7.0 has no expiry per field).
_NOTE_USED_UP = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
local now, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
local held = redis.call('HGET', KEYS[1], ARGV[2])
if held then
  local limit, ends = string.match(held, '^(%d+):(%d+)$')
  if limit == ARGV[3] and tonumber(ends) > now then return 0 end
end
local noted = redis.call('HGETALL', KEYS[1])
for i = 1, #noted, 2 do
  local ends = tonumber(string.match(noted[i + 1], ':(%d+)$') or '0')
  if ends <= now then redis.call('HDEL', KEYS[1], noted[i]) end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3] .. ':' .. (now + keep))
redis.call('EXPIRE', KEYS[1], keep)
return 1
"""

_REFUSALS = {
    "paused": "the offer is paused",
    "not_yet_valid": "the offer is not valid yet",
    "expired": "the offer has expired",
    "budget_exhausted": "the offer's budget is used up",
    "daily_cap_reached": "the offer's daily cap is reached",
    "driver_limit_reached": "this driver has used up the offer's per-driver limit",
    "outside_schedule": "the offer is not served at this time (its weekly schedule)",
    "schedule_changed": "the offer's schedule changed while redeeming it; try again",
    "places_changed": "the offer's places changed while redeeming it; try again",
}


_KEY_REUSED = Invalid("idempotency key already used for a different redemption",
                      {"idempotency_key": ["already used with another offer, driver or place "
                                           "of this merchant"]})


@dataclass(frozen=True)
class Redemption:
    id: str
    offer_id: str
    place_id: str
    driver_id: str
    replayed: bool  # True when an earlier request with the same idempotency key counted it


# A driver's pseudonym is keyed with a secret of the deployment (HMAC-SHA256): unkeyed, ids as
# short as fleets' own ("drv-8f3a") could be found again from a stored or exported pseudonym by
# trying them all. OFFERS_DRIVER_KEY_SECRET sets it; without it, one made at random when the
# first fleet is created is kept in Redis (`keys.DRIVER_KEY_SECRET`), so every worker of a
# deployment agrees on it, and an export of the logs (which does not hold it) cannot be
# reversed.
_driver_key_source: tuple[Redis, str | None] | None = None
_driver_key_secret: bytes | None = None


def use_driver_key_secret(redis: Redis, configured: str | None = None) -> None:
    """Where the deployment's secret for drivers' pseudonyms comes from (`Services.connect`):
    `configured`, else Redis, read when the first pseudonym is made (an application is created
    without touching Redis)."""
    global _driver_key_source, _driver_key_secret
    _driver_key_source, _driver_key_secret = (redis, configured), None


def _secret() -> bytes:
    global _driver_key_secret
    if _driver_key_secret is None:
        if _driver_key_source is None:
            raise RuntimeError("drivers' pseudonyms need the deployment's secret: "
                               "use_driver_key_secret first")
        redis, configured = _driver_key_source
        if configured:
            _driver_key_secret = configured.encode()
        else:  # made with the first fleet; made here for a deployment older than that
            _driver_key_secret = redis.get(keys.DRIVER_KEY_SECRET)
            if _driver_key_secret is None:
                with redis.pipeline(transaction=False) as pipe:
                    pipe.set(keys.DRIVER_KEY_SECRET, secrets.token_hex(32), nx=True)
                    pipe.get(keys.DRIVER_KEY_SECRET)
                    _driver_key_secret = pipe.execute()[1]
    return _driver_key_secret


def unkeyed_driver_key(fleet_id: str, driver_id: str) -> str:
    """The pseudonym releases before keyed pseudonyms stored (a plain SHA-256): what they kept
    under it is still erased with the driver."""
    return hashlib.sha256(f"{fleet_id}\x00{driver_id}".encode()).hexdigest()[:20]


def driver_key(fleet_id: str, driver_id: str) -> str:
    """The pseudonym stored for a driver: scoped by fleet, so no two fleets' ids can be linked,
    and keyed one-way, so the stored counters and logs never carry the fleet's own driver id
    nor let it be guessed."""
    return _keyed(_secret(), fleet_id, driver_id)


def _keyed(secret: bytes, fleet_id: str, driver_id: str) -> str:
    return hmac.new(secret, f"{fleet_id}\x00{driver_id}".encode(),
                    hashlib.sha256).hexdigest()[:20]


def earlier_driver_keys(fleet_id: str, driver_id: str) -> list[str]:
    """Pseudonyms the driver may have had before: the unkeyed one of releases before keyed
    pseudonyms, and, where OFFERS_DRIVER_KEY_SECRET is set, the one under the secret kept in
    Redis, which a deployment run without it first (a demo put in production) used (one that
    had it from the start has one too, made with its first fleet, under which nothing was
    kept: an erase of nothing). Not read again, but what was kept under them is erased with
    the driver."""
    earlier = [unkeyed_driver_key(fleet_id, driver_id)]
    secret = _secret()
    redis, configured = _driver_key_source
    kept = redis.get(keys.DRIVER_KEY_SECRET) if configured else None
    if kept is not None and kept != secret:
        earlier.append(_keyed(kept, fleet_id, driver_id))
    return earlier


class Redemptions:
    def __init__(self, redis: Redis, catalogue: Catalogue):
        self.redis = redis
        self.catalogue = catalogue
        self._redeem = redis.register_script(_REDEEM)
        self._note_used_up = redis.register_script(_NOTE_USED_UP)

    def redeem(self, fleet_id: str, offer_id: str, driver_id: str, place_id: str,
               idempotency_key: str, now: datetime | None = None) -> Redemption:
        now = now or utc_now()
        merchant_id = keys.owner_of(offer_id)
        if merchant_id is None:
            raise NotFound(f"offer {offer_id} not found")
        # From the driver's pseudonym, not their id: the fingerprint is stored beside the
        # redemption id, whose offer and place the merchant's log gives.
        driver = driver_key(fleet_id, driver_id)
        fingerprint = hashlib.sha256(f"{offer_id}|{driver}|{place_id}".encode()).hexdigest()
        idempotency = keys.redemption_idempotency(merchant_id, fleet_id, idempotency_key)
        # A retry answers as the first request did, even if the offer changed since; the script
        # checks again atomically, this read only spares the retry the checks below.
        # The driver's erasure token too: what they used up is noted only if no erase came
        # in between (`_NOTE_USED_UP`).
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(idempotency)
            pipe.get(keys.driver_erasures(driver))
            prior, erasures = pipe.execute()
        if prior is not None:
            redemption_id, _, prior_fingerprint = prior.decode().partition("|")
            if prior_fingerprint != fingerprint:
                raise _KEY_REUSED
            return Redemption(redemption_id, offer_id, place_id, driver_id, replayed=True)
        offer = self.catalogue.get_offer(merchant_id, offer_id)
        if place_id not in offer["place_ids"]:
            raise Invalid("the offer is not valid at this place",
                          {"place_id": [f"offer {offer_id} does not include {place_id}"]})
        # The schedule is the offer's own terms: outside it the offer is not on, whatever the
        # car was shown earlier. In the place's local time, as serving reads it; the script
        # refuses after its own checks (a paused offer answers "paused" at any hour).
        if offer.get("schedule"):
            place = self.catalogue.get_place(merchant_id, place_id)
            outside = not is_open_exactly(offer["schedule"], place["timezone"], now,
                                          (place["lat"], place["lng"]))
        else:
            outside = False
        day = now.astimezone(ZoneInfo(offer["timezone"])).date().isoformat()
        outcome, redemption_id, *used_up = self._redeem(
            keys=[
                keys.offer_terms(merchant_id, offer_id),
                keys.offer_redeemed(merchant_id, offer_id),
                keys.offer_redeemed_on(merchant_id, offer_id, day),
                keys.offer_redeemed_by(merchant_id, offer_id),
                idempotency,
                keys.redemptions(merchant_id),
            ],
            args=[now.timestamp(), driver, fingerprint,
                  "r_" + secrets.token_hex(8), place_id, fleet_id,
                  IDEMPOTENCY_TTL_S, DAY_COUNTER_TTL_S, REDEMPTION_LOG_MAXLEN, offer_id,
                  schedule_digest(offer), "1" if outside else "0",
                  _oldest_kept(now.timestamp()), places_digest(offer)],
        )
        outcome = outcome.decode()
        offer_used_up, driver_limit = used_up or (b"0", b"0")
        held = offer.get("used_up_until")  # as read above: no writer's lock for a known case
        if offer_used_up == b"1" or (outcome in ("budget_exhausted", "daily_cap_reached")
                                     and not (held and datetime.fromisoformat(held) > now)):
            self._file_used_up(merchant_id, offer_id, now)
        if driver_limit != b"0":  # serving leaves the offer out for this driver from now on
            self._note_used_up(
                keys=[keys.driver_used_up(driver), keys.driver_erasures(driver)],
                args=[erasures or b"", offer_id, driver_limit, int(now.timestamp()),
                      DRIVER_USED_UP_TTL_S])
        if outcome == "gone":
            raise NotFound(f"offer {offer_id} not found")
        if outcome == "idempotency_key_reused":
            raise _KEY_REUSED
        if outcome in _REFUSALS:
            raise Conflict(_REFUSALS[outcome], {"offer_id": [outcome]})
        return Redemption(id=redemption_id.decode(), offer_id=offer_id, place_id=place_id,
                          driver_id=driver_id, replayed=outcome == "replayed")

    def _file_used_up(self, merchant_id: str, offer_id: str, now: datetime) -> None:
        """Take a used-up offer out of serving (`Catalogue.file_used_up`). The redemption
        stands whatever happens here: the final check before serving refuses used-up offers
        anyway, this only keeps them from taking the places of servable ones."""
        try:
            self.catalogue.file_used_up(merchant_id, offer_id, now)
        except Conflict:  # the merchant's writer lock stayed busy: the next refusal retries
            log.warning("offer %s is used up but stays filed for now: catalogue busy", offer_id)


def _oldest_kept(now: float) -> str:
    """The stream id before which redemption log entries are past their retention."""
    return f"{int((now - REDEMPTION_LOG_RETENTION_S) * 1000)}-0"


def trim_redemption_logs(redis: Redis, merchants: list[str], now: float) -> int:
    """Drop every redemption log entry past its retention now, for every merchant named (a
    round trip per thousand); the entries dropped. Each redemption trims its own merchant's
    log, but a merchant with no redemption since would keep the old entries: this is for a
    periodic job (`offers trim`)."""
    dropped = 0
    for start in range(0, len(merchants), 1000):
        with redis.pipeline(transaction=False) as pipe:
            for merchant in merchants[start:start + 1000]:
                pipe.xtrim(keys.redemptions(merchant), minid=_oldest_kept(now),
                           approximate=False)
            dropped += sum(pipe.execute())
    return dropped

