"""The committed demo region in seed_data/ is valid, consistent and reproducible."""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import pytest

from api.schemas import PLACE_CATEGORIES, OfferSchema, PlaceSchema
from seed_data import generate

SEED_DIR = Path(generate.__file__).resolve().parent
FILES = ("merchants.json", "fleets.json", "places.json", "offers.json", "routes.json")


def load(name: str) -> list:
    return json.loads((SEED_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def places() -> list[dict]:
    return load("places.json")


@pytest.fixture(scope="module")
def offers() -> list[dict]:
    return load("offers.json")


def test_every_place_passes_the_place_schema(places):
    schema = PlaceSchema()
    for item in places:
        schema.load(item["place"])


def test_every_offer_passes_the_offer_schema_once_it_has_place_ids(offers):
    schema = OfferSchema()
    for item in offers:
        schema.load({**item["offer"], "place_ids": ["p.m_x.1"]})


def test_place_external_ids_are_unique(places):
    ids = [item["place"]["external_id"] for item in places]
    assert len(ids) == len(set(ids))


def test_places_and_offers_name_only_declared_merchants(places, offers):
    keys = {m["key"] for m in load("merchants.json")}
    assert {item["merchant"] for item in places} <= keys | {None}
    assert {item["merchant"] for item in offers} <= keys


def test_offers_name_only_places_of_their_merchant_and_category(places, offers):
    owner = {item["place"]["external_id"]: (item["merchant"], item["place"]["category"])
             for item in places}
    for item in offers:
        assert item["place_external_ids"]
        assert len(set(item["place_external_ids"])) == len(item["place_external_ids"])
        for external_id in item["place_external_ids"]:
            assert owner[external_id] == (item["merchant"], item["offer"]["category"])


def test_every_place_category_appears(places):
    assert {item["place"]["category"] for item in places} == set(PLACE_CATEGORIES)


def test_routes_are_linestrings_of_5_to_60_km():
    for item in load("routes.json"):
        route = item["route"]
        assert route["type"] == "LineString"
        km = sum(math.dist((a[0] * generate.KM_LNG, a[1] * generate.KM_LAT),
                           (b[0] * generate.KM_LNG, b[1] * generate.KM_LAT))
                 for a, b in pairwise(route["coordinates"]))
        assert 5 <= km <= 60, item["name"]


def test_generating_twice_gives_identical_files(tmp_path):
    generate.write(tmp_path / "a")
    generate.write(tmp_path / "b")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_committed_files_match_the_generator(tmp_path):
    generate.write(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (SEED_DIR / name).read_bytes(), name
