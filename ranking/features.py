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
from numba import njit

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
_CHEAP_COLUMN = PREFERENCE_KEYS.index("restaurant_lt20")
_DEAR_COLUMN = PREFERENCE_KEYS.index("restaurant_20_50")

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


def raw_to_features(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """Raw fields (see RAW_FIELDS) to the model's feature matrix (columns: FEATURE_NAMES),
    column-major. Unknown stays nan (the models handle missing values).

    Vectorised over rows; `raw` holds every name in RAW_FIELDS as a 1-d array. The fields are
    converted here and the matrix written by one compiled pass (thousands of candidates a
    request: a numpy pass per column took 0.40 ms against this pass's 0.22 ms at 50 km in
    `benchmarks/recommendation_steps.py`)."""
    f = {name: np.asarray(raw[name]) for name in RAW_FIELDS}
    n = len(f["arrival_hour"])
    if any(values.shape != (n,) for values in f.values()):
        raise ValueError("every raw field needs one value per row")

    # Writable, contiguous arrays of two types only: numba compiles a pass per combination of
    # argument types (read-only views, such as a broadcast context, would be another).
    def numbers(name: str) -> np.ndarray:
        return np.require(f[name], float, ("C", "W"))

    def codes(name: str) -> np.ndarray:
        return np.require(f[name].astype(np.int64), None, ("C", "W"))

    out = np.empty((N_FEATURES, n)).T
    _write_features(
        out, numbers("arrival_hour"), numbers("arrival_weekday"), codes("weather"),
        numbers("temperature_c"), codes("passengers"), codes("trip_purpose"),
        numbers("fuel_level_pct"), numbers("battery_level_pct"), codes("category"),
        np.require(f["brand"].astype(np.uint64) != 0, None, ("C", "W")),
        numbers("price_level"), codes("discount_kind"), numbers("discount_value"),
        numbers("value_estimate"),
        # by numpy, whose log1p can differ from the C library's in the last bit
        np.log1p(np.minimum(f["expires_in_s"].astype(float) / 3600, 24 * 365)),
        numbers("detour_s"), numbers("along_m"), numbers("distance_m"), numbers("ahead"),
        np.column_stack([codes(f"pref_{key}") for key in PREFERENCE_KEYS]),
        _PREFERENCE_OF_CATEGORY, len(DISCOUNT_KINDS))
    return out


def warm_up() -> None:
    """Compile the feature pass (or load it from numba's cache) for the types serving passes,
    so that a server's first request does not wait for it: numba types a matrix of one row
    (or none) as row-major, and of more as the column-major one it is."""
    for rows in (1, 2):
        raw_to_features({name: np.zeros(rows) for name in RAW_FIELDS})


# Which declared frequency speaks for an offer of each category: the column of
# PREFERENCE_KEYS, or one of these. The categories and discount kinds are passed to the pass,
# not read by it as globals: numba's cache would keep another module's values when they change.
_BY_PRICE, _NO_PREFERENCE, _EITHER_RESTAURANT = -1, -2, -3
_PREFERENCE_OF_CATEGORY = np.array(
    [_BY_PRICE if c == "restaurant" else PREFERENCE_KEYS.index(_CATEGORY_PREFERENCE[c])
     if c in _CATEGORY_PREFERENCE else _NO_PREFERENCE for c in CATEGORIES], np.int64)
_N_WEATHER, _N_PASSENGERS, _N_PURPOSES = len(WEATHER), len(PASSENGERS), len(TRIP_PURPOSES)


@njit(cache=True)
def _write_features(out, hour, weekday, weather, temperature, passengers, purpose, fuel,
                    battery, category, brand_known, price_level, discount_kind, discount_value,
                    value_estimate, expires_log, detour_s, along_m, distance_m, ahead,
                    preferences, preference_of_category, discount_kinds):
    """Every column of FEATURE_NAMES in its order, column by column (each a contiguous write
    of the column-major matrix)."""
    n, nan = len(hour), np.nan
    last, sin, cos = nan, nan, nan
    for i in range(n):
        if hour[i] != last:  # a request's arrivals fall in a few quarter hours
            last = hour[i]
            angle = 2 * np.pi * last / 24
            sin, cos = np.sin(angle), np.cos(angle)
        out[i, 0], out[i, 1], out[i, 2] = hour[i], sin, cos
    at = 3
    for i in range(n):
        out[i, at] = weekday[i] if weekday[i] >= 0 else nan
        # weekend: unknown with the weekday
        out[i, at + 1] = nan if np.isnan(out[i, at]) else (1.0 if weekday[i] >= 5 else 0.0)
    at += 2
    at = _one_hot(out, at, weather, _N_WEATHER)
    out[:, at] = temperature
    at = _one_hot(out, at + 1, passengers, _N_PASSENGERS)
    at = _one_hot(out, at, purpose, _N_PURPOSES)
    out[:, at] = fuel
    out[:, at + 1] = battery
    at = _one_hot(out, at + 2, category, len(preference_of_category))
    for i in range(n):
        out[i, at] = category[i] if category[i] >= 0 else nan
        out[i, at + 1] = 1.0 if brand_known[i] else 0.0
        out[i, at + 2] = price_level[i] if price_level[i] > 0 else nan
    at = _one_hot(out, at + 3, discount_kind, discount_kinds)
    for i in range(n):
        out[i, at] = discount_value[i]
        out[i, at + 1] = value_estimate[i] if value_estimate[i] > 0 else nan
        out[i, at + 2] = expires_log[i]
        out[i, at + 3] = detour_s[i] / 60
        out[i, at + 4] = along_m[i] / 1000
        out[i, at + 5] = distance_m[i] / 1000
        out[i, at + 6] = ahead[i]
    at += 7
    keys = preferences.shape[1]
    for j in range(keys):
        for i in range(n):
            out[i, at + j] = preferences[i, j] if preferences[i, j] >= 0 else nan
    if n > 0 and _same_rows(preferences):
        # One driver's answers on every row (serving): the frequency for the category depends
        # on the category and price level alone, so a table of those spares each row its
        # branches (they cost a third of this pass with mixed categories).
        table = np.empty((len(preference_of_category), 3))
        for c in range(len(preference_of_category)):
            for level in range(3):  # price unknown (0), cheap, dear: the function's own cases
                table[c, level] = _preference_for_category(
                    c, (0.0, float(_CHEAP_RESTAURANT_MAX_PRICE),
                        _CHEAP_RESTAURANT_MAX_PRICE + 1.0)[level],
                    out[0, at:at + keys], preference_of_category)
        for i in range(n):
            c, level = category[i], price_level[i]
            if c < 0 or c >= len(preference_of_category):
                out[i, at + keys] = nan
            else:
                out[i, at + keys] = table[c, 0 if level == 0 else (
                    1 if level <= _CHEAP_RESTAURANT_MAX_PRICE else 2)]
    else:
        for i in range(n):
            out[i, at + keys] = _preference_for_category(category[i], price_level[i],
                                                         out[i, at:at + keys],
                                                         preference_of_category)
    assert at + keys + 1 == out.shape[1]


@njit(cache=True)
def _same_rows(values):
    for i in range(1, values.shape[0]):
        for j in range(values.shape[1]):
            if values[i, j] != values[0, j]:
                return False
    return True


@njit(cache=True)
def _one_hot(out, at, codes, size):
    """Columns at .. at + size - 1: 1 where the code is the column's, else 0 (an unknown
    code, -1, is 0 in every column). Returns the next column."""
    for code in range(size):
        for i in range(len(codes)):
            out[i, at + code] = 1.0 if codes[i] == code else 0.0
    return at + size


@njit(cache=True)
def _preference_for_category(category, price_level, preferences, preference_of_category):
    """The declared frequency (0..4, nan unknown; `preferences` as the pref_ columns hold
    them) that speaks for an offer's category. Restaurants at price level 1 read
    `restaurant_lt20`, at 2 or more `restaurant_20_50`, at an unknown level (0) the mean of the
    two (or the one known)."""
    if category < 0 or category >= len(preference_of_category):
        return np.nan
    column = preference_of_category[category]
    if column == _BY_PRICE:
        if price_level == 0:
            column = _EITHER_RESTAURANT
        elif price_level <= _CHEAP_RESTAURANT_MAX_PRICE:
            column = _CHEAP_COLUMN
        else:
            column = _DEAR_COLUMN
    if column == _NO_PREFERENCE:
        return np.nan
    if column != _EITHER_RESTAURANT:
        return preferences[column]
    cheap, dear = preferences[_CHEAP_COLUMN], preferences[_DEAR_COLUMN]
    if np.isnan(cheap):
        return dear
    return cheap if np.isnan(dear) else (cheap + dear) / 2


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
