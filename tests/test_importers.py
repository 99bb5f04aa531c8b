"""Tests for offers.importers: real OSM extracts, and small OSM, GeoJSON and CSV known answers."""

from __future__ import annotations

import bz2
import json
from collections import Counter
from pathlib import Path

import marshmallow as ma
import osmium
import pytest

from api.schemas import PlaceSchema
from offers.importers import read_places

from .conftest import SHARED_DATA

OSM_DATA = SHARED_DATA / "osm"
MONACO = OSM_DATA / "monaco-2019.osm.pbf"
HELSINKI = OSM_DATA / "Helsinki.osm.pbf"


def _real(path: Path) -> list[dict]:
    if not path.exists():
        pytest.skip(f"real OSM data not available at {path}")
    return read_places(path)


@pytest.fixture(scope="module")
def monaco() -> list[dict]:
    return _real(MONACO)


@pytest.fixture(scope="module")
def helsinki() -> list[dict]:
    return _real(HELSINKI)


@pytest.fixture(params=["monaco", "helsinki"])
def real_places(request) -> list[dict]:
    return request.getfixturevalue(request.param)


def _by_category(places: list[dict]) -> Counter:
    return Counter(place["category"] for place in places)


# --- real OpenStreetMap extracts -----------------------------------------------------------

def test_real_places_all_validate_against_place_schema(real_places):
    PlaceSchema(many=True).load(real_places)


def test_real_places_have_unique_external_ids(real_places):
    ids = [place["external_id"] for place in real_places]
    assert len(set(ids)) == len(ids)


def test_real_places_include_some_from_ways(real_places):
    # Both extracts have named restaurants, bars or car parks mapped as building outlines.
    assert any(place["external_id"].startswith("osm:way/") for place in real_places)


def test_monaco_yields_plausible_number_of_food_and_fuel_places(monaco):
    # The data README counts ~140 food/fuel POIs; the unnamed ones (about 20) are skipped.
    categories = _by_category(monaco)
    assert 100 <= sum(n for category, n in categories.items() if category != "parking") <= 170
    assert categories["fuel"] >= 1


def test_monaco_coordinates_inside_monaco(monaco):
    assert all(43.72 <= place["lat"] <= 43.76 and 7.40 <= place["lng"] <= 7.44
               for place in monaco)


def test_helsinki_has_restaurants_and_cafes(helsinki):
    categories = _by_category(helsinki)
    assert categories["restaurant"] >= 100
    assert categories["cafe"] >= 50


def test_helsinki_ev_chargers_without_any_name_get_a_generic_one(helsinki):
    # The README's 4 chargers carry no name, brand or operator; drivers still want them.
    chargers = [dict(obj.tags) for obj in osmium.FileProcessor(str(HELSINKI), osmium.osm.NODE)
                .with_filter(osmium.filter.TagFilter(("amenity", "charging_station")))]
    assert len(chargers) == 4
    assert not any(tags.keys() & {"name", "brand", "operator"} for tags in chargers)
    imported = [p for p in helsinki if p["category"] == "ev_charging"]
    assert [p["name"] for p in imported] == ["EV charging station"] * 4


# --- small OSM file with known answers -------------------------------------------------------

OSM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
  <node id="1" lat="60.17" lon="24.94">
    <tag k="amenity" v="fuel"/><tag k="operator" v="Neste"/><tag k="shop" v="convenience"/>
    <tag k="fuel:diesel" v="yes"/><tag k="fuel:octane_98" v="yes"/><tag k="fuel:e5" v="yes"/>
    <tag k="fuel:HVO100" v="yes"/><tag k="fuel:e10" v="no"/><tag k="fuel:electricity" v="yes"/>
    <tag k="addr:street" v="Mannerheimintie"/><tag k="addr:housenumber" v="5"/>
    <tag k="addr:postcode" v="00100"/><tag k="addr:city" v="Helsinki"/>
    <tag k="opening_hours" v="Mo-Fr 06:00-22:00"/>
  </node>
  <node id="2" lat="60.18" lon="24.95">
    <tag k="amenity" v="charging_station"/><tag k="name" v="Kamppi"/><tag k="operator" v="Helen"/>
    <tag k="socket:type2" v="2"/><tag k="socket:type2:output" v="22 kW"/>
    <tag k="socket:type2_combo" v="yes"/><tag k="socket:type2_combo:output" v="150 kW"/>
    <tag k="socket:chademo" v="no"/>
    <tag k="socket:type1" v="²"/><tag k="socket:type1:output" v="٢٢ kW"/>
  </node>
  <node id="3" lat="60.19" lon="24.96">
    <tag k="amenity" v="pub"/><tag k="name" v="Bistro"/><tag k="cuisine" v="Italian; pizza"/>
    <tag k="opening_hours" v="Mon - Fri 11am - 11pm"/>
  </node>
  <node id="4" lat="60.2" lon="24.9"><tag k="amenity" v="cafe"/><tag k="name" v="  "/></node>
  <node id="5" lat="60.2" lon="24.9">
    <tag k="amenity" v="parking"/><tag k="operator" v="City Parking"/>
  </node>
  <node id="6" lat="60.2" lon="24.9"><tag k="amenity" v="bench"/><tag k="name" v="Bench"/></node>
  <node id="10" lat="60.0" lon="24.0"/><node id="11" lat="60.0" lon="24.2"/>
  <node id="12" lat="60.1" lon="24.2"/><node id="13" lat="60.1" lon="24.0"/>
  <node id="14" lat="61.0" lon="25.0"/><node id="15" lat="61.0" lon="25.4"/>
  <node id="16" lat="61.2" lon="25.4"/><node id="17" lat="61.2" lon="25.0"/>
  <way id="20">
    <nd ref="10"/><nd ref="11"/><nd ref="12"/><nd ref="13"/><nd ref="10"/>
    <tag k="amenity" v="restaurant"/><tag k="name" v="Square"/>
  </way>
  <way id="21"><nd ref="14"/><nd ref="15"/><nd ref="16"/><nd ref="17"/><nd ref="14"/></way>
  <relation id="30">
    <member type="way" ref="21" role="outer"/>
    <tag k="type" v="multipolygon"/><tag k="amenity" v="parking"/><tag k="name" v="P-Hall"/>
  </relation>
</osm>
"""


@pytest.fixture
def osm_places(tmp_path) -> dict[str, dict]:
    path = tmp_path / "sample.osm"
    path.write_text(OSM_XML, encoding="utf-8")
    return {place["external_id"]: place for place in read_places(path)}


def test_osm_fuel_station_maps_operator_fuels_address_and_hours(osm_places):
    assert osm_places["osm:node/1"] == {
        "name": "Neste", "category": "fuel", "brand": "Neste", "lat": 60.17, "lng": 24.94,
        "address": "Mannerheimintie 5, 00100 Helsinki", "opening_hours": "Mo-Fr 06:00-22:00",
        "attributes": {"fuel_types": ["diesel", "petrol", "hvo"]},
        "external_id": "osm:node/1",
    }


def test_osm_charging_station_maps_sockets_to_connectors(osm_places):
    assert osm_places["osm:node/2"] == {
        "name": "Kamppi", "category": "ev_charging", "brand": "Helen", "lat": 60.18, "lng": 24.95,
        "attributes": {"ev_connectors": [{"type": "type2", "count": 2, "power_kw": 22.0},
                                         {"type": "ccs2", "power_kw": 150.0},
                                         {"type": "type1"}]},  # "²" and "٢٢ kW" not read
        "external_id": "osm:node/2",
    }


def test_osm_pub_is_a_bar_with_split_cuisine_and_invalid_hours_dropped(osm_places):
    assert osm_places["osm:node/3"] == {
        "name": "Bistro", "category": "bar", "lat": 60.19, "lng": 24.96,
        "attributes": {"cuisine": ["italian", "pizza"]}, "external_id": "osm:node/3",
    }


def test_osm_skips_unnamed_operator_only_parking_and_other_amenities(osm_places):
    assert sorted(osm_places) == ["osm:node/1", "osm:node/2", "osm:node/3",
                                  "osm:relation/30", "osm:way/20"]


def test_osm_closed_way_becomes_its_polygon_centroid(osm_places):
    place = osm_places["osm:way/20"]
    assert (place["name"], place["category"]) == ("Square", "restaurant")
    assert (place["lat"], place["lng"]) == (pytest.approx(60.05), pytest.approx(24.1))


def test_osm_multipolygon_relation_becomes_its_area_centroid(osm_places):
    place = osm_places["osm:relation/30"]
    assert (place["name"], place["category"]) == ("P-Hall", "parking")
    assert (place["lat"], place["lng"]) == (pytest.approx(61.1), pytest.approx(25.2))


def test_osm_known_answers_validate_against_place_schema(osm_places):
    PlaceSchema(many=True).load(list(osm_places.values()))


def test_osm_reads_compressed_xml(tmp_path):
    path = tmp_path / "sample.osm.bz2"
    path.write_bytes(bz2.compress(OSM_XML.encode()))
    assert len(read_places(path)) == 5


# --- GeoJSON -------------------------------------------------------------------------------

def _geojson(tmp_path, features: list[dict], name: str = "places.geojson") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_geojson_point_uses_lng_lat_order(tmp_path):
    path = _geojson(tmp_path, [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [24.94, 60.17]},
        "properties": {"name": "Kahvila", "category": "cafe", "brand": None,
                       "opening_hours": "Mo-Fr 08:00-16:00", "timezone": "Europe/Helsinki",
                       "address": "Esplanadi 1", "external_id": "shop-1"},
    }])
    assert read_places(path) == [{
        "name": "Kahvila", "category": "cafe", "address": "Esplanadi 1",
        "opening_hours": "Mo-Fr 08:00-16:00", "timezone": "Europe/Helsinki",
        "external_id": "shop-1", "lat": 60.17, "lng": 24.94,
    }]


def test_geojson_polygon_becomes_its_centroid(tmp_path):
    ring = [[10.0, 50.0], [12.0, 50.0], [12.0, 51.0], [10.0, 51.0], [10.0, 50.0]]
    path = _geojson(tmp_path, [{
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"name": "Lot", "category": "parking"},
    }])
    [place] = read_places(path)
    assert (place["lat"], place["lng"]) == (pytest.approx(50.5), pytest.approx(11.0))


def test_geojson_flat_attribute_properties_go_into_attributes(tmp_path):
    path = _geojson(tmp_path, [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [7.42, 43.73]},
        "properties": {"name": "Station", "category": "fuel", "cuisine": "thai;sushi",
                       "fuel_types": ["diesel", "lpg"], "price_level": 2,
                       "attributes": {"ev_connectors": [{"type": "type2"}]}},
    }])
    assert read_places(path)[0]["attributes"] == {
        "cuisine": ["thai", "sushi"], "fuel_types": ["diesel", "lpg"], "price_level": 2,
        "ev_connectors": [{"type": "type2"}],
    }


def test_geojson_feature_id_becomes_external_id_and_unknown_properties_are_ignored(tmp_path):
    path = _geojson(tmp_path, [{
        "type": "Feature", "id": 42, "geometry": {"type": "Point", "coordinates": [7.42, 43.73]},
        "properties": {"name": "Bar", "category": "bar", "stroke": "#ff0000", "osm_type": "node"},
    }], name="places.json")
    assert read_places(path) == [{"name": "Bar", "category": "bar", "external_id": "42",
                                  "lat": 43.73, "lng": 7.42}]


def test_geojson_that_is_not_a_feature_collection_raises(tmp_path):
    path = tmp_path / "one.geojson"
    path.write_text(json.dumps({"type": "Feature", "geometry": None, "properties": {}}))
    with pytest.raises(ValueError, match="FeatureCollection"):
        read_places(path)


# --- CSV -----------------------------------------------------------------------------------

def _csv(tmp_path, text: str) -> Path:
    path = tmp_path / "places.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_row_maps_columns_lists_and_numbers(tmp_path):
    path = _csv(tmp_path, "name,category,brand,lat,lng,address,opening_hours,timezone,"
                          "external_id,cuisine,fuel_types,price_level\n"
                          "Shell A1,fuel,Shell,52.5,13.4,Main St 1,24/7,Europe/Berlin,"
                          "s-1,burger; coffee,diesel;petrol,3\n")
    assert read_places(path) == [{
        "name": "Shell A1", "category": "fuel", "brand": "Shell", "lat": 52.5, "lng": 13.4,
        "address": "Main St 1", "opening_hours": "24/7", "timezone": "Europe/Berlin",
        "external_id": "s-1",
        "attributes": {"cuisine": ["burger", "coffee"], "fuel_types": ["diesel", "petrol"],
                       "price_level": 3},
    }]


def test_csv_empty_cells_and_unknown_columns_are_omitted(tmp_path):
    path = _csv(tmp_path, "name,category,brand,lat,lng,cuisine,phone\nCafe,cafe,,60.1,24.9,,123\n")
    assert read_places(path) == [{"name": "Cafe", "category": "cafe", "lat": 60.1, "lng": 24.9}]


@pytest.mark.parametrize("lat", ["north", "\uff16\uff10", "6_0"])  # float() reads the last two
def test_csv_bad_lat_is_passed_through_for_the_schema_to_reject(tmp_path, lat):
    path = _csv(tmp_path, f"name,category,lat,lng\nCafe,cafe,{lat},24.9\n")
    [place] = read_places(path)
    assert place["lat"] == lat
    with pytest.raises(ma.ValidationError) as error:
        PlaceSchema().load(place)
    assert "lat" in error.value.messages


# --- dispatch ------------------------------------------------------------------------------

def test_unknown_extension_raises_value_error(tmp_path):
    path = tmp_path / "places.xlsx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="places.xlsx"):
        read_places(path)


@pytest.mark.parametrize("features", [
    None, [1], [{"type": "Feature", "properties": [1], "geometry": None}],
    [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": []}}],
    [{"type": "Feature", "properties": {}, "geometry": {"type": "Blob"}}],
], ids=["features null", "not an object", "list properties", "empty point", "unknown type"])
def test_malformed_geojson_is_a_value_error_naming_the_problem(tmp_path, features):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(ValueError, match="bad.geojson"):
        read_places(path)
