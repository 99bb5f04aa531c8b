"""Weekly serving masks and bulk open-at checks, against the opening_hours library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from offers.hours import (
    MASK_BYTES,
    is_open_exactly,
    local_slot,
    open_at,
    serving_slots,
    weekly_slots,
    zone_id,
)

RULES = ["24/7", "Mo-Fr 07:00-20:00; Sa 08:00-14:00; Su off", "Mo-Su 16:00-02:00",
         "Mo-Fr 08:00-12:00,13:00-17:30", "Tu-Sa 17:00-02:00; Su,Mo off", "off"]
# Every rule above is exact, so the mask alone must agree with the library.


def mask_rows(rule, schedule=None):
    mask, _ = serving_slots(rule, schedule)
    return np.frombuffer(mask, np.uint8).reshape(1, MASK_BYTES)


@pytest.mark.parametrize("rule", RULES)
def test_weekly_mask_agrees_with_the_library_every_quarter_hour_of_a_week(rule):
    zone = "America/Denver"
    start = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # a Monday, 00:00 in Denver
    moments = np.array([(start + timedelta(minutes=15 * i)).timestamp() for i in range(672)])
    slots = local_slot(np.array([zone_id(zone)] * 672), moments)
    masks = np.repeat(mask_rows(rule), 672, axis=0)
    expected = [is_open_exactly(rule, zone, datetime.fromtimestamp(m, UTC)) for m in moments]
    assert list(open_at(masks, slots)) == expected


def test_offer_schedule_narrows_place_hours():
    rows = mask_rows("Mo-Fr 07:00-20:00", "Mo-Fr 06:00-10:00")
    monday_0930 = datetime(2026, 11, 30, 9, 30, tzinfo=UTC).timestamp()
    monday_1030 = datetime(2026, 11, 30, 10, 30, tzinfo=UTC).timestamp()
    slots = local_slot(np.array([zone_id("UTC")] * 2), np.array([monday_0930, monday_1030]))
    assert list(open_at(np.repeat(rows, 2, axis=0), slots)) == [True, False]


def test_no_hours_means_always_open_and_exact():
    mask, exact = weekly_slots(None)
    assert exact and np.frombuffer(mask, np.uint8).min() == 255


def test_date_rules_are_marked_inexact_and_weekly_rules_exact():
    assert weekly_slots("Mo-Fr 08:00-18:00")[1]
    assert not weekly_slots("Jan-Mar Mo-Fr 08:00-18:00; Apr-Dec off")[1]
    assert not weekly_slots("sunrise-sunset")[1]
    assert not weekly_slots("Mo-Fr 08:10-18:00")[1]  # off the quarter hour


# Rules that are open in some weeks and not others: an nth weekday, odd weeks, a day of the
# year, the leap day, a year, the last Monday, a holiday's hours.
DATED = ["Mo[1] 10:00-12:00", "week 1-53/2 Mo 10:00-12:00", "24/7; Dec 25 off",
         "Feb 29 10:00-12:00", "2027 Mo 10:00-12:00", "Mo[-1] 10:00-12:00",
         "Mo-Sa 07:00-21:00; Su 09:00-18:00; Dec 24 07:00-14:00", "Dec 25 Mo 09:00-10:00",
         "Mo-Fr 08:00-18:00; PH off", "Jan-Mar Mo-Fr 08:00-18:00; Apr-Dec off"]


@pytest.mark.parametrize("rule", DATED)
def test_a_rule_that_depends_on_the_date_is_inexact_and_its_mask_drops_no_open_moment(rule):
    """Its mask may hold slots the rule is closed in (serving then asks the library at the
    car's arrival) but never leaves out one it is open in, in any year."""
    mask, exact = weekly_slots(rule)
    assert not exact
    rng = np.random.default_rng(7)
    zone = "UTC"
    # Random quarter hours of 2026-2060, and every quarter hour of a few weeks that matter.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(minutes=15 * int(k)) for k in rng.integers(0, 35 * 35_040, 3_000)]
    for first in (datetime(2027, 12, 20, tzinfo=UTC), datetime(2028, 2, 26, tzinfo=UTC),
                  datetime(2028, 12, 21, tzinfo=UTC), datetime(2029, 10, 29, tzinfo=UTC)):
        moments += [first + timedelta(minutes=15 * i) for i in range(7 * 96)]
    opened = [m for m in moments if is_open_exactly(rule, zone, m)]
    assert opened, "the sample should hold open moments"
    slots = local_slot(np.full(len(opened), zone_id(zone)),
                       np.array([m.timestamp() for m in opened]))
    rows = np.frombuffer(mask, np.uint8).reshape(1, MASK_BYTES)
    assert open_at(np.repeat(rows, len(opened), axis=0), slots).all()


def test_a_weekly_rule_is_exact_and_its_mask_is_its_week():
    for rule in RULES + ["Mo 10:00-12:00; Tu off", "Su 22:00-02:00", "mo-fr 08:00-18:00"]:
        assert weekly_slots(rule)[1], rule


def test_local_slot_follows_daylight_saving_across_a_change():
    # Europe/Helsinki leaves DST on 2026-10-25 at 01:00 UTC (04:00 EEST -> 03:00 EET).
    before = datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()   # 03:30 local, UTC+3
    after = datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp()    # 03:30 local, UTC+2
    slots = local_slot(np.array([zone_id("Europe/Helsinki")] * 2), np.array([before, after]))
    sunday_0330 = 6 * 96 + 3 * 4 + 2
    assert list(slots) == [sunday_0330, sunday_0330]


FALLBACKS = ['Mo-Fr 08:00-18:00 || "by appointment"',
             'Mo-Fr 08:00-18:00; Sa,Su 10:00-14:00 || "by appointment"',
             'Mo-Fr 09:00-17:00 || unknown "call"', 'Mo-Fr 08:00-12:00 || Sa 09:00-11:00',
             'Mo-Fr 08:00-18:00 || "closed || on request"']


@pytest.mark.parametrize("rule", FALLBACKS)
def test_a_rule_with_fallbacks_is_inexact_and_its_mask_drops_no_open_moment(rule):
    """The library's intervals() stop after the first day of such a rule (it had these
    places closed from Monday evening on), so the mask is the union of the rule's parts."""
    mask, exact = weekly_slots(rule)
    assert not exact
    zone = "UTC"
    monday = datetime(2026, 11, 30, tzinfo=UTC)
    moments = [monday + timedelta(minutes=15 * i + 7) for i in range(672)]
    opened = [m for m in moments if is_open_exactly(rule, zone, m)]
    assert any(m.weekday() == 1 for m in opened), "open on Tuesday, by the library"
    slots = local_slot(np.full(len(opened), zone_id(zone)),
                       np.array([m.timestamp() for m in opened]))
    rows = np.frombuffer(mask, np.uint8).reshape(1, MASK_BYTES)
    assert open_at(np.repeat(rows, len(opened), axis=0), slots).all()


HELSINKI = (60.1699, 24.9384)


def test_sun_events_follow_the_place_and_their_mask_keeps_every_slot():
    mask, exact = weekly_slots("sunrise-sunset")
    assert not exact and np.frombuffer(mask, np.uint8).min() == 255
    zone = "Europe/Helsinki"
    before_sunrise = datetime(2026, 12, 1, 5, 30, tzinfo=UTC)  # 07:30 local; sunrise ~09:10
    noon = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    evening = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)       # 16:30 local; sunset ~15:15
    assert [is_open_exactly("sunrise-sunset", zone, m, HELSINKI)
            for m in (before_sunrise, noon, evening)] == [False, True, False]


def test_public_holidays_are_those_of_the_places_country():
    rule, zone = "Mo-Su 08:00-20:00; PH off", "Europe/Helsinki"
    christmas, eve = (datetime(2026, 12, day, 10, 0, tzinfo=UTC) for day in (25, 23))
    assert not is_open_exactly(rule, zone, christmas, HELSINKI)
    assert is_open_exactly(rule, zone, eve, HELSINKI)


def test_a_dated_rule_of_very_many_openings_keeps_every_slot():
    openings = ",".join(f"{h:02d}:{m:02d}-{h:02d}:{m + 5:02d}"
                        for h in range(7, 19) for m in (0, 20, 40))
    rule = f"Jan-Dec {openings}"  # 36 openings a day, every day of twelve years
    mask, exact = weekly_slots(rule)
    assert not exact and np.frombuffer(mask, np.uint8).min() == 255


HOLIDAY_RULES = ["Mo-Fr 16:00-22:00; PH 10:00-22:00", "Mo-Fr 08:00-18:00; PH off",
                 "Mo-Sa 09:00-17:00; Su,PH off", "Mo-Fr 16:00-22:00; PH,SH 10:00-14:00",
                 'Mo-Fr 16:00-20:00; PH 09:00-12:00 || "on call"',
                 # kinds of holiday mixed: a day is one or the other
                 "Mo-Fr 09:00-17:00; PH 10:00-16:00; SH off",
                 "Mo-Fr 09:00-17:00; PH +1 day 12:00-17:00; PH off",
                 "Mo-Sa 08:00-18:00; PH 10:00-14:00; PH +1 day off",
                 # a holiday with a weekday selector: "every day" cannot be written as Mo-Su
                 "Mo-Fr 08:00-18:00; SH Mo-Fr 09:00-12:00", "Mo-Su 08:00-18:00; PH Mo-Fr off",
                 "PH Sa,Su off; Mo-Su 08:00-12:00"]


@pytest.mark.parametrize("rule", HOLIDAY_RULES)
@pytest.mark.parametrize("zone, position", [("Europe/Helsinki", HELSINKI),
                                            ("America/Denver", (39.74, -104.99))])
def test_a_rule_with_holidays_keeps_every_moment_open_on_the_places_holidays(rule, zone,
                                                                             position):
    """The mask cannot know the place's country; the final check asks with its position.
    Every quarter hour of Christmas week and New Year's Day it is open in must be in it."""
    mask, exact = weekly_slots(rule)
    assert not exact
    start = datetime(2026, 12, 21, tzinfo=UTC)
    moments = [start + timedelta(minutes=15 * i + 7) for i in range(12 * 96)]
    opened = [m for m in moments if is_open_exactly(rule, zone, m, position)]
    assert opened
    slots = local_slot(np.full(len(opened), zone_id(zone)),
                       np.array([m.timestamp() for m in opened]))
    rows = np.frombuffer(mask, np.uint8).reshape(1, MASK_BYTES)
    assert open_at(np.repeat(rows, len(opened), axis=0), slots).all()


def test_a_rule_of_many_dated_fallbacks_shares_one_cap():
    openings = ",".join(f"{h:02d}:{m:02d}-{h:02d}:{m + 5:02d}"
                        for h in range(8, 12) for m in (0, 20, 40))
    rule = " || ".join(f"{month} {openings}" for month in ("Jan", "Feb", "Mar", "Apr", "May",
                                                           "Jun", "Jul", "Aug"))
    mask, exact = weekly_slots(rule)  # each part alone stays under the cap; all together not
    assert not exact and np.frombuffer(mask, np.uint8).min() == 255
