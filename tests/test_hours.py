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


def test_local_slot_follows_daylight_saving_across_a_change():
    # Europe/Helsinki leaves DST on 2026-10-25 at 01:00 UTC (04:00 EEST -> 03:00 EET).
    before = datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()   # 03:30 local, UTC+3
    after = datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp()    # 03:30 local, UTC+2
    slots = local_slot(np.array([zone_id("Europe/Helsinki")] * 2), np.array([before, after]))
    sunday_0330 = 6 * 96 + 3 * 4 + 2
    assert list(slots) == [sunday_0330, sunday_0330]
