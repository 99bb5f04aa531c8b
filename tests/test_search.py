"""Place search around a point and along a route: the endpoints, their validation, and the
exact-corridor property against brute-force geodesic distances (synthetic and real data)."""

from __future__ import annotations

import numpy as np
import osmium
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.schemas import AlongRoutePageSchema, NearbyPageSchema, PlaceSchema
from geo.route import WGS84, route_from_points
from offers import keys
from offers.catalogue import Catalogue
from offers.importers import read_places
from offers.search import PlaceSearch

from .conftest import CAFE, FUEL, SHARED_DATA, drawn_route

DENVER_ROUTE = {"type": "LineString", "coordinates": [[-105.0, 39.745], [-104.97, 39.745]]}


def dense_route(lat, lng, step_m=2.0):
    """The route's geodesic segments sampled every `step_m`, for brute force."""
    pts = []
    for i in range(len(lat) - 1):
        _, _, length = WGS84.inv(lng[i], lat[i], lng[i + 1], lat[i + 1])
        count = int(length // step_m)
        inner = WGS84.npts(lng[i], lat[i], lng[i + 1], lat[i + 1], count) if count else []
        pts += [(lng[i], lat[i]), *inner]
    pts.append((lng[-1], lat[-1]))
    return np.array(pts)


def brute_distances(samples, plat, plng):
    out = np.empty(len(plat))
    for i in range(len(plat)):
        _, _, d = WGS84.inv(np.full(len(samples), plng[i]), np.full(len(samples), plat[i]),
                            samples[:, 0], samples[:, 1])
        out[i] = d.min()
    return out


def assert_exact_corridor(found_ids, ids, truth, corridor_m):
    found = set(found_ids)
    for pid, distance in zip(ids, truth, strict=True):
        if distance <= corridor_m - 1:
            assert pid in found, (pid, distance)
        elif distance > corridor_m + 1:
            assert pid not in found, (pid, distance)


def store_places(redis_client, places):
    stored = Catalogue(redis_client).add_places(keys.SHARED_MERCHANT,
                                                PlaceSchema(many=True).load(places))
    return [p["id"] for p in stored]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_search_along_route_is_exact_against_brute_force(redis_client, data):
    redis_client.flushdb()
    lat0 = data.draw(st.floats(-80, 80))
    lng0 = data.draw(st.floats(-180, 180))
    scale = 1 / np.cos(np.radians(lat0))
    n = data.draw(st.integers(2, 5))
    rlat = lat0 + np.array(data.draw(st.lists(st.floats(-0.03, 0.03), min_size=n, max_size=n)))
    rlng = (lng0 + scale * np.array(data.draw(st.lists(st.floats(-0.03, 0.03), min_size=n,
                                                       max_size=n))) + 180) % 360 - 180
    route = drawn_route(rlat, rlng)
    if route is None:
        return
    k = 40
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    plat = np.clip(lat0 + rng.uniform(-0.05, 0.05, k), -89.9, 89.9)
    plng = (lng0 + scale * rng.uniform(-0.05, 0.05, k) + 180) % 360 - 180
    corridor = data.draw(st.floats(50, 5000))
    ids = store_places(redis_client, [{**CAFE, "lat": a, "lng": b}
                                      for a, b in zip(plat, plng, strict=True)])
    found = PlaceSearch(redis_client).along_route(route, corridor, 1000)
    truth = brute_distances(dense_route(rlat, rlng), plat, plng)
    assert_exact_corridor([f["place_id"] for f in found], ids, truth, corridor)
    for hit in found:
        assert hit["offset_m"] == pytest.approx(truth[ids.index(hit["place_id"])], abs=1.0)


def _trace(name):
    import csv

    with open(SHARED_DATA / "traces" / "denver" / name) as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["latitude"]) for r in rows]),
            np.array([float(r["longitude"]) for r in rows]))


@pytest.mark.skipif(not (SHARED_DATA / "traces").exists(), reason="no shared traces")
@pytest.mark.parametrize("trace", ["sample_trace_1.csv", "sample_trace_3.csv"])
def test_real_denver_trace_with_seed_places_is_exact(redis_client, trace):
    import json
    from pathlib import Path

    seed = json.loads(Path("seed_data/places.json").read_text())
    places = [item["place"] for item in seed]
    ids = store_places(redis_client, places)
    lat, lng = _trace(trace)
    keep = np.concatenate([[True], (np.diff(lat) != 0) | (np.diff(lng) != 0)])
    lat, lng = lat[keep], lng[keep]
    found = PlaceSearch(redis_client).along_route(route_from_points(lat, lng), 1000, 1000)
    plat = np.array([p["lat"] for p in places])
    plng = np.array([p["lng"] for p in places])
    near = ((plat > lat.min() - 0.02) & (plat < lat.max() + 0.02)
            & (plng > lng.min() - 0.03) & (plng < lng.max() + 0.03))
    truth = brute_distances(dense_route(lat, lng, 5.0), plat[near], plng[near])
    assert_exact_corridor([f["place_id"] for f in found], np.array(ids)[near], truth, 1000)
    assert found, "the trace crosses the seeded region"


def _osm_road(path):
    """A real road from the extract, as a route: the main road way with the most nodes."""
    best = None
    for way in osmium.FileProcessor(str(path)).with_locations().with_filter(
            osmium.filter.KeyFilter("highway")):
        if not isinstance(way, osmium.osm.Way):
            continue
        if way.tags.get("highway") not in ("trunk", "primary", "secondary", "tertiary"):
            continue
        coords = [(n.lat, n.lon) for n in way.nodes if n.location.valid()]
        if best is None or len(coords) > len(best):
            best = coords
    return np.array(best)


@pytest.mark.skipif(not (SHARED_DATA / "osm").exists(), reason="no shared OSM extracts")
@pytest.mark.parametrize("extract", ["monaco-2019.osm.pbf", "Helsinki.osm.pbf"])
def test_real_osm_places_along_a_real_road_are_exact(redis_client, extract):
    path = SHARED_DATA / "osm" / extract
    places = read_places(path)
    ids = store_places(redis_client, places)
    road = _osm_road(path)
    found = PlaceSearch(redis_client).along_route(route_from_points(road[:, 0], road[:, 1]),
                                                  300, 1000)
    plat = np.array([p["lat"] for p in places])
    plng = np.array([p["lng"] for p in places])
    truth = brute_distances(dense_route(road[:, 0], road[:, 1], 2.0), plat, plng)
    assert_exact_corridor([f["place_id"] for f in found], ids, truth, 300)
    assert len(found) > 5


# -- the endpoints -----------------------------------------------------------------------------

@pytest.fixture
def denver(client, admin):
    places = [{**CAFE, "lat": 39.74, "lng": -104.99},
              {**FUEL, "lat": 39.75, "lng": -104.98, "brand": "Shell"},
              {**FUEL, "name": "Far away", "lat": 39.9, "lng": -104.5}]
    items = client.post("/v1/places/bulk", json={"items": places}, headers=admin).json["items"]
    return [item["id"] for item in items]


def test_nearby_answers_nearest_first_within_the_radius(client, fleet, denver):
    _, headers = fleet
    items = client.get("/v1/places/nearby", query_string={
        "lat": 39.74, "lng": -104.99, "radius_m": 3000}, headers=headers).json["items"]
    assert [item["place_id"] for item in items] == denver[:2]
    assert items[0]["distance_m"] == pytest.approx(0, abs=0.01)
    assert items[1]["distance_m"] == pytest.approx(
        WGS84.inv(-104.99, 39.74, -104.98, 39.75)[2], abs=0.01)
    assert set(items[0]) == {"place_id", "name", "category", "brand", "lat", "lng",
                             "distance_m"}


def test_search_answers_are_already_what_their_schemas_would_write(client, fleet, denver):
    """The searches write their answers to JSON directly (api/responses.py): dumping them
    through the documented schemas must change nothing, field names included."""
    _, headers = fleet
    nearby = client.get("/v1/places/nearby", query_string={
        "lat": 39.74, "lng": -104.99, "radius_m": 3000}, headers=headers)
    along = client.post("/v1/places/search-along-route", headers=headers, json={
        "route": DENVER_ROUTE, "corridor_m": 1000})
    for response, schema in ((nearby, NearbyPageSchema()), (along, AlongRoutePageSchema())):
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert response.json["items"]
        assert schema.dump(response.json) == response.json
        fields = set(schema.fields["items"].inner.schema.fields)
        assert all(set(item) == fields for item in response.json["items"])


def test_nearby_filters_by_category_and_limits(client, merchant, denver):
    _, headers = merchant
    query = {"lat": 39.74, "lng": -104.99, "radius_m": 50000, "category": "fuel"}
    items = client.get("/v1/places/nearby", query_string=query, headers=headers).json["items"]
    assert [item["place_id"] for item in items] == denver[1:]
    one = client.get("/v1/places/nearby", query_string={**query, "limit": 1}, headers=headers)
    assert len(one.json["items"]) == 1


def test_along_route_reports_distances_side_and_detour(client, fleet, denver):
    _, headers = fleet
    items = client.post("/v1/places/search-along-route", headers=headers, json={
        "route": DENVER_ROUTE, "corridor_m": 1000}).json["items"]
    assert [item["place_id"] for item in items] == denver[:2]
    cafe, fuel = items
    assert (cafe["side"], fuel["side"]) == ("right", "left")  # driving east
    assert cafe["distance_along_route_m"] < fuel["distance_along_route_m"]
    assert cafe["offset_m"] == pytest.approx(WGS84.inv(-104.99, 39.74, -104.99, 39.745)[2],
                                             abs=1.0)
    assert cafe["detour_m"] > 2 * cafe["offset_m"] and cafe["detour_s"] > 0


def test_along_route_from_a_position_keeps_only_what_is_ahead(client, fleet, denver):
    _, headers = fleet
    # The café is 555 m off the route but 430 m behind the car: 700 m from what is ahead.
    items = client.post("/v1/places/search-along-route", headers=headers, json={
        "route": DENVER_ROUTE, "position": {"lat": 39.745, "lng": -104.985},
        "corridor_m": 600}).json["items"]
    assert [item["place_id"] for item in items] == [denver[1]]
    assert items[0]["distance_along_route_m"] == pytest.approx(
        WGS84.inv(-104.985, 39.745, -104.98, 39.745)[2], abs=2.0)


def test_along_route_from_the_routes_end_finds_nothing_ahead(client, fleet, denver):
    _, headers = fleet
    response = client.post("/v1/places/search-along-route", headers=headers, json={
        "route": DENVER_ROUTE, "position": {"lat": 39.745, "lng": -104.97},
        "corridor_m": 5000})
    assert response.status_code == 200 and response.json == {"items": []}


def test_along_an_out_and_back_route_the_heading_says_which_way_the_car_drives(client,
                                                                                fleet, admin):
    _, headers = fleet
    passed, ahead = client.post("/v1/places/bulk", headers=admin, json={"items": [
        {**CAFE, "lat": 39.746, "lng": -104.972}, {**CAFE, "lat": 39.746, "lng": -104.99}]}
    ).json["items"]
    body = {"route": {"type": "LineString", "coordinates": [
        [-105.0, 39.745], [-104.97, 39.745], [-105.0, 39.745]]}, "corridor_m": 300}
    found = {}
    for heading in (90, 270):
        found[heading] = client.post("/v1/places/search-along-route", headers=headers, json={
            **body, "position": {"lat": 39.745, "lng": -104.98, "heading_deg": heading}}
        ).json["items"]
    # Eastward, on the way out: both ahead, the far end first; westward, on the way back.
    assert [item["place_id"] for item in found[90]] == [passed["id"], ahead["id"]]
    assert [item["place_id"] for item in found[270]] == [ahead["id"]]
    assert found[270][0]["distance_along_route_m"] == pytest.approx(
        WGS84.inv(-104.98, 39.745, -104.99, 39.745)[2], abs=5.0)


def test_along_route_accepts_an_encoded_polyline_and_filters_brands(client, fleet, denver):
    import polyline

    _, headers = fleet
    encoded = polyline.encode([(39.745, -105.0), (39.745, -104.97)], 5)
    items = client.post("/v1/places/search-along-route", headers=headers, json={
        "polyline": encoded, "brands": ["SHELL"]}).json["items"]
    assert [item["place_id"] for item in items] == [denver[1]]


def test_deleted_and_moved_places_leave_the_search(client, admin, denver):
    client.delete(f"/v1/places/{denver[0]}", headers=admin)
    client.patch(f"/v1/places/{denver[1]}", json={"lat": 39.9}, headers=admin)
    items = client.post("/v1/places/search-along-route", headers=admin, json={
        "route": DENVER_ROUTE}).json["items"]
    assert items == []
    moved = client.get("/v1/places/nearby", query_string={"lat": 39.9, "lng": -104.98,
                                                          "radius_m": 100}, headers=admin)
    assert [item["place_id"] for item in moved.json["items"]] == [denver[1]]


INVALID_SEARCHES = {
    "one point": ({"route": {"type": "LineString", "coordinates": [[1, 1]]}}, "route"),
    "lat out of range": ({"route": {"type": "LineString", "coordinates": [[1, 91], [1, 1]]}},
                         "route"),
    "not a LineString": ({"route": {"type": "Point", "coordinates": [[1, 1], [2, 2]]}},
                         "route"),
    "no route": ({}, "route"),
    "both route and polyline": ({"route": DENVER_ROUTE, "polyline": "_p~iF~ps|U_ulLnnqC"},
                                "polyline"),
    "corridor over 5 km": ({"route": DENVER_ROUTE, "corridor_m": 5001}, "corridor_m"),
    "limit over 1000": ({"route": DENVER_ROUTE, "limit": 1001}, "limit"),
    "too long": ({"route": {"type": "LineString", "coordinates": [[0, 0], [20, 0]]}}, "route"),
    "too many points": ({"route": {"type": "LineString", "coordinates": [
        [i * 1e-5, 0] for i in range(20_001)]}}, "route"),
    "position far away": ({"route": DENVER_ROUTE, "position": {"lat": 45, "lng": -100}},
                          "position"),
    "truncated polyline": ({"polyline": "_p~iF~ps|U_"}, "polyline"),  # the field sent
    # a number of hundreds of digits, too large for a float once divided by 1e5 (was a 500)
    "polyline of a huge number": ({"polyline": "~" * 300 + "???"}, "polyline"),
}


@pytest.mark.parametrize("body, field", INVALID_SEARCHES.values(), ids=INVALID_SEARCHES.keys())
def test_unservable_route_searches_are_422(client, fleet, body, field):
    _, headers = fleet
    response = client.post("/v1/places/search-along-route", json=body, headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]


@pytest.mark.parametrize("query", [
    {"lat": 91, "lng": 0}, {"lat": 0, "lng": 0, "radius_m": 50_001},
    {"lat": 0, "lng": 0, "category": "casino"}, {"lat": "nan", "lng": 0}, {"lng": 0},
    # float() and int() read these as numbers; a query's numbers are written as JSON's
    {"lat": "\uff11\uff12", "lng": 0}, {"lat": 0, "lng": "\u0661"},
    {"lat": 0, "lng": 0, "radius_m": "1_000"}, {"lat": " 5", "lng": 0},
    {"lat": 0, "lng": 0, "limit": "10.0"}, {"lat": 0, "lng": 0, "limit": "+10"},
    {"lat": 0, "lng": 0, "limit": "9" * 5000},  # more digits than int() reads: was a 500
])
def test_invalid_nearby_queries_are_422(client, fleet, query):
    _, headers = fleet
    response = client.get("/v1/places/nearby", query_string=query, headers=headers)
    assert response.status_code == 422
    assert set(response.json["errors"]) & {"lat", "lng", "radius_m", "limit", "category"}


@pytest.mark.parametrize("query, repeated", [
    ([("lat", 0), ("lng", 0), ("limit", 2), ("limit", "abc")], "limit"),  # was 2
    ([("lat", 0), ("lat", 999), ("lng", 0)], "lat"),  # was 0
    ([("lat", 0), ("lng", 0), ("category", "cafe"), ("category", "fuel")], "category"),
])
def test_a_query_parameter_given_twice_is_422(client, fleet, query, repeated):
    """Not its first value, silently: a list is written `cafe,fuel`. A parameter the query
    does not take is ignored, given twice too (a cache-buster `_=1&_=2`)."""
    response = client.get("/v1/places/nearby", query_string=query, headers=fleet[1])
    assert response.status_code == 422
    assert list(response.json["errors"]) == [repeated]
    unknown = client.get("/v1/places/nearby", headers=fleet[1],
                         query_string=[("lat", 0), ("lng", 0), ("_", 1), ("_", 2)])
    assert unknown.status_code == 200


def test_nearby_query_numbers_in_json_syntax_are_read(client, fleet):
    _, headers = fleet
    response = client.get("/v1/places/nearby", headers=headers, query_string={
        "lat": "-1.5e1", "lng": "0", "radius_m": "2.5E3", "limit": "7"})
    assert response.status_code == 200, response.json


def test_searches_need_a_key(client):
    assert client.get("/v1/places/nearby?lat=0&lng=0").status_code == 401
    assert client.post("/v1/places/search-along-route", json={}).status_code == 401
