"""The place catalogue API: happy paths, validation, pagination, bulk and merchant isolation."""

from __future__ import annotations

import pytest

from offers import catalogue

from .conftest import CAFE, FUEL, redis_snapshot


def create(client, headers, place=CAFE):
    response = client.post("/v1/places", json=place, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def test_created_place_comes_back_with_id_and_inferred_timezone(client, merchant):
    merchant_id, headers = merchant
    place = create(client, headers)
    assert place["id"].startswith(f"p.{merchant_id}.")
    assert place["merchant_id"] == merchant_id
    assert place["timezone"] == "Europe/Helsinki"
    fetched = client.get(f"/v1/places/{place['id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json == place


def test_patch_replaces_only_the_fields_sent(client, merchant):
    _, headers = merchant
    place = create(client, headers, FUEL)
    response = client.patch(f"/v1/places/{place['id']}", json={"name": "Neste Ruoholahti"},
                            headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["name"] == "Neste Ruoholahti"
    assert response.json["brand"] == "Neste"
    assert response.json["created_at"] == place["created_at"]


def test_moving_a_place_infers_its_new_timezone(client, merchant):
    _, headers = merchant
    place = create(client, headers)
    moved = client.patch(f"/v1/places/{place['id']}", json={"lat": 43.7384, "lng": 7.4246},
                         headers=headers)
    assert moved.json["timezone"] == "Europe/Monaco"


def test_a_patch_repeating_the_position_keeps_the_timezone_set(client, merchant):
    _, headers = merchant
    place = create(client, headers, {**CAFE, "timezone": "Europe/Tallinn"})  # set by hand
    same = client.patch(f"/v1/places/{place['id']}", headers=headers,
                        json={"name": "Renamed", "lat": place["lat"], "lng": place["lng"]})
    assert same.status_code == 200 and same.json["timezone"] == "Europe/Tallinn"


def test_a_patch_of_attributes_changes_only_the_ones_sent(client, merchant):
    _, headers = merchant
    place = create(client, headers, {**CAFE, "attributes": {"cuisine": ["coffee"],
                                                            "price_level": 2}})
    patched = client.patch(f"/v1/places/{place['id']}", headers=headers,
                           json={"attributes": {"price_level": 3}})
    assert patched.json["attributes"] == {"cuisine": ["coffee"], "price_level": 3}
    cleared = client.patch(f"/v1/places/{place['id']}", headers=headers,
                           json={"attributes": None})
    assert cleared.status_code == 200 and not cleared.json.get("attributes")
    again = client.patch(f"/v1/places/{place['id']}", headers=headers,
                         json={"attributes": {"price_level": 1}})
    assert again.json["attributes"] == {"price_level": 1}


def test_delete_removes_the_place(client, merchant):
    _, headers = merchant
    place = create(client, headers)
    assert client.delete(f"/v1/places/{place['id']}", headers=headers).status_code == 204
    assert client.get(f"/v1/places/{place['id']}", headers=headers).status_code == 404


def test_listing_pages_through_every_place_once(client, merchant):
    _, headers = merchant
    items = [{**CAFE, "name": f"Café {n}"} for n in range(25)]
    created = client.post("/v1/places/bulk", json={"items": items}, headers=headers).json
    seen, cursor = [], None
    while True:
        query = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/places", query_string=query, headers=headers).json
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(item["id"] for item in created["items"])
    assert len(seen) == 25


def test_bulk_answers_ids_in_input_order(client, merchant):
    _, headers = merchant
    items = [{**CAFE, "name": f"Café {n}"} for n in range(5)]
    response = client.post("/v1/places/bulk", json={"items": items}, headers=headers)
    assert response.status_code == 201
    names = [client.get(f"/v1/places/{item['id']}", headers=headers).json["name"]
             for item in response.json["items"]]
    assert names == [f"Café {n}" for n in range(5)]


def test_bulk_with_one_bad_item_stores_nothing_and_names_the_item(client, merchant,
                                                                  redis_client):
    _, headers = merchant
    items = [CAFE, FUEL, {**CAFE, "lat": 123.0}, CAFE]
    before = redis_snapshot(redis_client)
    response = client.post("/v1/places/bulk", json={"items": items}, headers=headers)
    assert response.status_code == 422
    assert list(response.json["errors"]["items"]) == ["2"]
    assert "lat" in response.json["errors"]["items"]["2"]
    assert redis_snapshot(redis_client) == before


def test_bulk_accepts_ten_thousand_and_refuses_more(client, merchant):
    _, headers = merchant
    items = [{**FUEL, "lng": 24.0 + n * 1e-5} for n in range(10_000)]
    assert client.post("/v1/places/bulk", json={"items": items},
                       headers=headers).status_code == 201
    refused = client.post("/v1/places/bulk", json={"items": items + [FUEL]}, headers=headers)
    assert refused.status_code == 422
    assert "items" in refused.json["errors"]


def test_a_bulk_upload_naming_an_external_id_twice_stores_nothing(client, merchant,
                                                                  redis_client):
    _, headers = merchant
    before = redis_snapshot(redis_client)
    refused = client.post("/v1/places/bulk", headers=headers, json={"items": [
        {**CAFE, "external_id": "osm:node/7"}, FUEL, {**FUEL, "external_id": "osm:node/7"}]})
    assert refused.status_code == 422
    assert refused.json["errors"] == {"items": {"2": {"external_id": ["repeats item 0"]}}}
    assert redis_snapshot(redis_client) == before


def test_reimporting_an_external_id_updates_instead_of_duplicating(client, merchant):
    _, headers = merchant
    first = create(client, headers, {**CAFE, "external_id": "osm:node/1"})
    second = create(client, headers, {**CAFE, "name": "Renamed", "external_id": "osm:node/1"})
    assert second["id"] == first["id"]
    assert second["created_at"] == first["created_at"]
    assert len(client.get("/v1/places", headers=headers).json["items"]) == 1


@pytest.mark.parametrize("opening_hours", [
    "24/7", "Mo-Fr 07:00-20:00; Sa 08:00-14:00; Su off", "Mo-Fr 08:00-12:00,13:00-17:30",
    "Mo-Su 16:00-02:00", "off", "Mo-Sa 07:00-21:00; PH off",
])
def test_opening_hours_in_osm_syntax_are_accepted(client, merchant, opening_hours):
    _, headers = merchant
    create(client, headers, {**CAFE, "opening_hours": opening_hours})


INVALID_PLACES = {
    "lat above 90": ({"lat": 90.5}, "lat"),
    "lat below -90": ({"lat": -91}, "lat"),
    "lng above 180": ({"lng": 180.01}, "lng"),
    "lng below -180": ({"lng": -200}, "lng"),
    "lat not a number": ({"lat": "north"}, "lat"),
    "unknown category": ({"category": "casino"}, "category"),
    "unknown field": ({"colour": "red"}, "colour"),
    "malformed opening hours": ({"opening_hours": "Mo-Xx 25:00-26:00"}, "opening_hours"),
    "empty name": ({"name": ""}, "name"),
    "unknown timezone": ({"timezone": "Mars/Olympus"}, "timezone"),
    "price level out of range": ({"attributes": {"price_level": 7}}, "attributes"),
    "unknown fuel type": ({"attributes": {"fuel_types": ["plutonium"]}}, "attributes"),
    "unknown connector": ({"attributes": {"ev_connectors": [{"type": "usb"}]}}, "attributes"),
    "fractional price level": ({"attributes": {"price_level": 2.5}}, "attributes"),
    "lone surrogate in name": ({"name": "caf\udce9"}, "name"),
    "lone surrogate in opening hours": ({"opening_hours": "\ud800"}, "opening_hours"),
    "NUL in name": ({"name": "Caf\u00e9\u0000 Aalto"}, "name"),
    "escape in brand": ({"brand": "Neste\u001b[2J"}, "brand"),
    "C1 control in name": ({"name": "Caf\u009b2J"}, "name"),
    "bidi override in name": ({"name": "Caf\u202eX"}, "name"),
    "blank name": ({"name": "   "}, "name"),
    "blank brand": ({"brand": " \t"}, "brand"),
}


@pytest.mark.parametrize("change, field", INVALID_PLACES.values(), ids=INVALID_PLACES.keys())
def test_invalid_place_is_refused_with_422_naming_the_field(client, merchant, redis_client,
                                                            change, field):
    _, headers = merchant
    before = redis_snapshot(redis_client)
    response = client.post("/v1/places", json={**CAFE, **change}, headers=headers)
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert redis_snapshot(redis_client) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_coordinates_are_refused(client, merchant, literal):
    _, headers = merchant
    body = '{"name": "X", "category": "cafe", "lat": LAT, "lng": 24.9}'.replace("LAT", literal)
    response = client.post("/v1/places", data=body, content_type="application/json",
                           headers=headers)
    assert response.status_code == 422
    assert "lat" in response.json["errors"]


def test_missing_required_fields_are_each_reported(client, merchant):
    _, headers = merchant
    response = client.post("/v1/places", json={}, headers=headers)
    assert response.status_code == 422
    assert {"name", "category", "lat", "lng"} <= set(response.json["errors"])


def test_invalid_patch_changes_nothing(client, merchant, redis_client):
    _, headers = merchant
    place = create(client, headers)
    before = redis_snapshot(redis_client)
    response = client.patch(f"/v1/places/{place['id']}", json={"lat": 100}, headers=headers)
    assert response.status_code == 422
    assert redis_snapshot(redis_client) == before


@pytest.mark.parametrize("write", ["bulk", "patch"])
def test_a_place_whose_offers_cannot_be_filed_is_not_written(client, merchant, redis_client,
                                                             monkeypatch, write):
    """The documents and the index are written apart: the index records of the place's offers
    are made first, so a failure there leaves the place as it was (not moved in its document
    while its offers stay filed where it was)."""
    _, headers = merchant
    place = create(client, headers, {**CAFE, "external_id": "ext-1"})
    client.post("/v1/offers", headers=headers, json={
        "place_ids": [place["id"]], "title": "Free coffee", "category": "cafe",
        "discount": {"kind": "percent", "value": 100}})
    made = catalogue.offer_entries

    def failing(offer, places, *args, **kwargs):
        if places[place["id"]]["name"] == "cannot be filed":
            raise RuntimeError("no records for this one")
        return made(offer, places, *args, **kwargs)

    monkeypatch.setattr(catalogue, "offer_entries", failing)
    before = redis_snapshot(redis_client)
    if write == "bulk":
        response = client.post("/v1/places/bulk", headers=headers, json={"items": [
            {**CAFE, "external_id": "ext-1", "name": "cannot be filed", "lat": 60.2}]})
    else:
        response = client.patch(f"/v1/places/{place['id']}", headers=headers,
                                json={"name": "cannot be filed", "lat": 60.2})
    assert response.status_code == 500  # a fault of ours, as the error says
    assert redis_snapshot(redis_client) == before


def test_place_named_by_an_offer_cannot_be_deleted(client, merchant):
    _, headers = merchant
    place = create(client, headers)
    offer = client.post("/v1/offers", headers=headers, json={
        "place_ids": [place["id"]], "title": "Free coffee", "category": "cafe",
        "discount": {"kind": "percent", "value": 100}}).json
    response = client.delete(f"/v1/places/{place['id']}", headers=headers)
    assert response.status_code == 409
    assert response.json["errors"]["offer_ids"] == [offer["id"]]
    assert client.get(f"/v1/places/{place['id']}", headers=headers).status_code == 200


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_another_merchants_place_is_not_found(client, merchant, new_account, method):
    _, headers_a = merchant
    _, headers_b = new_account("merchants", "Merchant B")
    place = create(client, headers_a)
    kwargs = {"json": {"name": "Mine now"}} if method == "patch" else {}
    response = getattr(client, method)(f"/v1/places/{place['id']}", headers=headers_b, **kwargs)
    assert response.status_code == 404
    assert place["id"] not in str(client.get("/v1/places", headers=headers_b).json)
    assert client.get(f"/v1/places/{place['id']}", headers=headers_a).json["name"] == CAFE["name"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": "Basic abc"}])
def test_catalogue_without_a_valid_key_is_401(client, headers):
    assert client.get("/v1/places", headers=headers).status_code == 401
    assert client.post("/v1/places", json=CAFE, headers=headers).status_code == 401


def test_fleet_keys_cannot_touch_the_catalogue(client, fleet):
    _, headers = fleet
    assert client.post("/v1/places", json=CAFE, headers=headers).status_code == 403
    assert client.get("/v1/places", headers=headers).status_code == 403


def test_admin_works_on_the_shared_catalogue(client, admin, merchant):
    _, merchant_headers = merchant
    shared = create(client, admin)
    assert shared["merchant_id"] == "m_shared"
    assert client.get(f"/v1/places/{shared['id']}", headers=merchant_headers).status_code == 404


def test_external_id_cannot_change_after_creation(client, merchant):
    _, headers = merchant
    place = create(client, headers, {**CAFE, "external_id": "osm:node/1"})
    response = client.patch(f"/v1/places/{place['id']}", json={"external_id": "osm:node/2"},
                            headers=headers)
    assert response.status_code == 422
    assert "external_id" in response.json["errors"]


def test_bulk_with_a_repeated_external_id_names_the_repeat(client, merchant, redis_client):
    _, headers = merchant
    items = [{**CAFE, "external_id": "a"}, {**FUEL, "external_id": "b"},
             {**FUEL, "external_id": "a"}]
    before = redis_snapshot(redis_client)
    response = client.post("/v1/places/bulk", json={"items": items}, headers=headers)
    assert response.status_code == 422
    assert list(response.json["errors"]["items"]) == ["2"]
    assert redis_snapshot(redis_client) == before
