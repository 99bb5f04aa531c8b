"""The one feature definition and the coupon survey's mapping onto it."""

from __future__ import annotations

import numpy as np
import pytest

from api import schemas
from offers.geo_index import CATEGORIES, DISCOUNT_KINDS
from ranking.candidates import Candidates
from ranking.datasets import read_coupon_survey, read_log, survey_rows_to_dataset, write_log
from ranking.features import (
    FEATURE_NAMES,
    PASSENGERS,
    RAW_FIELDS,
    TRIP_PURPOSES,
    WEATHER,
    candidate_features,
    candidates_to_raw,
    raw_to_features,
)

COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}


def survey_row(**changes) -> dict[str, str]:
    row = {
        "driver_id": "d0001", "destination": "No Urgent Place", "passanger": "Alone",
        "weather": "Sunny", "temperature": "55", "time": "2PM", "coupon": "Restaurant(<20)",
        "expiration": "1d", "gender": "Female", "age": "21", "maritalStatus": "Single",
        "has_children": "1", "education": "Bachelors degree", "occupation": "Unemployed",
        "income": "$37500 - $49999", "car": "", "Bar": "never", "CoffeeHouse": "4~8",
        "CarryAway": "", "RestaurantLessThan20": "1~3", "Restaurant20To50": "less1",
        "toCoupon_GEQ5min": "1", "toCoupon_GEQ15min": "0", "toCoupon_GEQ25min": "0",
        "direction_same": "0", "direction_opp": "1", "Y": "1",
    }
    return row | changes


def features_of(**changes) -> dict[str, float]:
    row = survey_rows_to_dataset([survey_row(**changes)]).features()[0]
    return dict(zip(FEATURE_NAMES, row, strict=True))


def candidates(n: int = 3) -> Candidates:
    # arrival_slot joined Candidates with the serving side; older trees lack it
    extra = ({"arrival_slot": np.array([32, 33, 36][:n])}
             if "arrival_slot" in Candidates.__dataclass_fields__ else {})
    return Candidates(**extra,
        place_key=np.array([b"p%d" % i for i in range(n)]),
        category=np.array([CATEGORIES.index(c) for c in ("cafe", "restaurant", "fuel")][:n]),
        brand=np.array([0, 7, 0][:n], dtype=np.uint64),
        value_estimate=np.array([3.5, 0.0, 4.0][:n]),
        discount_kind=np.array([DISCOUNT_KINDS.index(k)
                                for k in ("percent", "amount", "per_unit")][:n]),
        discount_value=np.array([100.0, 5.0, 10.0][:n]),
        price_level=np.array([2, 1, 0][:n]),
        distance_m=np.array([500.0, 2000.0, 8000.0][:n]),
        along_m=np.array([800.0, np.nan, 9000.0][:n]),
        detour_s=np.array([60.0, 300.0, 0.0][:n]),
        eta_s=np.array([60.0, 300.0, 600.0][:n]),
        expires_in_s=np.array([7200.0, np.inf, 86400.0][:n]),
    )


def test_the_context_enums_are_the_ones_the_api_accepts():
    assert (WEATHER, PASSENGERS, TRIP_PURPOSES) == (
        schemas.WEATHER, schemas.PASSENGERS, schemas.TRIP_PURPOSES)


def test_no_demographic_reaches_the_features():
    demographics = {"gender": "Male", "age": "50plus", "maritalStatus": "Married partner",
                    "has_children": "0", "education": "Graduate degree (Masters or Doctorate)",
                    "occupation": "Retired", "income": "$100000 or More", "car": "Mazda5"}
    np.testing.assert_array_equal(
        survey_rows_to_dataset([survey_row(**demographics)]).features(),
        survey_rows_to_dataset([survey_row()]).features())
    words = {part for name in RAW_FIELDS for part in name.split("_")}
    assert not words & {"gender", "age", "marital", "income", "education", "occupation"}


def test_candidate_features_have_one_row_per_candidate():
    X = candidate_features(candidates(), {"weather": "rainy", "passengers": "kids"},
                           np.array([8.5, 8.6, 9.0]), np.array([0, 0, 0]),
                           {"coffee_house": "4~8", "restaurant_lt20": "never"})
    assert X.shape == (3, len(FEATURE_NAMES))
    assert X[0, COLUMN["weather=rainy"]] == 1 and X[0, COLUMN["weather=sunny"]] == 0
    assert X[0, COLUMN["pref_for_category"]] == 3          # cafe reads coffee_house, 4~8
    assert X[1, COLUMN["pref_for_category"]] == 0          # cheap restaurant: never
    assert np.isnan(X[2, COLUMN["pref_for_category"]])     # no declared frequency for fuel
    assert X[:, COLUMN["ahead"]].tolist()[::2] == [1, 1] and np.isnan(X[1, COLUMN["ahead"]])
    assert np.isnan(X[:, COLUMN["temperature_c"]]).all()   # the context did not say


def test_unknown_context_and_preferences_are_nan_not_zero():
    X = candidate_features(candidates(1), {}, np.array([12.0]), np.array([-1]))
    assert np.isnan(X[0, COLUMN["weekday"]])
    assert np.isnan(X[0, COLUMN["pref_bar"]])
    assert X[0, [COLUMN[f"weather={w}"] for w in WEATHER]].sum() == 0


def test_survey_coupons_map_onto_engine_categories_and_price_levels():
    expected = {"Coffee House": ("cafe", np.nan), "Bar": ("bar", np.nan),
                "Carry out & Take away": ("fast_food", np.nan),
                "Restaurant(<20)": ("restaurant", 1), "Restaurant(20-50)": ("restaurant", 2)}
    for coupon, (category, price) in expected.items():
        f = features_of(coupon=coupon)
        assert f[f"category={category}"] == 1, coupon
        assert f["category_code"] == CATEGORIES.index(category)
        assert f["price_level"] == price or (np.isnan(price) and np.isnan(f["price_level"]))


def test_survey_context_maps_known_answers():
    f = features_of(destination="Work", passanger="Kid(s)", weather="Snowy",
                    temperature="30", time="10PM", expiration="2h")
    assert f["trip_purpose=work"] == 1 and f["passengers=kids"] == 1
    assert f["weather=snowy"] == 1
    assert f["temperature_c"] == pytest.approx(-10 / 9)
    assert f["hour"] == 22
    assert f["expires_in_h_log"] == pytest.approx(np.log1p(2))
    assert features_of(time="12PM")["hour"] == 12
    assert features_of(time="7AM")["hour"] == 7


def test_survey_minutes_to_venue_become_detour_and_direction_becomes_ahead():
    assert features_of()["detour_min"] == 10
    assert features_of(toCoupon_GEQ15min="1")["detour_min"] == 20
    assert features_of(toCoupon_GEQ15min="1", toCoupon_GEQ25min="1")["detour_min"] == 30
    assert features_of(direction_same="1", direction_opp="0")["ahead"] == 1
    assert features_of()["ahead"] == 0


def test_survey_visit_frequencies_become_declared_preferences():
    f = features_of(coupon="Coffee House")
    assert (f["pref_bar"], f["pref_coffee_house"]) == (0, 3)
    assert np.isnan(f["pref_carry_away"])                       # blank in the survey
    assert f["pref_for_category"] == 3
    assert features_of(coupon="Restaurant(20-50)")["pref_for_category"] == 1   # less1


def test_the_log_csv_round_trips(tmp_path):
    data = survey_rows_to_dataset([survey_row(), survey_row(coupon="Bar", Y="0")])
    write_log(data, tmp_path / "log.csv")
    again = read_log(tmp_path / "log.csv")
    np.testing.assert_array_equal(again.features(), data.features())
    assert again.y.tolist() == [1, 0] and again.driver_id.tolist() == ["d0001", "d0001"]


@pytest.mark.parametrize("label", ["2", "0.5", "yes", ""])
def test_labels_other_than_0_or_1_are_refused_naming_the_row(tmp_path, label):
    with pytest.raises(ValueError, match="data row 2 has"):
        survey_rows_to_dataset([survey_row(), survey_row(Y=label)])
    write_log(survey_rows_to_dataset([survey_row(), survey_row()]), tmp_path / "log.csv")
    text = (tmp_path / "log.csv").read_text().splitlines()
    text[2] = text[2][:text[2].rindex(",") + 1] + label  # the label is the last column
    (tmp_path / "log.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="label must be 0 or 1; data row 2"):
        read_log(tmp_path / "log.csv")


def test_a_survey_without_a_column_it_needs_says_which():
    row = survey_row()
    del row["coupon"]
    with pytest.raises(ValueError, match="lack the column 'coupon'"):
        survey_rows_to_dataset([row])


@pytest.mark.parametrize("column, value", [
    ("coupon", "Gas Station"), ("expiration", "3h"), ("time", "10:00"), ("weather", "Foggy"),
    ("passanger", "Dog"), ("destination", "Gym"), ("CoffeeHouse", "sometimes"), ("coupon", ""),
    ("time", "")])
def test_a_survey_value_the_mapping_does_not_know_is_refused_naming_where(column, value):
    with pytest.raises(ValueError, match=f"{column}: data row 2 has {value!r}, not one of"):
        survey_rows_to_dataset([survey_row(), survey_row(**{column: value})])


def test_a_log_value_no_enum_knows_is_refused_not_read_as_unknown(tmp_path):
    """A misspelt `Cafe` read as unknown quietly trains and scores something else (a review
    saw the global AUC fall from 0.79 to 0.72); blank stays unknown."""
    write_log(survey_rows_to_dataset([survey_row(), survey_row()]), tmp_path / "log.csv")
    header, first, second = (tmp_path / "log.csv").read_text().splitlines()
    (tmp_path / "typo.csv").write_text("\n".join(
        [header, first, second.replace(",restaurant,", ",Restaurant,")]) + "\n")
    with pytest.raises(ValueError, match="category: data row 2 has 'Restaurant'"):
        read_log(tmp_path / "typo.csv")
    (tmp_path / "blank.csv").write_text("\n".join(
        [header, first, second.replace(",restaurant,", ",,")]) + "\n")
    assert read_log(tmp_path / "blank.csv").raw["category"].tolist()[1] == -1
    # An export's outcome: one it does not write (a misspelt accept) is refused too.
    (tmp_path / "outcome.csv").write_text("\n".join(
        [f"{header},outcome", f"{first},accept", f"{second},Accept"]) + "\n")
    with pytest.raises(ValueError, match="outcome: data row 2 has 'Accept'"):
        read_log(tmp_path / "outcome.csv")


def test_a_survey_byte_that_is_not_utf8_in_a_column_never_read_is_no_error(tmp_path):
    path = tmp_path / "survey.csv"
    rows = [survey_row(), survey_row(occupation="Caf\xe9 owner")]
    path.write_bytes(b"\n".join([",".join(rows[0]).encode()] + [
        ",".join(row.values()).encode("latin-1") for row in rows]) + b"\n")
    assert len(read_coupon_survey(path)) == 2


def test_served_candidates_and_their_logged_rows_give_the_same_features(tmp_path):
    from ranking.datasets import Dataset

    raw = candidates_to_raw(candidates(), {"weather": "sunny", "temperature_c": 21.5},
                            np.array([8.0, 8.25, 9.0]), np.array([2, 2, 2]), {"bar": "gt8"})
    data = Dataset(raw, np.array(["x"] * 3), np.array([1, 0, 0]), np.arange(3))
    write_log(data, tmp_path / "log.csv")
    np.testing.assert_array_equal(read_log(tmp_path / "log.csv").features(),
                                  raw_to_features(raw))


def _features_column_by_column(raw) -> np.ndarray:
    """What each column means, written the plain numpy way (the compiled pass must agree)."""
    from ranking.features import ENUM_FIELDS, PREFERENCE_KEYS

    f = {name: np.asarray(raw[name]) for name in RAW_FIELDS}
    hour, weekday = f["arrival_hour"].astype(float), f["arrival_weekday"].astype(float)
    weekday = np.where(weekday >= 0, weekday, np.nan)
    category, price = f["category"].astype(np.int64), f["price_level"].astype(float)
    prefs = {key: f[f"pref_{key}"].astype(np.int64) for key in PREFERENCE_KEYS}
    known = {key: np.where(prefs[key] >= 0, prefs[key], np.nan) for key in PREFERENCE_KEYS}
    cheap, dear = known["restaurant_lt20"], known["restaurant_20_50"]
    either = np.where(np.isnan(cheap), dear, np.where(np.isnan(dear), cheap, (cheap + dear) / 2))
    by_category = {"bar": known["bar"], "cafe": known["coffee_house"],
                   "fast_food": known["carry_away"],
                   "restaurant": np.where(price == 0, either, np.where(price <= 1, cheap, dear))}
    for_category = np.full(len(hour), np.nan)
    for name, values in by_category.items():
        mine = category == CATEGORIES.index(name)
        for_category[mine] = values[mine]

    def one_hot(name):
        codes = f[name].astype(np.int64)
        return [codes == code for code in range(len(ENUM_FIELDS[name]))]

    columns = [
        hour, np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24), weekday,
        np.where(np.isnan(weekday), np.nan, weekday >= 5), *one_hot("weather"),
        f["temperature_c"], *one_hot("passengers"), *one_hot("trip_purpose"),
        f["fuel_level_pct"], f["battery_level_pct"], *one_hot("category"),
        np.where(category >= 0, category, np.nan), f["brand"].astype(np.uint64) != 0,
        np.where(price > 0, price, np.nan), *one_hot("discount_kind"), f["discount_value"],
        np.where(f["value_estimate"] > 0, f["value_estimate"], np.nan),
        np.log1p(np.minimum(f["expires_in_s"] / 3600, 24 * 365)), f["detour_s"] / 60,
        f["along_m"] / 1000, f["distance_m"] / 1000, f["ahead"], *known.values(),
        for_category]
    return np.column_stack([np.asarray(c, float) for c in columns])


@pytest.mark.parametrize("seed", range(20))
def test_the_compiled_features_are_the_columns_as_defined(seed):
    from ranking.features import ENUM_FIELDS

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    raw = {}
    for name in RAW_FIELDS:  # codes past both ends, unknowns, zeros
        if name in ENUM_FIELDS:
            raw[name] = rng.integers(-2, len(ENUM_FIELDS[name]) + 2, n)
            if seed % 3 == 0:  # codes as floats, as a CSV may give them
                raw[name] = raw[name].astype(float)
        elif name in ("arrival_weekday", "price_level"):
            raw[name] = rng.integers(-1, 8, n).astype(float)
            raw[name][rng.random(n) < 0.1] = np.nan
        elif name == "brand":
            raw[name] = rng.integers(0, 3, n).astype(np.uint64)
        else:
            values = rng.normal(0, 100, n)
            values[rng.random(n) < 0.2], values[rng.random(n) < 0.1] = np.nan, 0.0
            raw[name] = values
    if seed % 2 == 0 and n:  # one driver's answers on every row, as served
        for name in RAW_FIELDS:
            if name.startswith("pref_"):
                raw[name] = np.full(n, raw[name][int(rng.integers(0, n))])
    hours = rng.integers(0, 96, n) / 4
    raw["arrival_hour"] = (np.broadcast_to(hours, (n,)) if seed % 2  # read-only, as served
                           else np.broadcast_to(hours[:1], (n,)) if n else hours)
    features = raw_to_features(raw)
    assert features.shape == (n, len(FEATURE_NAMES)) and features.flags.f_contiguous
    expected = _features_column_by_column(raw)
    # The sines and cosines are the C library's, which may differ from numpy's in the last
    # bit on some machines; every other column is exact.
    trig = [COLUMN["hour_sin"], COLUMN["hour_cos"]]
    np.testing.assert_allclose(features[:, trig], expected[:, trig], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(np.delete(features, trig, axis=1),
                                  np.delete(expected, trig, axis=1))


def test_fields_of_different_lengths_are_refused():
    raw = {name: np.zeros(3) for name in RAW_FIELDS} | {"detour_s": np.zeros(2)}
    with pytest.raises(ValueError, match="one value per row"):
        raw_to_features(raw)


def test_serving_features_use_the_pass_compiled_at_start_up():
    from ranking import features

    features.warm_up()
    compiled = len(features._write_features.signatures)
    for n in (0, 1, 3):
        candidate_features(candidates(n), {"weather": "rainy"}, np.full(n, 12.0),
                           np.full(n, 2), {"bar": "never"})
    assert len(features._write_features.signatures) == compiled
