"""Read places from a file (OpenStreetMap extract, GeoJSON or CSV) as place documents.

`read_places` returns plain dicts with the field names of `api.schemas.PlaceSchema`, ready for
`PlaceSchema(many=True).load`. The readers only map fields; they do not validate. A bad value is
passed through unchanged so the schema reports it, rather than the importer dropping or "fixing"
the row. The one exception is OpenStreetMap, which is a source to pick places from rather than a
list the caller wrote: objects that are not places a driver can visit are skipped there.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import opening_hours
import osmium
import shapely
from osmium.filter import KeyFilter
from osmium.geom import WKBFactory
from shapely import LineString, Point, Polygon
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from api.schemas import FUEL_TYPES

# Suffixes libosmium reads (it picks format and compression from the file name).
_OSM_SUFFIXES = (".osm", ".osm.pbf", ".pbf", ".osm.bz2", ".osm.gz", ".o5m", ".opl")

# OSM amenity=* / shop=* value -> place category. amenity is looked at first, so a fuel station
# that is also tagged shop=convenience stays a fuel station.
_AMENITY_CATEGORIES = {
    "restaurant": "restaurant", "cafe": "cafe", "fast_food": "fast_food", "bar": "bar",
    "pub": "bar", "fuel": "fuel", "charging_station": "ev_charging", "car_wash": "car_wash",
    "parking": "parking",
}
_SHOP_CATEGORIES = {"convenience": "convenience", "supermarket": "supermarket"}

# fuel:<suffix>=yes -> fuel type (suffixes compared in lower case).
_FUELS = {
    "diesel": "diesel", "octane_91": "petrol", "octane_95": "petrol", "octane_98": "petrol",
    "e5": "petrol", "e10": "e10", "e85": "e85", "lpg": "lpg", "cng": "cng", "lng": "lng",
    "h2": "hydrogen", "hydrogen": "hydrogen", "adblue": "adblue", "hvo100": "hvo",
}

# socket:<suffix>=<count|yes> -> EV connector type.
_SOCKETS = {
    "type1": "type1", "type1_combo": "ccs1", "type2": "type2", "type2_combo": "ccs2",
    "chademo": "chademo", "tesla_supercharger": "nacs", "nacs": "nacs", "schuko": "schuko",
}
_WKB = WKBFactory()
_KILOWATTS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*kw\s*$", re.IGNORECASE)

# Plain string properties / columns copied onto the place as they are.
_TEXT_FIELDS = ("name", "category", "brand", "address", "opening_hours", "timezone",
                "external_id")


def read_places(path: str | os.PathLike) -> list[dict]:
    """The places in an OSM extract (.osm.pbf, .osm, .osm.bz2 ...), GeoJSON or CSV file."""
    name = Path(path).name.lower()
    if name.endswith(_OSM_SUFFIXES):
        return read_osm(path)
    if name.endswith((".geojson", ".json")):
        return read_geojson(path)
    if name.endswith(".csv"):
        return read_csv(path)
    raise ValueError(f"cannot import places from {Path(path).name!r}: expected an OpenStreetMap "
                     f"file ({', '.join(_OSM_SUFFIXES)}), .geojson/.json or .csv")


# --- OpenStreetMap -------------------------------------------------------------------------

def read_osm(path: str | os.PathLike) -> list[dict]:
    """Restaurants, cafés, bars, fuel, EV charging, car washes, parking and food shops in an OSM
    file. Nodes keep their location; ways and multipolygon relations become their centroid.
    Objects with neither a name nor (except car parks) a brand or operator are skipped."""
    wanted = KeyFilter("amenity", "shop")
    # with_areas assembles multipolygon relations and keeps node locations for ways.
    processor = osmium.FileProcessor(str(path)).with_areas(wanted).with_filter(wanted)
    places = []
    for obj in processor:
        # A closed way comes both as a Way and as an Area; keep the Way (an id of its own, and
        # no loss when the area cannot be assembled) and take only relations from areas.
        if isinstance(obj, osmium.osm.Area) and obj.from_way():
            continue
        place = _osm_place(obj)
        if place:
            places.append(place)
    return places


def _osm_place(obj: Any) -> dict | None:
    # Values trimmed, and blank ones as if absent: a name or brand of spaces names nothing.
    tags = {tag.k: tag.v.strip() for tag in obj.tags if tag.v.strip()}
    category = _osm_category(tags)
    name = _osm_name(tags, category)
    if not category or not name:
        return None
    geometry = _osm_geometry(obj)
    if geometry is None:
        return None
    point = geometry.centroid
    place: dict[str, Any] = {"name": name, "category": category, "lat": point.y, "lng": point.x}
    brand = tags.get("brand")
    if not brand and category in ("fuel", "ev_charging"):
        brand = tags.get("operator")  # a station's operator is what drivers know it by
    _put(place, "brand", brand)
    _put(place, "address", _osm_address(tags))
    hours = tags.get("opening_hours")
    if hours and opening_hours.validate(hours):
        place["opening_hours"] = hours  # unparseable hours are dropped, the place is kept
    _put(place, "attributes", _osm_attributes(tags))
    place["external_id"] = _osm_external_id(obj)
    return place


def _osm_category(tags: dict[str, str]) -> str | None:
    return (_AMENITY_CATEGORIES.get(tags.get("amenity", ""))
            or _SHOP_CATEGORIES.get(tags.get("shop", "")))


def _osm_name(tags: dict[str, str], category: str | None) -> str | None:
    if category == "parking":
        # An operator alone (a city's parking company) names no particular car park.
        return tags.get("name")
    named = tags.get("name") or tags.get("brand") or tags.get("operator")
    # A driver looking for fuel or a charger wants the unnamed ones too.
    return named or _UNNAMED_STATIONS.get(category or "")


_UNNAMED_STATIONS = {"fuel": "Fuel station", "ev_charging": "EV charging station"}


def _osm_geometry(obj: Any) -> BaseGeometry | None:
    if isinstance(obj, osmium.osm.Node):
        return Point(obj.location.lon, obj.location.lat)
    if isinstance(obj, osmium.osm.Area):
        return shapely.from_wkb(_WKB.create_multipolygon(obj))
    if not isinstance(obj, osmium.osm.Way):
        return None  # a relation that is not a multipolygon (e.g. a tram-pub's route) has no area
    # A way cut off by the extract's edge has nodes without locations: no reliable centroid.
    if not all(node.location.valid() for node in obj.nodes):
        return None
    coords = [(node.lon, node.lat) for node in obj.nodes]
    if obj.is_closed() and len(coords) >= 4:
        return Polygon(coords)  # a closed way outlines an area, not a loop of road
    return LineString(coords)


def _osm_external_id(obj: Any) -> str:
    if isinstance(obj, osmium.osm.Area):
        return f"osm:relation/{obj.orig_id()}"
    kind = "node" if isinstance(obj, osmium.osm.Node) else "way"
    return f"osm:{kind}/{obj.id}"


def _osm_address(tags: dict[str, str]) -> str | None:
    # "Street 12, 00100 City": the housenumber after the street, as in Finland or Germany.
    street = _join(tags.get("addr:street"), tags.get("addr:housenumber"))
    town = _join(tags.get("addr:postcode"), tags.get("addr:city"))
    return ", ".join(part for part in (street, town) if part) or None


def _osm_attributes(tags: dict[str, str]) -> dict:
    attributes: dict[str, Any] = {}
    _put(attributes, "cuisine", [c.lower() for c in _split(tags.get("cuisine"))])
    _put(attributes, "fuel_types", _osm_fuels(tags))
    _put(attributes, "ev_connectors", _osm_connectors(tags))
    return attributes


def _osm_fuels(tags: dict[str, str]) -> list[str]:
    found = {_FUELS.get(key[5:].lower()) for key, value in tags.items()
             if key.startswith("fuel:") and value == "yes"}
    return [fuel for fuel in FUEL_TYPES if fuel in found]


def _osm_connectors(tags: dict[str, str]) -> list[dict]:
    connectors = []
    for key, value in tags.items():
        socket = key.split(":")
        if len(socket) != 2 or socket[0] != "socket" or socket[1] not in _SOCKETS:
            continue
        if value == "no" or value == "0":
            continue
        connector: dict[str, Any] = {"type": _SOCKETS[socket[1]]}
        # Otherwise "yes": present, count unknown (isdigit alone takes "²", which int() refuses).
        if value.isascii() and value.isdigit():
            connector["count"] = int(value)
        power = _KILOWATTS.match(tags.get(f"{key}:output", ""))
        if power:
            connector["power_kw"] = float(power.group(1))
        connectors.append(connector)
    return connectors


# --- GeoJSON -------------------------------------------------------------------------------

def read_geojson(path: str | os.PathLike) -> list[dict]:
    """One place per feature of a FeatureCollection; properties named as in the place schema."""
    with open(path, encoding="utf-8") as file:
        collection = json.load(file)
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise ValueError(f"{Path(path).name}: expected a GeoJSON FeatureCollection")
    features = collection.get("features")
    if not isinstance(features, list):
        raise ValueError(f"{Path(path).name}: 'features' must be a list")
    places = []
    for index, feature in enumerate(features):
        try:
            places.append(_geojson_place(feature))
        except Exception as error:  # shapely and malformed structures raise many kinds
            raise ValueError(f"{Path(path).name}: feature {index}: {error}") from None
    return places


def _geojson_place(feature: dict) -> dict:
    if not isinstance(feature, dict) or not isinstance(feature.get("properties") or {}, dict):
        raise ValueError("a feature must be an object with an object of properties")
    # null properties count as absent: other tools write every column for every feature.
    properties = {k: v for k, v in (feature.get("properties") or {}).items() if v is not None}
    place = {field: properties[field] for field in _TEXT_FIELDS if field in properties}
    if "external_id" not in place and feature.get("id") is not None:
        place["external_id"] = str(feature["id"])
    if feature.get("geometry"):
        point = shape(feature["geometry"]).centroid  # a Point's centroid is the point itself
        if point.is_empty:
            raise ValueError("empty geometry")
        place["lat"], place["lng"] = point.y, point.x  # GeoJSON order is [lng, lat]
    attributes = dict(properties.get("attributes") or {})
    for field in ("cuisine", "fuel_types"):
        if field in properties:
            attributes.setdefault(field, _as_list(properties[field]))
    if "price_level" in properties:
        attributes.setdefault("price_level", properties["price_level"])
    _put(place, "attributes", attributes)
    return place


# --- CSV -----------------------------------------------------------------------------------

def read_csv(path: str | os.PathLike) -> list[dict]:
    """One place per row; columns named as in the place schema, lists separated by `;`. Cells are
    trimmed of surrounding spaces and blank ones left out; nothing else is changed."""
    with open(path, encoding="utf-8-sig", newline="") as file:  # -sig: Excel's byte-order mark
        return [_csv_place(row) for row in csv.DictReader(file)]


def _csv_place(row: dict[str, str | None]) -> dict:
    cells = {k: v.strip() for k, v in row.items() if isinstance(k, str) and v and v.strip()}
    place: dict[str, Any] = {field: cells[field] for field in _TEXT_FIELDS if field in cells}
    for field in ("lat", "lng"):
        if field in cells:
            place[field] = _number(cells[field], float)
    attributes: dict[str, Any] = {}
    for field in ("cuisine", "fuel_types"):
        _put(attributes, field, _split(cells.get(field)))
    if "price_level" in cells:
        attributes["price_level"] = _number(cells["price_level"], int)
    _put(place, "attributes", attributes)
    return place


# --- helpers -------------------------------------------------------------------------------

def _number(text: str, kind: type[int] | type[float]) -> int | float | str:
    """`text` as a number, or unchanged so that the schema reports it with its field name
    (int() and float() would also read "１２" and "1_000")."""
    if not text.isascii() or "_" in text:
        return text
    try:
        return kind(text)
    except ValueError:
        return text


def _split(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(";") if item.strip()]


def _as_list(value: Any) -> Any:
    # A flat property may hold an OSM-style "a;b" string; anything else goes to the schema as is.
    return _split(value) if isinstance(value, str) else value


def _join(*parts: str | None) -> str:
    return " ".join(part for part in parts if part)


def _put(target: dict, key: str, value: Any) -> None:
    """Set `key` only when there is a value: absent fields are left out, not set to None."""
    if value:
        target[key] = value
