"""When a place is open and an offer is served, as weekly masks checked in bulk.

Opening hours and offer schedules use OpenStreetMap's syntax, read by the `opening_hours`
library. For serving, each (place hours AND offer schedule) pair becomes a weekly mask of
15-minute local-time slots, so thousands of candidates are checked at their arrival times with
compiled loops. A slot is set if the rule is open at any moment of it. A rule the mask cannot
express exactly is marked inexact: one that depends on the date (anything but weekdays and
times: months, days of the month, nth weekdays, weeks, holidays, sun events, years) or that
changes state off the quarter hour. Its mask still never drops an open moment (the union of
its weeks over 2024-2035; every slot for a rule naming a year or a sun event, whose times
depend on where the place is; for a rule with fallbacks (`||`), the union of its parts'), and
the few such items that reach a shortlist are checked with the library at their exact arrival
time, with the place's position (its country's public holidays, its sunrise and sunset).
"""

from __future__ import annotations

import re
import zlib
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import opening_hours
from numba import njit

SLOT_MINUTES = 15
SLOTS_PER_WEEK = 7 * 24 * 60 // SLOT_MINUTES  # 672
MASK_BYTES = SLOTS_PER_WEEK // 8  # 84
# Mondays in different seasons: a rule whose masks differ between them is not purely weekly.
_REFERENCE_MONDAYS = (datetime(2024, 1, 1), datetime(2024, 7, 1), datetime(2024, 10, 7))
ALWAYS = np.ones(SLOTS_PER_WEEK, dtype=bool)


def _open_slots(rule: str, start: datetime, end: datetime,
                budget: list[int]) -> tuple[np.ndarray, bool]:
    """Slots of the week open at any moment from `start` (a Monday 00:00) to `end`, folded
    onto one week, and whether every change of state falls on a slot boundary (if not, a set
    slot may be partly closed). `budget[0]`: how many more intervals the library may list
    for the rule; past it, every slot (and not aligned): the mask may hold more, never less."""
    slots = np.zeros(SLOTS_PER_WEEK, dtype=bool)
    week_s, slot_s = 7 * 24 * 3600, SLOT_MINUTES * 60
    aligned = True
    for begin, stop, state, _ in opening_hours.OpeningHours(rule).intervals(start, end):
        budget[0] -= 1
        if budget[0] < 0:
            return ALWAYS.copy(), False
        # "unknown" (e.g. "Mo-Fr 08:00-18:00 unknown") is not a promise of closing: keep it.
        if state == opening_hours.State.CLOSED:
            continue
        begin_s = (begin - start).total_seconds()
        end_s = (min(stop, end) - start).total_seconds()
        aligned &= begin_s % slot_s == 0 and end_s % slot_s == 0
        if end_s - begin_s >= week_s:
            slots[:] = True
            continue
        first = int(begin_s % week_s // slot_s)
        last = first + int(-(-(end_s - begin_s + begin_s % slot_s) // slot_s))
        slots[first:last] = True
        slots[:max(0, last - SLOTS_PER_WEEK)] = True  # past Sunday: the week's start
    return slots, aligned


# Rules of weekdays and times only: their week is every week. Any other word (a month, a
# holiday, `week`, `easter`, a sun event), a bracket ("Mo[1]"), a bare number (a day of the
# month, a week, a year) or a comment makes a rule depend on the date.
_WEEKLY_TOKEN = re.compile(r"(?:Mo|Tu|We|Th|Fr|Sa|Su|off|closed|open|unknown|24/7"
                           r"|\d{1,2}:\d{2}|[-,;+|\s])", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\d:])\d{4}(?![\d:])")
# A date-dependent rule's mask is the union of its weeks from 2024 to 2035: every day of the
# year falls on every weekday in those years (the leap day on Thursday, Tuesday and Sunday).
_DATED_FROM, _DATED_UNTIL = datetime(2024, 1, 1), datetime(2036, 1, 1)
# Twelve years of a typical dated rule are 300-13,000 intervals; a rule of many short openings a
# day would be hundreds of thousands (seconds of a writer's time, holding the merchant's lock):
# past this many, over all its parts, its mask keeps every slot, and the final check decides.
_MAX_INTERVALS = 40_000
# Public and school holidays are the place's country's, which a rule's mask does not know
# (without one the library never takes a day for a holiday).
_HOLIDAY = re.compile(r"\b(?:PH|SH)\b(?:\s*[+-]\s*\d+\s*days?\b)?")
# Sun events move with the place's latitude and longitude, which a rule's mask does not know
# (without them the library takes a fixed 06:00-18:00).
_SUN_EVENT = re.compile(r"sunrise|sunset|dawn|dusk", re.IGNORECASE)
# `||` outside a quoted comment: the rule's fallbacks.
_FALLBACK = re.compile(r'\|\|(?=(?:[^"]*"[^"]*")*[^"]*$)')


def _weekly(rule: str) -> bool:
    return _WEEKLY_TOKEN.sub("", rule) == ""


@lru_cache(maxsize=4096)
def weekly_slots(rule: str | None) -> tuple[bytes, bool]:
    """The rule's weekly open slots (packed bits, Monday 00:00 first) and whether the week
    expresses it exactly. No rule means always open. The mask of an inexact rule never drops
    an open moment: serving checks the shortlisted ones with the library at arrival."""
    if not rule:
        return np.packbits(ALWAYS).tobytes(), True
    try:
        slots, exact = _rule_slots(rule, [_MAX_INTERVALS])
    except (SyntaxError, opening_hours.ParserError):
        # A part the library does not take on its own (a fallback, the rule with every day a
        # holiday): keep every slot. A mask must never fail a write.
        return np.packbits(ALWAYS).tobytes(), False
    return np.packbits(slots).tobytes(), exact


def _rule_slots(rule: str, budget: list[int]) -> tuple[np.ndarray, bool]:
    """`weekly_slots` unpacked, with the intervals the library may still list (`budget[0]`)
    shared by the rule's parts."""
    parts = _FALLBACK.split(rule)
    if len(parts) > 1:
        # The library's intervals() stop at the first day of a rule with fallbacks
        # (opening-hours-py 2.1.4: "Mo-Fr 08:00-18:00 || ..." came out closed from Monday
        # 18:00 on). A moment's state is that of the part that applies to it, so the union of
        # the parts' masks holds every open moment.
        return np.logical_or.reduce([_rule_slots(part.strip(), budget)[0]
                                     for part in parts]), False
    holidays = {re.sub(r"\s", "", term) for term in _HOLIDAY.findall(rule)}
    if len(holidays) > 1:
        # A day is one kind of holiday or another (PH, SH, the day after PH): with every day
        # all of them, the later rules would hide the earlier ones' hours.
        return ALWAYS.copy(), False
    if holidays:
        # Open on some day either as if it were no holiday (the library without a country)
        # or as if it were one: the same rule with every day a holiday, the holiday written
        # as every day ("Su,PH off") or left out where a weekday follows ("PH Sa,Su off").
        for every_day in (_HOLIDAY.sub("Mo-Su", rule), _HOLIDAY.sub("", rule)):
            try:
                as_holiday = _rule_slots(every_day, budget)[0]
            except (SyntaxError, opening_hours.ParserError):
                continue
            return _plain_slots(rule, budget)[0] | as_holiday, False
        return ALWAYS.copy(), False
    return _plain_slots(rule, budget)


def _plain_slots(rule: str, budget: list[int]) -> tuple[np.ndarray, bool]:
    """The slots of a rule with no fallbacks, whose holidays (if any) are never taken."""
    if _weekly(rule):
        # One week would do; three, compared, guard the classification (once per rule).
        weeks, aligned = zip(*(_open_slots(rule, monday, monday + timedelta(days=7), budget)
                               for monday in _REFERENCE_MONDAYS), strict=True)
        exact = all((week == weeks[0]).all() for week in weeks[1:]) and all(aligned)
        return np.logical_or.reduce(weeks), exact
    if _YEAR.search(rule) or _SUN_EVENT.search(rule):
        # Open in some years only (perhaps none of the years folded), or at times that depend
        # on where the place is.
        return ALWAYS.copy(), False
    return _open_slots(rule, _DATED_FROM, _DATED_UNTIL, budget)[0], False


@lru_cache(maxsize=4096)  # serving's final check asks for every shortlisted offer
def serving_slots(place_hours: str | None, schedule: str | None) -> tuple[bytes, bool]:
    """Slots when the place is open and the offer is served."""
    hours, hours_exact = weekly_slots(place_hours)
    served, served_exact = weekly_slots(schedule)
    both = np.frombuffer(hours, np.uint8) & np.frombuffer(served, np.uint8)
    return both.tobytes(), hours_exact and served_exact


def zone_id(name: str) -> int:
    """A 32-bit id for an IANA timezone name, as index records store it (4 bytes, not 32)."""
    return zlib.crc32(name.encode())


_ZONES_BY_ID = {zone_id(name): name for name in available_timezones() | {"UTC"}}
assert len(_ZONES_BY_ID) == len(available_timezones() | {"UTC"}), "timezone ids collide"


def zone_name(zone: int) -> str:
    return _ZONES_BY_ID[int(zone)]


def local_slot(zones: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """The weekly slot index at each UTC epoch second in `moments`, in each row's timezone
    (`zone_id`s). One zoneinfo lookup per distinct timezone, not per row."""
    slots = np.empty(len(moments), dtype=np.int64)
    # Nearly always one zone: numpy's `unique` (a hash of every row) would cost more than
    # the rest of this function.
    one = len(zones) == 0 or (zones == zones[0]).all()
    for zone in zones[:1] if one else np.unique(zones):
        rows = zones == zone
        at = np.ascontiguousarray(moments[rows], float)
        slots[rows] = _slots_at(at, _utc_offsets(zone_name(zone), at), SLOT_MINUTES)
    return slots


@njit(cache=True)
def _slots_at(moments, offsets, slot_minutes):
    """The weekly slot of each moment at its UTC offset, in one pass (numpy's float floor
    division and integer remainder cost several times their arithmetic)."""
    out = np.empty(len(moments), np.int64)
    for i in range(len(moments)):
        minutes = np.int64((moments[i] + offsets[i]) // 60.0)
        # 1970-01-01 was a Thursday: shift so that Monday 00:00 is slot 0.
        out[i] = ((minutes + 3 * 24 * 60) % (7 * 24 * 60)) // slot_minutes
    return out


def _utc_offsets(zone: str, moments: np.ndarray) -> np.ndarray:
    """UTC offset in seconds at each moment. Arrival times in one answer span hours, not
    months, so a zone changes offset at most once among them: find that change by bisection
    and split the moments there."""
    tz = ZoneInfo(zone)

    def offset(moment: float) -> float:
        return datetime.fromtimestamp(float(moment), tz).utcoffset().total_seconds()

    first, last = float(moments.min()), float(moments.max())
    before, after = offset(first), offset(last)
    if before == after:
        return np.full(len(moments), before)
    while last - first > 1:  # invariant: offset(first) == before, offset(last) == after
        middle = (first + last) / 2
        if offset(middle) == before:
            first = middle
        else:
            last = middle
    return np.where(moments >= last, after, before)


def open_at(masks: np.ndarray, slots: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """For rows of packed weekly masks (n x MASK_BYTES uint8), whether slot `slots[i]` is set
    in row i, or, given `rows`, in row `rows[i]` (of a table of distinct masks)."""
    rows = np.arange(len(slots)) if rows is None else rows
    return _open_at(np.ascontiguousarray(masks, np.uint8), np.ascontiguousarray(rows, np.int64),
                    np.ascontiguousarray(slots, np.int64))


@njit(cache=True)
def _open_at(masks, rows, slots):
    out = np.empty(len(slots), np.bool_)
    for i in range(len(slots)):
        out[i] = (masks[rows[i], slots[i] >> 3] >> (7 - (slots[i] & 7))) & 1
    return out


def is_open_exactly(rule: str | None, timezone: str, moment: datetime,
                    position: tuple[float, float] | None = None) -> bool:
    """The library's own answer at one moment, for the few shortlisted inexact rules; with the
    place's (lat, lng), public holidays (`PH`) are its country's and sun events its own."""
    if not rule:
        return True
    return not _rule_at(rule, timezone, position).is_closed(moment.astimezone(ZoneInfo(timezone)))


@lru_cache(maxsize=4096)
def _rule_at(rule: str, timezone: str, position: tuple[float, float] | None):
    # The zone given is the place's own; the position gives the country (its holidays) and
    # the sun's times (the library ignores it for them when told not to look up a zone).
    return opening_hours.OpeningHours(rule, timezone=ZoneInfo(timezone), coords=position)
