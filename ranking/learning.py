"""The learning loop's Redis side: drivers' profiles, what each recommendation served, feedback.

- A driver's profile (`keys.driver_profile`) holds their declared preferences and the online
  state `ranking.online.update` learns from their feedback. Drivers are known only by the
  pseudonymous, fleet-scoped driver key; nothing here stores a fleet's own driver id, a
  position or a demographic.
- Every served recommendation is kept for `SERVED_TTL_S`, the newest `MAX_KEPT_PER_DRIVER` of
  a driver's (what feedback may refer to: its items' feature rows, scores and propensities)
  and appended, one entry per item, to a bounded
  stream (`keys.SERVED_LOG`); every counted feedback event goes to `keys.FEEDBACK_LOG`. Those two
  streams are the training and off-policy evaluation log (`offers ranking export`).
- Feedback updates the driver's state in one optimistic transaction on the driver's hash tag:
  the event is counted once (a set of seen events per recommendation) and the state written in
  the same MULTI, so concurrent feedback for one driver never loses an update.
"""

from __future__ import annotations

import csv
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from redis import Redis, WatchError

from offers import keys
from offers.errors import NotFound
from offers.redemptions import driver_key, earlier_driver_keys
from offers.scripts import run_pipelined

from . import online
from .datasets import LOG_COLUMNS, format_raw_value
from .features import N_FEATURES, RAW_FIELDS
from .learned import LearnedRanker

SERVED_TTL_S = 7 * 24 * 3600
# A car asking every few seconds for a week would keep a hundred thousand records (a few KB
# each); feedback comes within minutes of a recommendation, so a driver keeps their newest.
MAX_KEPT_PER_DRIVER = 1000
LOG_MAXLEN = 1_000_000
DECISION_LOG_MAXLEN = 100_000  # each entry holds ~10 feature rows (about 3 KB)
# The logs say which places a driver was offered when, which is near enough a location history:
# kept for training and evaluation for this long, then trimmed.
LOG_RETENTION_S = 30 * 24 * 3600
EVENTS = ("impression", "click", "accept", "dismiss", "redeem")


class UnknownRecommendation(NotFound):
    """No such recommendation (or offer in it) for this fleet."""

    def __init__(self, recommendation_id: str):
        super().__init__(f"No recommendation {recommendation_id!r} with that offer for this fleet.")


@dataclass(frozen=True)
class Profile:
    preferences: dict | None
    state: online.DriverState | None
    erasures: bytes | None = None  # the driver's erasure token, read before the rest


@dataclass(frozen=True)
class ServedItem:
    offer_id: str
    place_id: str
    position: int
    score: float
    propensity: float
    features: np.ndarray  # as scored (the online update learns from exactly these)
    raw: dict             # the raw fields behind them (the log, for training later)


@dataclass(frozen=True)
class Decision:
    """A recommendation's first choice, for off-policy evaluation (`ranking.offpolicy`): the
    logging policy's top candidates by its own score, which one came first, how likely that
    was and among how many eligible candidates."""

    offer_ids: list[str]
    features: np.ndarray   # float rows, one per candidate
    chosen: int            # index into offer_ids; -1 when the first item was not among them
    propensity: float
    eligible: int


def new_recommendation_id(driver: str) -> str:
    """`rec_<driver key>_<random>`: routes feedback to the driver's hash tag by itself."""
    return f"rec_{driver}_{secrets.token_hex(8)}"


# KEYS: the served log, the decision log. ARGV: their bounds (entries), the oldest stream id
# kept, the number of served items and of values in each one's entry, then each item's entry
# (field, value, field, value...), then the decision's entry (if any) as the rest. Appends
# them in order, trimming as it goes: by length approximately (whole stream nodes, cheap),
# by age exactly (an entry past LOG_RETENTION_S never stays for its node's sake). Answers the
# new entries' ids, the served ones then the decision's.
_LOG = """
local items, width, at, ids = tonumber(ARGV[4]), tonumber(ARGV[5]), 6, {}
for i = 1, items do
  ids[i] = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*",
                      unpack(ARGV, at, at + width - 1))
  at = at + width
end
redis.call("XTRIM", KEYS[1], "MINID", ARGV[3])
if at <= #ARGV then
  ids[items + 1] = redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[2], "*", unpack(ARGV, at, #ARGV))
  redis.call("XTRIM", KEYS[2], "MINID", ARGV[3])
end
return ids
"""


# Lua shared by the scripts below: `now`, Redis's own clock in epoch milliseconds; and the
# driver's list (KEYS[2]) kept until its last member's time, never shorter.
_NOW_MS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""
_LIST_UNTIL_LAST = """
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
"""

# KEYS: the served record, the driver's list of recommendations, their erasure token. ARGV:
# the token as read before the driver's profile ('' for none), how long the record is kept
# (milliseconds), the recommendation id, how many the driver keeps at most, the names of their
# served records and feedback sets but for the recommendation id (`keys.served(driver, '')`,
# `keys.feedback_seen(driver, '')`), then the record's fields and values. Keeps the record
# and lists it, both to expire at one time of Redis's own clock (whatever the app hosts'
# clocks say), drops ids past their time from the list, and over the most kept, the oldest
# with their records. Keeps nothing (0) if the driver was erased since the read: what the
# request read of them is gone, and must not come back with this record.
_KEEP = """
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[1] then return 0 end
""" + _NOW_MS + """
local expires = string.format('%.0f', now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], unpack(ARGV, 7, #ARGV))
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('ZADD', KEYS[2], expires, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%.0f', now))
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  for _, rec in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('UNLINK', ARGV[5] .. rec, ARGV[6] .. rec)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
""" + _LIST_UNTIL_LAST + """
return 1
"""
# An in-flight recommendation lives seconds; the token only has to outlast those.
ERASURES_TTL_S = 3600

# KEYS: a served record, its driver's list, its feedback set. ARGV: the recommendation id, how
# long a record is kept (milliseconds). Lists a record an earlier release kept (unlisted, or
# listed in seconds), to expire when it does (one with no expiry from now on), and gives its
# feedback set the same end (releases before renewed it at each event). 0 if the record is
# gone.
_LIST = """
local expires = redis.call('PEXPIRETIME', KEYS[1])
if expires == -2 then return 0 end
""" + _NOW_MS + """
if expires == -1 then
  expires = now + tonumber(ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expires))
end
expires = string.format('%.0f', expires)
redis.call('ZADD', KEYS[2], expires, ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIREAT', KEYS[3], expires) end
""" + _LIST_UNTIL_LAST + """
return 1
"""
# KEYS: a feedback set, its served record. Unlinks the set if the record is gone.
_DROP_ORPHAN = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('UNLINK', KEYS[1])
"""
_KEPT_KEY = re.compile(rb"\{d:([0-9a-f]+)\}:(served|feedback):(.+)")


class LearningLoop:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._log = redis.register_script(_LOG)
        self._keep = redis.register_script(_KEEP)
        self._list = redis.register_script(_LIST)
        self._drop_orphan = redis.register_script(_DROP_ORPHAN)

    # -- profiles ----------------------------------------------------------------------------

    def profile_commands(self, fleet_id: str, driver_id: str) -> list[Callable]:
        """The reads of a driver's profile, a command each (to share a round trip): the
        erasure token first, so that a profile read before an erase is always seen with the
        token from before it."""
        driver = driver_key(fleet_id, driver_id)
        return [lambda pipe: pipe.get(keys.driver_erasures(driver)),
                lambda pipe: pipe.hmget(keys.driver_profile(driver), "preferences", "state")]

    @staticmethod
    def profile_from(erasures: bytes | None, reply: list) -> Profile:
        preferences, state = reply
        return Profile(orjson.loads(preferences) if preferences else None,
                       _state(state), erasures)

    def profile(self, fleet_id: str, driver_id: str) -> Profile:
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in self.profile_commands(fleet_id, driver_id):
                queue(pipe)
            return self.profile_from(*pipe.execute())

    def set_preferences(self, fleet_id: str, driver_id: str, preferences: dict) -> None:
        self.redis.hset(keys.driver_profile(driver_key(fleet_id, driver_id)), "preferences",
                        orjson.dumps(preferences))

    def forget(self, fleet_id: str, driver_id: str) -> None:
        """Erase what the engine holds on a driver under their key: preferences, what it
        learned, the offers they used up, and the recommendations kept for feedback (so a late
        feedback event cannot bring a state back). The bounded logs keep their pseudonymous
        entries until trimmed.

        The recommendations are found by name in the driver's own list, not by a scan of the
        keyspace (which grows with every driver and offer), and deleted with the profile in one
        transaction watching the list, which also renews the driver's erasure token: a
        recommendation served meanwhile is deleted too or stays listed for the next erase, one
        that read the profile before keeps nothing (`_KEEP`), and feedback racing the erase (it
        watches the served record) either lands before it, and is erased, or finds nothing.
        Then the same under the pseudonyms the driver had before (`earlier_driver_keys`: the
        unkeyed one of releases before keyed ones, whose kept recommendations `offers migrate`
        lists, and the one under a secret the deployment no longer uses)."""
        self._erase(driver_key(fleet_id, driver_id), renew_token=True)
        for earlier in earlier_driver_keys(fleet_id, driver_id):
            self._erase(earlier, renew_token=False)

    def _erase(self, driver: str, renew_token: bool) -> None:
        listed = keys.driver_recommendations(driver)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(listed)
                    kept = [rec.decode() for rec in pipe.zrange(listed, 0, -1)]
                    pipe.multi()
                    if renew_token:
                        # A fresh token, not a count: a counter that expired would start
                        # again at a value a request may have read before.
                        pipe.set(keys.driver_erasures(driver), secrets.token_hex(8),
                                 ex=ERASURES_TTL_S)
                    pipe.unlink(keys.driver_profile(driver), listed, keys.driver_used_up(driver),
                                *(key for rec in kept for key in (
                                    keys.served(driver, rec), keys.feedback_seen(driver, rec))))
                    pipe.execute()
                    return
                except WatchError:
                    continue

    def migrate(self) -> dict[str, int]:
        """Bring what releases before driver lists kept up to this one (`offers migrate`, once
        after upgrading, before the new release serves: a scan of the keyspace, a round trip
        per thousand keys): list every kept recommendation under its driver, so that an erase
        finds it and feedback takes it; drop the feedback sets whose recommendation is gone
        (nothing can use them, and no list could name them) and the erase marks releases
        before left."""
        done = {"listed": 0, "orphaned_feedback_sets": 0, "erase_marks": 0}
        batch: list[tuple[str, tuple]] = []
        for key in self.redis.scan_iter(match="{d:*}:*", count=1000):
            if key.endswith(b":erased"):
                batch.append(("erase_marks", ("UNLINK", key)))
            elif match := _KEPT_KEY.fullmatch(key):
                driver, kind, rec = (part.decode() for part in match.groups())
                served = keys.served(driver, rec)
                batch.append(("listed", (
                    "EVALSHA", self._list.sha, 3, served, keys.driver_recommendations(driver),
                    keys.feedback_seen(driver, rec), rec, SERVED_TTL_S * 1000))
                    if kind == "served" else ("orphaned_feedback_sets", (
                        "EVALSHA", self._drop_orphan.sha, 2, key, served)))
            if len(batch) == 1000:
                self._migrated(batch, done)
                batch = []
        self._migrated(batch, done)
        return done

    def _migrated(self, batch: list[tuple[str, tuple]], done: dict[str, int]) -> None:
        replies = run_pipelined(self.redis, (self._list, self._drop_orphan),
                                [command for _, command in batch])
        for (kind, _), reply in zip(batch, replies, strict=True):
            done[kind] += reply

    # -- served recommendations ----------------------------------------------------------------

    def record_served(self, recommendation_id: str, fleet_id: str, driver_id: str, model: str,
                      policy: str, items: list[ServedItem], decision: Decision | None,
                      erasures: bytes | None) -> None:
        """Keep what was served (for feedback) and log it, in one round trip: a script keeping
        the driver's record and listing it (`_KEEP`: nothing if the driver's erasure token,
        as read before their profile (`erasures`), has changed), and one appending to the logs
        (which share a hash tag), a command for all, not one per item. The logs are
        written first: if the driver was erased before the record was kept, what the request
        read of them (their declared preferences among the raw fields) is taken out of the
        logs again (the two scripts' keys are on different hash tags, so one script cannot
        do both)."""
        driver = driver_key(fleet_id, driver_id)
        now = time.time()
        entries: list = []
        for item in items:
            entries += ["recommendation_id", recommendation_id, "driver", driver, "at", now,
                       "model", model, "policy", policy, "offer_id", item.offer_id,
                       "place_id", item.place_id, "position", item.position,
                       "score", item.score, "propensity", item.propensity,
                       "raw", orjson.dumps(item.raw, option=orjson.OPT_SERIALIZE_NUMPY)]
        logged = [LOG_MAXLEN, DECISION_LOG_MAXLEN, _oldest_kept(now), len(items),
                  len(entries) // max(len(items), 1), *entries]
        if decision is not None:
            logged += ["recommendation_id", recommendation_id, "driver", driver, "at", now,
                       "model", model, "policy", policy, "chosen", decision.chosen,
                       "propensity", decision.propensity, "eligible", decision.eligible,
                       "offer_ids", orjson.dumps(decision.offer_ids),
                       "shape", f"{len(decision.features)}x{decision.features.shape[1]}",
                       "features", decision.features.astype("<f4").tobytes()]
        logged_ids, kept = run_pipelined(self.redis, (self._log, self._keep), [
            ("EVALSHA", self._log.sha, 2, keys.SERVED_LOG, keys.DECISION_LOG, *logged),
            ("EVALSHA", self._keep.sha, 3, keys.served(driver, recommendation_id),
             keys.driver_recommendations(driver), keys.driver_erasures(driver),
             erasures or b"", SERVED_TTL_S * 1000, recommendation_id, MAX_KEPT_PER_DRIVER,
             keys.served(driver, ""), keys.feedback_seen(driver, ""),
             "fleet", fleet_id, "model", model, "at", now,
             "items", orjson.dumps({item.offer_id: {
                 "features": item.features.tolist(), "score": item.score,
                 "propensity": item.propensity, "position": item.position,
             } for item in items}, option=orjson.OPT_SERIALIZE_NUMPY))])
        if not kept:  # erased meanwhile: rare, a round trip more
            with self.redis.pipeline(transaction=False) as pipe:
                if items:  # XDEL of no id is an error
                    pipe.xdel(keys.SERVED_LOG, *logged_ids[:len(items)])
                if len(logged_ids) > len(items):
                    pipe.xdel(keys.DECISION_LOG, logged_ids[len(items)])
                pipe.execute()

    # -- feedback ------------------------------------------------------------------------------

    def feedback(self, fleet_id: str, recommendation_id: str, offer_id: str, event: str,
                 learner: LearnedRanker | None) -> bool:
        """Count one feedback event and learn from it; False if it was already counted.

        `learner` is the learned ranker serving now (its global logit is what the driver's
        state corrects), or None while the baseline serves: the event is then logged, not
        learned. Only the first outcome per offer and recommendation teaches (an accepted offer
        that is then redeemed is one positive, not two)."""
        driver = keys.recommendation_driver(recommendation_id)
        if driver is None:
            raise UnknownRecommendation(recommendation_id)
        served_key = keys.served(driver, recommendation_id)
        seen_key = keys.feedback_seen(driver, recommendation_id)
        profile_key, listed_key = keys.driver_profile(driver), keys.driver_recommendations(driver)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # The served record too: an erase (DELETE) deletes it with the profile in
                    # one transaction, so feedback racing it either lands before (and is
                    # erased) or fails and finds nothing.
                    pipe.watch(profile_key, seen_key, served_key)
                    fleet, raw_items = pipe.hmget(served_key, "fleet", "items")
                    expires_ms = pipe.zscore(listed_key, recommendation_id)
                    item = orjson.loads(raw_items).get(offer_id) if raw_items else None
                    # Unlisted: kept by a release before the list and not yet listed by
                    # `offers migrate`, which no erase could find: it teaches nothing.
                    if (fleet is None or fleet.decode() != fleet_id or item is None
                            or expires_ms is None):
                        raise UnknownRecommendation(recommendation_id)
                    counted, learned = pipe.smismember(
                        seen_key, [f"{offer_id}|{event}", f"{offer_id}|learned"])
                    if counted:
                        return False
                    # The offer's first outcome is the one that teaches, or would have: one
                    # given while the baseline served is taken too (`|learned`), so that a
                    # later one, once a model serves, does not teach what the export's label,
                    # the first outcome, contradicts.
                    first = not learned and event in online.FEEDBACK_EVENTS
                    state = self._learn(pipe, profile_key, learner, item, event) if first \
                        else None
                    pipe.multi()
                    pipe.sadd(seen_key, f"{offer_id}|{event}")
                    if first:
                        pipe.sadd(seen_key, f"{offer_id}|learned")
                    if state is not None:
                        pipe.hset(profile_key, "state", state)
                    # Gone with the record it counts for, when the list drops it too (a TTL of
                    # its own, renewed by each event, would outlive both).
                    pipe.pexpireat(seen_key, int(expires_ms))
                    pipe.execute()
                    break
                except WatchError:
                    continue
        now = time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(keys.FEEDBACK_LOG, {
                "recommendation_id": recommendation_id, "driver": driver, "offer_id": offer_id,
                "event": event, "at": now, "position": item["position"],
                "propensity": item["propensity"]}, maxlen=LOG_MAXLEN, approximate=True)
            pipe.xtrim(keys.FEEDBACK_LOG, minid=_oldest_kept(now), approximate=False)
            pipe.execute()
        return True

    @staticmethod
    def _learn(pipe, profile_key: str, learner: LearnedRanker | None, item: dict,
               event: str) -> bytes | None:
        """The driver's new state after this outcome, or None while the baseline serves."""
        if learner is None:
            return None
        state = _state(pipe.hget(profile_key, "state")) or learner.model.initial_state()
        features = np.asarray([item["features"]], dtype=np.float64)
        label, weight = online.FEEDBACK_EVENTS[event]
        state = online.update(state, features, np.array([label]),
                              learner.model.global_logits(features), np.array([weight]))
        return state.to_bytes()


def _state(raw: bytes | None) -> online.DriverState | None:
    """A stored driver state, or None when there is none or it is of an older layout (a
    release that changed the driver's terms): the driver then starts again from the prior."""
    if not raw:
        return None
    try:
        return online.DriverState.from_bytes(raw)
    except ValueError:
        return None


def _oldest_kept(now: float) -> str:
    """The stream id before which log entries are past LOG_RETENTION_S."""
    return f"{int((now - LOG_RETENTION_S) * 1000)}-0"


def trim_logs(redis: Redis, now: float) -> int:
    """Drop every entry of the learning loop's logs past LOG_RETENTION_S now; the entries
    dropped. Each write trims its own log, but an engine that stops serving would keep them:
    this is for a periodic job (`offers trim`)."""
    with redis.pipeline(transaction=False) as pipe:
        for log in (keys.SERVED_LOG, keys.FEEDBACK_LOG, keys.DECISION_LOG):
            pipe.xtrim(log, minid=_oldest_kept(now), approximate=False)
        return sum(pipe.execute())


# -- export --------------------------------------------------------------------------------

EXPORT_EXTRA_COLUMNS = ("recommendation_id", "offer_id", "place_id", "at", "model", "policy",
                        "position", "score", "propensity", "outcome")
_POSITIVE, _NEGATIVE = ("accept", "redeem"), ("dismiss",)


def _read_stream(redis: Redis, key: str, batch: int = 10_000):
    start = "-"
    while True:
        entries = redis.xrange(key, min=start, count=batch)
        yield from ({k.decode(): v for k, v in fields.items()} for _, fields in entries)
        if len(entries) < batch:
            return
        start = "(" + entries[-1][0].decode()


def _outcomes(redis: Redis) -> dict[tuple[str, str], str]:
    """(recommendation, offer) -> the first outcome the driver gave (accept, redeem, dismiss)."""
    outcomes: dict[tuple[str, str], str] = {}
    for entry in _read_stream(redis, keys.FEEDBACK_LOG):
        event = entry["event"].decode()
        if event in _POSITIVE + _NEGATIVE:
            outcomes.setdefault((entry["recommendation_id"].decode(),
                                 entry["offer_id"].decode()), event)
    return outcomes


def export(redis: Redis, directory: str | Path) -> dict[str, int]:
    """Write the logs as `log.csv` (one row per served item: `ranking.datasets.LOG_COLUMNS`,
    then EXPORT_EXTRA_COLUMNS; label 1 for accepted or redeemed, else 0; outcome `none` when
    the driver said nothing) and `decisions.npz` (first choices, for `ranking.offpolicy`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    outcomes = _outcomes(redis)
    served = 0
    with open(directory / "log.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow((*LOG_COLUMNS, *EXPORT_EXTRA_COLUMNS))
        for entry in _read_stream(redis, keys.SERVED_LOG):
            text = {k: v.decode() for k, v in entry.items() if k != "raw"}
            raw = orjson.loads(entry["raw"])
            outcome = outcomes.get((text["recommendation_id"], text["offer_id"]), "none")
            writer.writerow((
                text["driver"],
                *(format_raw_value(name, math.nan if raw.get(name) is None else raw[name])
                  for name in RAW_FIELDS),
                int(outcome in _POSITIVE),
                *(text[c] for c in EXPORT_EXTRA_COLUMNS[:-1]), outcome))
            served += 1
    rows, chosen, propensity, eligible, reward, recs, sizes = [], [], [], [], [], [], []
    for entry in _read_stream(redis, keys.DECISION_LOG):
        count, width = map(int, entry["shape"].decode().split("x"))
        rows.append(np.frombuffer(entry["features"], "<f4").reshape(count, width))
        index = int(entry["chosen"])
        offer_ids = orjson.loads(entry["offer_ids"])
        rec = entry["recommendation_id"].decode()
        chosen.append(index)
        propensity.append(float(entry["propensity"]))
        eligible.append(int(entry["eligible"]))
        reward.append(int(index >= 0 and outcomes.get((rec, offer_ids[index])) in _POSITIVE))
        recs.append(rec)
        sizes.append(count)
    np.savez_compressed(
        directory / "decisions.npz",
        features=np.concatenate(rows) if rows else np.zeros((0, N_FEATURES), "<f4"),
        sizes=np.array(sizes, np.int64), chosen=np.array(chosen, np.int64),
        propensity=np.array(propensity), eligible=np.array(eligible, np.int64),
        reward=np.array(reward, np.int64), recommendation_id=np.array(recs, dtype=str))
    return {"served_items": served, "decisions": len(chosen), "outcomes": len(outcomes)}
