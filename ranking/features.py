"""The one feature definition: raw fields in, a numeric matrix out, for serving, logs and training.

Every path into a model goes through `raw_to_features`: the recommendation endpoint (via
`candidates_to_raw`, one row per candidate), the serving/feedback log (`ranking.datasets`
reads its CSV into the same raw fields) and the UCI coupon survey (`ranking.datasets` maps its
columns onto the same raw fields). A feature computed anywhere else would drift from the one
the model was trained on, so this module must never be bypassed, and it must never see
demographics: there is no raw field for them.

Raw fields are numpy arrays of one length (one row per candidate or per logged offer). Enums
are stored as int codes into the tuples below, -1 when unknown; numbers are float, nan when
unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from offers.geo_index import CATEGORIES, DISCOUNT_KINDS

from .candidates import Candidates

# The context enums, as api/schemas.py accepts them (a test keeps the two in step).
WEATHER = ("sunny", "cloudy", "rainy", "snowy", "foggy")
PASSENGERS = ("alone", "partner", "friends", "kids")
TRIP_PURPOSES = ("home", "work", "leisure")

# Declared preferences: how often a driver visits each kind of place, per month.
PREFERENCE_KEYS = ("bar", "coffee_house", "carry_away", "restaurant_lt20", "restaurant_20_50")
FREQUENCIES = ("never", "less1", "1~3", "4~8", "gt8")

# The raw field each enum-coded column takes its codes from.
ENUM_FIELDS: dict[str, tuple[str, ...]] = {
    "weather": WEATHER, "passengers": PASSENGERS, "trip_purpose": TRIP_PURPOSES,
    "category": CATEGORIES, "discount_kind": DISCOUNT_KINDS,
    **{f"pref_{key}": FREQUENCIES for key in PREFERENCE_KEYS},
}
# Everything a model may see, in the order the log CSV stores it (see docs/ranking.md).
RAW_FIELDS = (
    # context the car knows (arrival_* in the place's local time)
    "arrival_hour", "arrival_weekday", "weather", "temperature_c", "passengers",
    "trip_purpose", "fuel_level_pct", "battery_level_pct",
    # the offer and its place
    "category", "brand", "price_level", "discount_kind", "discount_value", "value_estimate",
    "expires_in_s",
    # where it is
    "detour_s", "along_m", "distance_m", "ahead",
    # what the driver declared
    *(f"pref_{key}" for key in PREFERENCE_KEYS),
)

# Which declared frequency speaks for an offer of each category (restaurants by price level).
_CATEGORY_PREFERENCE = {"bar": "bar", "cafe": "coffee_house", "fast_food": "carry_away"}
_CHEAP_RESTAURANT_MAX_PRICE = 1   # price level 1 is "under $20" in the survey's terms
# preference_for_category's table: a column per key, then "either restaurant", then unknown.
_CHEAP_COLUMN = PREFERENCE_KEYS.index("restaurant_lt20")
_DEAR_COLUMN = PREFERENCE_KEYS.index("restaurant_20_50")
_EITHER_COLUMN, _NO_COLUMN = len(PREFERENCE_KEYS), len(PREFERENCE_KEYS) + 1
_NO_CATEGORY = len(CATEGORIES)  # where a code is unknown
_PREFERENCE_COLUMN = np.array(
    [PREFERENCE_KEYS.index(_CATEGORY_PREFERENCE[c]) if c in _CATEGORY_PREFERENCE else _NO_COLUMN
     for c in CATEGORIES] + [_NO_COLUMN], np.intp)

FEATURE_NAMES = (
    "hour", "hour_sin", "hour_cos", "weekday", "weekend",
    *(f"weather={w}" for w in WEATHER), "temperature_c",
    *(f"passengers={p}" for p in PASSENGERS),
    *(f"trip_purpose={t}" for t in TRIP_PURPOSES),
    "fuel_level_pct", "battery_level_pct",
    *(f"category={c}" for c in CATEGORIES), "category_code",
    "brand_known", "price_level",
    *(f"discount_kind={k}" for k in DISCOUNT_KINDS), "discount_value", "value_estimate",
    "expires_in_h_log",
    "detour_min", "along_km", "distance_km", "ahead",
    *(f"pref_{key}" for key in PREFERENCE_KEYS),
    "pref_for_category",
)
N_FEATURES = len(FEATURE_NAMES)


def preference_for_category(category: np.ndarray, price_level: np.ndarray,
                            preferences: Mapping[str, np.ndarray]) -> np.ndarray:
    """The declared frequency code (0..4, nan unknown) that speaks for each offer's category.

    `preferences` maps each key of PREFERENCE_KEYS to an array of frequency codes (-1 unknown).
    Restaurants at price level 1 read `restaurant_lt20`, at 2 or more `restaurant_20_50`, at
    an unknown level the mean of the two."""
    n = len(category)
    # One column per candidate answer (the keys', then either restaurant's, then unknown),
    # and each row picks its column: no pass per category over every row.
    table = np.full((len(PREFERENCE_KEYS) + 2, n), np.nan).T  # column-major, as written
    for j, key in enumerate(PREFERENCE_KEYS):
        values = np.asarray(preferences[key], dtype=float)
        np.copyto(table[:, j], values, where=values >= 0)
    cheap, dear = table[:, _CHEAP_COLUMN], table[:, _DEAR_COLUMN]
    table[:, _EITHER_COLUMN] = np.where(np.isnan(cheap), dear,
                                        np.where(np.isnan(dear), cheap, (cheap + dear) / 2))
    column = _PREFERENCE_COLUMN[np.where((category >= 0) & (category < len(CATEGORIES)),
                                         category, _NO_CATEGORY)]
    restaurant = category == CATEGORIES.index("restaurant")
    price = price_level[restaurant]
    column[restaurant] = np.where(price == 0, _EITHER_COLUMN,
                                  np.where(price <= _CHEAP_RESTAURANT_MAX_PRICE, _CHEAP_COLUMN,
                                           _DEAR_COLUMN))
    return table[np.arange(n), column]


def raw_to_features(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """The feature matrix (rows × FEATURE_NAMES, float64, nan where unknown) of raw fields.

    Vectorised over rows; `raw` holds every name in RAW_FIELDS as a 1-d array."""
    f = {name: np.asarray(raw[name]) for name in RAW_FIELDS}
    hour = f["arrival_hour"].astype(float)
    weekday = f["arrival_weekday"].astype(float)
    weekday = np.where(weekday >= 0, weekday, np.nan)
    category = f["category"].astype(np.int64)
    price_level = f["price_level"].astype(float)
    expires_h = f["expires_in_s"].astype(float) / 3600
    prefs = {key: f[f"pref_{key}"].astype(np.int64) for key in PREFERENCE_KEYS}
    # Written column by column into one matrix: thousands of candidates per request, and
    # stacking fifty temporary columns cost more than computing them. Column-major, so each
    # column is one contiguous write (and serving's stand-in reads it column by column).
    out = np.empty((N_FEATURES, len(hour))).T
    at = 0

    def put(values: np.ndarray) -> None:
        nonlocal at
        out[:, at] = values
        at += 1

    def put_one_hot(codes: np.ndarray, size: int) -> None:
        """0/1 for codes 0..size-1; unknown codes (-1) are all zeros."""
        nonlocal at
        for code in range(size):  # column by column: each a contiguous write
            out[:, at + code] = codes == code
        at += size

    put(hour)
    angle = 2 * np.pi * hour / 24
    put(np.sin(angle))
    put(np.cos(angle))
    put(weekday)
    put(np.where(np.isnan(weekday), np.nan, weekday >= 5))
    put_one_hot(f["weather"].astype(np.int64), len(WEATHER))
    put(f["temperature_c"])
    put_one_hot(f["passengers"].astype(np.int64), len(PASSENGERS))
    put_one_hot(f["trip_purpose"].astype(np.int64), len(TRIP_PURPOSES))
    put(f["fuel_level_pct"])
    put(f["battery_level_pct"])
    put_one_hot(category, len(CATEGORIES))
    put(np.where(category >= 0, category, np.nan))
    put(f["brand"].astype(np.uint64) != 0)
    put(np.where(price_level > 0, price_level, np.nan))
    put_one_hot(f["discount_kind"].astype(np.int64), len(DISCOUNT_KINDS))
    put(f["discount_value"])
    put(np.where(f["value_estimate"].astype(float) > 0, f["value_estimate"], np.nan))
    # log hours: the difference between 2 h and 1 d matters, between 30 and 31 days not
    put(np.log1p(np.minimum(expires_h, 24 * 365)))
    put(f["detour_s"].astype(float) / 60)
    put(f["along_m"].astype(float) / 1000)
    put(f["distance_m"].astype(float) / 1000)
    put(f["ahead"])
    for key in PREFERENCE_KEYS:
        put(np.where(prefs[key] >= 0, prefs[key], np.nan))
    put(preference_for_category(category, price_level, prefs))
    assert at == N_FEATURES
    return out


def encode(values, names: tuple[str, ...]) -> np.ndarray:
    """Enum names (None or "" unknown) to int codes, -1 for unknown."""
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter((index.get(v, -1) if v else -1 for v in values), dtype=np.int64,
                       count=len(values))


def preferences_to_codes(preferences: Mapping[str, str] | None) -> dict[str, int]:
    """A driver's declared preferences ({"bar": "never", …}) as frequency codes (-1 unknown)."""
    preferences = preferences or {}
    return {key: FREQUENCIES.index(preferences[key]) if preferences.get(key) in FREQUENCIES
            else -1 for key in PREFERENCE_KEYS}


def candidates_to_raw(candidates: Candidates, context: Mapping, arrival_hour: np.ndarray,
                      arrival_weekday: np.ndarray,
                      preferences: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """The raw fields of each candidate as the server sees it (and logs it).

    `context` is the request's context (api/schemas.py ContextSchema); `arrival_hour` (0-24,
    fractional) and `arrival_weekday` (0 Monday .. 6 Sunday) are local to each place at the
    estimated arrival; `preferences` are the driver's declared ones."""
    n = len(candidates)

    def same(value, dtype=float) -> np.ndarray:
        return np.full(n, value, dtype=dtype)

    def number(key: str) -> np.ndarray:
        value = context.get(key)
        return same(np.nan if value is None else float(value))

    def code(key: str, names: tuple[str, ...]) -> np.ndarray:
        return same(encode([context.get(key)], names)[0], np.int64)

    along = np.asarray(candidates.along_m, dtype=float)
    raw = {
        "arrival_hour": np.broadcast_to(np.asarray(arrival_hour, float), (n,)),
        "arrival_weekday": np.broadcast_to(np.asarray(arrival_weekday, np.int64), (n,)),
        "weather": code("weather", WEATHER), "temperature_c": number("temperature_c"),
        "passengers": code("passengers", PASSENGERS),
        "trip_purpose": code("trip_purpose", TRIP_PURPOSES),
        "fuel_level_pct": number("fuel_level_pct"),
        "battery_level_pct": number("battery_level_pct"),
        "category": np.asarray(candidates.category, np.int64),
        "brand": np.asarray(candidates.brand, np.uint64),
        "price_level": np.asarray(candidates.price_level, np.int64),
        "discount_kind": np.asarray(candidates.discount_kind, np.int64),
        "discount_value": np.asarray(candidates.discount_value, float),
        "value_estimate": np.asarray(candidates.value_estimate, float),
        "expires_in_s": np.asarray(candidates.expires_in_s, float),
        "detour_s": np.asarray(candidates.detour_s, float),
        "along_m": along, "distance_m": np.asarray(candidates.distance_m, float),
        # places on a route are searched ahead of the car only; without one, unknown
        "ahead": np.where(np.isfinite(along), 1.0, np.nan),
    }
    for key, value in preferences_to_codes(preferences).items():
        raw[f"pref_{key}"] = same(value, np.int64)
    return raw


def candidate_features(candidates: Candidates, context: Mapping, arrival_hour: np.ndarray,
                       arrival_weekday: np.ndarray,
                       preferences: Mapping[str, str] | None = None) -> np.ndarray:
    """The feature matrix of a request's candidates (one row each): what serving scores."""
    return raw_to_features(candidates_to_raw(candidates, context, arrival_hour,
                                             arrival_weekday, preferences))
