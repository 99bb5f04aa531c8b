"""Labelled rows for training and evaluation: the serving/feedback log and the coupon survey.

Both formats become a `Dataset` of the raw fields `ranking.features` defines, so the one
feature function runs on them exactly as it runs on a request's candidates. The survey's
demographic columns (gender, age, maritalStatus, has_children, education, occupation, income,
car) are never read.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offers.geo_index import CATEGORIES

from .features import (
    ENUM_FIELDS,
    FREQUENCIES,
    PASSENGERS,
    PREFERENCE_KEYS,
    RAW_FIELDS,
    TRIP_PURPOSES,
    WEATHER,
    encode,
    raw_to_features,
)
from .online import FEEDBACK_EVENTS

FORMATS = ("log", "coupon-survey")
# The log CSV: one line per offer shown (or acted on) with what the server knew then.
LOG_COLUMNS = ("driver_id", *RAW_FIELDS, "label")
_INT_FIELDS = {"arrival_weekday", "price_level"}

# The survey's values onto the engine's (see docs/ranking.md for the whole mapping).
SURVEY_COUPONS = {  # coupon -> (engine category, price level; 0 unknown)
    "Coffee House": ("cafe", 0),
    "Bar": ("bar", 0),
    "Carry out & Take away": ("fast_food", 0),
    "Restaurant(<20)": ("restaurant", 1),
    "Restaurant(20-50)": ("restaurant", 2),
}
SURVEY_DESTINATIONS = {"Home": "home", "Work": "work", "No Urgent Place": "leisure"}
SURVEY_PASSENGERS = {"Alone": "alone", "Partner": "partner", "Friend(s)": "friends",
                     "Kid(s)": "kids"}
SURVEY_WEATHER = {"Sunny": "sunny", "Rainy": "rainy", "Snowy": "snowy"}
SURVEY_EXPIRATION_S = {"2h": 2 * 3600.0, "1d": 24 * 3600.0}
SURVEY_PREFERENCES = {"bar": "Bar", "coffee_house": "CoffeeHouse", "carry_away": "CarryAway",
                      "restaurant_lt20": "RestaurantLessThan20",
                      "restaurant_20_50": "Restaurant20To50"}
# Minutes to the venue: under 15, 15 to 25, 25 or more; each taken at the middle of its band.
SURVEY_DETOUR_S = (10 * 60.0, 20 * 60.0, 30 * 60.0)


@dataclass(frozen=True)
class Dataset:
    raw: dict[str, np.ndarray]   # RAW_FIELDS, one row each
    driver_id: np.ndarray        # str
    y: np.ndarray                # int 0/1
    row: np.ndarray              # 0-based index of the data row in the file read
    # How much each row counts as a driver's feedback (`online.FEEDBACK_EVENTS`): 0 for an
    # offer shown that the driver said nothing about, which POST /v1/feedback never learns
    # from; None: every row 1 (a survey's answers).
    feedback_weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Dataset:
        weight = None if self.feedback_weight is None else self.feedback_weight[rows]
        return Dataset({k: v[rows] for k, v in self.raw.items()}, self.driver_id[rows],
                       self.y[rows], self.row[rows], weight)

    def features(self) -> np.ndarray:
        return raw_to_features(self.raw)


def read_dataset(path: str | Path, format: str) -> Dataset:
    if format == "log":
        return read_log(path)
    if format == "coupon-survey":
        return read_coupon_survey(path)
    raise ValueError(f"unknown format {format!r}; one of {', '.join(FORMATS)}")


def _hour_of(text: str) -> float:
    """'7AM' -> 7, '12PM' -> 12, '10PM' -> 22."""
    hour = int(text[:-2]) % 12
    return float(hour + (12 if text[-2:].upper() == "PM" else 0))


def _known(column: str, values: list[str], known: Iterable[str],
           blank: bool = True) -> list[str]:
    """`values`, each one of `known` or, if `blank`, blank (unknown); another is refused,
    naming where (a misspelt `Cafe` read as unknown would quietly train and score something
    else)."""
    known = set(known)
    for row, value in enumerate(values, 1):
        if (value or not blank) and value not in known:
            raise ValueError(f"{column}: data row {row} has {value!r}, not one of "
                             f"{', '.join(sorted(known))}")
    return values


def survey_rows_to_dataset(rows: list[dict[str, str]]) -> Dataset:
    """The survey's rows (csv.DictReader dicts) as the raw fields the server would log."""
    n = len(rows)

    def column(name: str) -> list[str]:
        try:
            return [r[name] for r in rows]
        except KeyError:
            raise ValueError(f"the survey's rows lack the column {name!r}") from None

    def mapped(name: str, mapping: dict[str, str], names: tuple[str, ...]) -> np.ndarray:
        return encode([mapping.get(v) for v in _known(name, column(name), mapping)], names)

    coupons = [SURVEY_COUPONS[v] for v in _known("coupon", column("coupon"), SURVEY_COUPONS,
                                                 blank=False)]
    times = _known("time", column("time"),
                   (f"{h}{m}" for h in range(1, 13) for m in ("AM", "PM")), blank=False)
    minutes_band = (np.array(column("toCoupon_GEQ15min"), dtype=int)
                    + np.array(column("toCoupon_GEQ25min"), dtype=int))
    unknown = np.full(n, np.nan)
    raw = {
        "arrival_hour": np.array([_hour_of(v) for v in times]),
        "arrival_weekday": np.full(n, -1, dtype=np.int64),
        "weather": mapped("weather", SURVEY_WEATHER, WEATHER),
        "temperature_c": (np.array(column("temperature"), dtype=float) - 32) * 5 / 9,
        "passengers": mapped("passanger", SURVEY_PASSENGERS, PASSENGERS),
        "trip_purpose": mapped("destination", SURVEY_DESTINATIONS, TRIP_PURPOSES),
        "fuel_level_pct": unknown, "battery_level_pct": unknown,
        "category": encode([c for c, _ in coupons], CATEGORIES),
        "brand": np.zeros(n, dtype=np.uint64),
        "price_level": np.array([p for _, p in coupons], dtype=np.int64),
        "discount_kind": np.full(n, -1, dtype=np.int64),
        "discount_value": unknown, "value_estimate": np.zeros(n),
        "expires_in_s": np.array([SURVEY_EXPIRATION_S[v] for v in _known(
            "expiration", column("expiration"), SURVEY_EXPIRATION_S, blank=False)]),
        "detour_s": np.asarray(SURVEY_DETOUR_S)[minutes_band],
        "along_m": unknown, "distance_m": unknown,
        "ahead": np.array(column("direction_same"), dtype=float),
    }
    for key, name in SURVEY_PREFERENCES.items():
        raw[f"pref_{key}"] = encode(_known(name, column(name), FREQUENCIES), FREQUENCIES)
    return Dataset(raw, np.array(column("driver_id"), dtype=str), _labels(column("Y"), "Y"),
                   np.arange(n))


def _labels(texts: list[str], column: str) -> np.ndarray:
    """Each row's 0 or 1; anything else is refused, naming the first such row (a 2 or a 0.5
    would train a model of something else)."""
    for row, text in enumerate(texts, 1):
        if text.strip() not in ("0", "1", "0.0", "1.0"):
            raise ValueError(f"{column} must be 0 or 1; data row {row} has {text!r}")
    return np.array([float(text) for text in texts], dtype=np.int64)


def read_coupon_survey(path: str | Path) -> Dataset:
    # Bytes that are not UTF-8 are replaced, not refused: the columns read are checked
    # (`_known`), and the demographic ones, never read, may hold anything.
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        return survey_rows_to_dataset(list(csv.DictReader(file)))


def _parse(name: str, values: list[str]) -> np.ndarray:
    if name in ENUM_FIELDS:
        return encode(_known(name, values, ENUM_FIELDS[name]), ENUM_FIELDS[name])
    if name == "brand":
        return np.array([int(v) if v else 0 for v in values], dtype=np.uint64)
    if name in _INT_FIELDS:
        return np.array([int(v) if v else (-1 if name == "arrival_weekday" else 0)
                         for v in values], dtype=np.int64)
    return np.array([float(v) if v else math.nan for v in values])


def read_log(path: str | Path) -> Dataset:
    """The log CSV (LOG_COLUMNS, header first; blank cells are unknown) as a Dataset."""
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        missing = set(LOG_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"log CSV lacks columns: {', '.join(sorted(missing))}")
        rows = list(reader)
    raw = {name: _parse(name, [r[name] for r in rows]) for name in RAW_FIELDS}
    # An export's `outcome` says which rows were feedback: the others teach a driver nothing.
    weight = None
    if "outcome" in (reader.fieldnames or ()):
        outcomes = _known("outcome", [r["outcome"] for r in rows], [*FEEDBACK_EVENTS, "none"],
                          blank=False)
        weight = np.array([FEEDBACK_EVENTS.get(o, (0, 0.0))[1] for o in outcomes])
    return Dataset(raw, np.array([r["driver_id"] for r in rows], dtype=str),
                   _labels([r["label"] for r in rows], "label"), np.arange(len(rows)), weight)


def format_raw_value(name: str, value) -> str:
    """One raw field as the log CSV writes it (enum names, blank when unknown)."""
    if name in ENUM_FIELDS:
        return ENUM_FIELDS[name][value] if value >= 0 else ""
    if name == "arrival_weekday":
        return str(int(value)) if value >= 0 else ""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def write_log(dataset: Dataset, path: str | Path) -> None:
    """`dataset` as a log CSV, so that `read_log` gives it back."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(LOG_COLUMNS)
        for i in range(len(dataset)):  # an export, not a hot path
            writer.writerow([dataset.driver_id[i],
                             *(format_raw_value(name, dataset.raw[name][i]) for name in RAW_FIELDS),
                             int(dataset.y[i])])


PREFERENCE_FIELDS = tuple(f"pref_{key}" for key in PREFERENCE_KEYS)
