"""The offers API: publishing, validation, derived state and merchant isolation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from offers import catalogue

from .conftest import CAFE, FUEL, redis_snapshot, years_from_now


@pytest.fixture
def places(client, merchant):
    _, headers = merchant
    items = client.post("/v1/places/bulk", json={"items": [CAFE, FUEL]}, headers=headers).json
    return [item["id"] for item in items["items"]]


def offer_body(places, **changes):
    return {"place_ids": places, "title": "5 cents off per litre", "category": "fuel",
            "discount": {"kind": "per_unit", "value": 0.05, "currency": "EUR", "unit": "litre"},
            "value_estimate": 2.5, "valid_from": "2026-01-01T00:00:00+02:00",
            "valid_until": years_from_now(3), "schedule": "Mo-Fr 06:00-10:00",
            "budget": {"max_redemptions": 100, "daily_max": 10}, "per_driver_limit": 1,
            **changes}


def publish(client, headers, body):
    response = client.post("/v1/offers", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def test_published_offer_comes_back_active_with_no_redemptions(client, merchant, places):
    merchant_id, headers = merchant
    offer = publish(client, headers, offer_body(places[1:]))
    assert offer["id"].startswith(f"o.{merchant_id}.")
    assert offer["state"] == "active"
    assert offer["redemptions"] == 0
    assert offer["timezone"] == "Europe/Helsinki"  # from its first place
    assert client.get(f"/v1/offers/{offer['id']}", headers=headers).json == offer


def test_offer_without_valid_from_starts_now(client, merchant, places):
    _, headers = merchant
    body = offer_body(places)
    del body["valid_from"]
    offer = publish(client, headers, body)
    started = datetime.fromisoformat(offer["valid_from"])
    assert abs(started - datetime.now(UTC)) < timedelta(minutes=1)


def test_an_offer_past_valid_until_is_expired_without_any_job(client, merchant, places):
    _, headers = merchant
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    offer = publish(client, headers, offer_body(places, valid_from=years_from_now(-1),
                                                 valid_until=soon))
    time.sleep(1.1)
    assert client.get(f"/v1/offers/{offer['id']}", headers=headers).json["state"] == "expired"


def test_future_offer_is_scheduled_and_paused_offer_is_paused(client, merchant, places):
    _, headers = merchant
    future = publish(client, headers, offer_body(places, valid_from=years_from_now(2)))
    assert future["state"] == "scheduled"
    paused = client.patch(f"/v1/offers/{future['id']}", json={"status": "paused"},
                          headers=headers)
    assert paused.json["state"] == "paused"


def test_patch_is_checked_against_the_whole_offer(client, merchant, places, redis_client):
    _, headers = merchant
    offer = publish(client, headers, offer_body(places))
    before = redis_snapshot(redis_client)
    response = client.patch(f"/v1/offers/{offer['id']}",
                            json={"valid_until": "2025-01-01T00:00:00Z"}, headers=headers)
    assert response.status_code == 422
    assert "valid_until" in response.json["errors"]
    assert redis_snapshot(redis_client) == before


def test_a_patch_of_one_budget_field_keeps_the_other(client, merchant, places):
    _, headers = merchant
    offer = publish(client, headers, offer_body(
        places, budget={"max_redemptions": 100, "daily_max": 5}))
    raised = client.patch(f"/v1/offers/{offer['id']}", headers=headers,
                          json={"budget": {"daily_max": 10}})
    assert raised.json["budget"] == {"max_redemptions": 100, "daily_max": 10}
    cleared = client.patch(f"/v1/offers/{offer['id']}", headers=headers,
                           json={"budget": {"max_redemptions": None}})
    assert cleared.json["budget"] == {"max_redemptions": None, "daily_max": 10}
    too_high = client.patch(f"/v1/offers/{offer['id']}", headers=headers,
                            json={"budget": {"daily_max": 1000, "max_redemptions": 50}})
    assert too_high.status_code == 422  # checked as the whole budget
    # A discount is replaced whole: its kind decides which other fields it has.
    amount = {"kind": "amount", "value": 3, "currency": "EUR"}
    assert client.patch(f"/v1/offers/{offer['id']}", headers=headers,
                        json={"discount": amount}).json["discount"] == amount
    assert client.patch(f"/v1/offers/{offer['id']}", headers=headers, json={
        "discount": {"kind": "percent", "value": 10}}).json["discount"] == {"kind": "percent",
                                                                              "value": 10}


@pytest.mark.parametrize("write", ["create", "patch"])
def test_an_offer_whose_index_records_cannot_be_made_is_not_written(
        client, merchant, places, redis_client, monkeypatch, write):
    """The documents and the index are written apart: the index records are made first, so a
    failure there leaves nothing behind (not an offer stored and never served)."""
    _, headers = merchant
    offer = publish(client, headers, offer_body(places))
    made = catalogue.offer_entries

    def failing(doc, *args, **kwargs):
        if doc["title"] == "cannot be filed":
            raise RuntimeError("no records for this one")
        return made(doc, *args, **kwargs)

    monkeypatch.setattr(catalogue, "offer_entries", failing)
    before = redis_snapshot(redis_client)
    if write == "create":
        response = client.post("/v1/offers", headers=headers,
                               json=offer_body(places, title="cannot be filed"))
    else:
        response = client.patch(f"/v1/offers/{offer['id']}", headers=headers,
                                json={"title": "cannot be filed"})
    assert response.status_code == 500  # a fault of ours, as the error says
    assert redis_snapshot(redis_client) == before


def test_listing_shows_the_merchants_offers(client, merchant, places):
    _, headers = merchant
    ids = {publish(client, headers, offer_body(places))["id"] for _ in range(3)}
    listed = client.get("/v1/offers", headers=headers).json
    assert {offer["id"] for offer in listed["items"]} == ids
    assert listed["next_cursor"] is None


def test_deleted_offer_is_gone_and_frees_its_places(client, merchant, places):
    _, headers = merchant
    offer = publish(client, headers, offer_body(places))
    assert client.delete(f"/v1/offers/{offer['id']}", headers=headers).status_code == 204
    assert client.get(f"/v1/offers/{offer['id']}", headers=headers).status_code == 404
    assert client.delete(f"/v1/places/{places[0]}", headers=headers).status_code == 204


INVALID_OFFERS = {
    "end before start": ({"valid_until": "2025-12-31T00:00:00+02:00"}, "valid_until"),
    "fractional budget": ({"budget": {"max_redemptions": 10.9}}, "budget"),
    "limit as a string": ({"per_driver_limit": "3"}, "per_driver_limit"),
    "lone surrogate in title": ({"title": "\ud800"}, "title"),
    "NUL in title": ({"title": "Free\u0000coffee"}, "title"),
    "time without offset": ({"valid_from": "2026-01-01T00:00:00"}, "valid_from"),
    "time before 1970": ({"valid_from": "1969-12-31T23:59:59Z"}, "valid_from"),
    "time in the year 9999": ({"valid_until": "9999-06-01T00:00:00Z"}, "valid_until"),
    "offset of seconds": ({"valid_from": "2026-01-01T00:00:00+01:00:30"}, "valid_from"),
    "not a time": ({"valid_until": "tomorrow"}, "valid_until"),
    "percent over 100": ({"discount": {"kind": "percent", "value": 120}}, "discount"),
    "negative discount": ({"discount": {"kind": "percent", "value": -5}}, "discount"),
    "amount without currency": ({"discount": {"kind": "amount", "value": 3}}, "discount"),
    "per unit without unit": ({"discount": {"kind": "per_unit", "value": 0.1,
                                            "currency": "EUR"}}, "discount"),
    "unknown discount kind": ({"discount": {"kind": "bogof", "value": 1}}, "discount"),
    "unknown category": ({"category": "jewellery"}, "category"),
    "daily cap above budget": ({"budget": {"max_redemptions": 5, "daily_max": 6}}, "budget"),
    "zero budget": ({"budget": {"max_redemptions": 0}}, "budget"),
    "unknown status": ({"status": "deleted"}, "status"),
    "malformed schedule": ({"schedule": "weekdays mornings"}, "schedule"),
    "no places": ({"places": []}, "place_ids"),
    "unknown field": ({"priority": 1}, "priority"),
    "repeated place": ({"places": ["p.m_x.1", "p.m_x.1"]}, "place_ids"),
}


@pytest.mark.parametrize("change, field", INVALID_OFFERS.values(), ids=INVALID_OFFERS.keys())
def test_invalid_offer_is_refused_with_422_naming_the_field(client, merchant, places,
                                                            redis_client, change, field):
    _, headers = merchant
    before = redis_snapshot(redis_client)
    response = client.post("/v1/offers", json=offer_body(**{"places": places, **change}),
                           headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert redis_snapshot(redis_client) == before


def test_offer_at_another_merchants_place_is_refused(client, merchant, new_account, places,
                                                     redis_client):
    _, headers_b = new_account("merchants", "Merchant B")
    before = redis_snapshot(redis_client)
    response = client.post("/v1/offers", json=offer_body(places), headers=headers_b)
    assert response.status_code == 422
    assert "place_ids" in response.json["errors"]
    assert redis_snapshot(redis_client) == before


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_another_merchants_offer_is_not_found(client, merchant, new_account, places, method):
    _, headers_a = merchant
    _, headers_b = new_account("merchants", "Merchant B")
    offer = publish(client, headers_a, offer_body(places))
    kwargs = {"json": {"status": "paused"}} if method == "patch" else {}
    response = getattr(client, method)(f"/v1/offers/{offer['id']}", headers=headers_b, **kwargs)
    assert response.status_code == 404
    assert client.get("/v1/offers", headers=headers_b).json["items"] == []
    assert client.get(f"/v1/offers/{offer['id']}", headers=headers_a).json["state"] == "active"


def test_offers_without_a_key_are_401(client):
    assert client.get("/v1/offers").status_code == 401
    assert client.get("/v1/offers/o.m_x.1").status_code == 401


def test_an_offers_timezone_cannot_change_after_creation(client, merchant, places):
    # Daily caps are counted per local day; moving the day boundary would reopen a full cap.
    _, headers = merchant
    offer = publish(client, headers, offer_body(places))
    response = client.patch(f"/v1/offers/{offer['id']}", json={"timezone": "Etc/GMT+12"},
                            headers=headers)
    assert response.status_code == 422
    assert "timezone" in response.json["errors"]


def _index_fails(monkeypatch, times: int, error=None) -> list:
    """The index write's first `times` attempts fail with `error` (a lost connection unless
    said), between a write's catalogue round trip and its index one."""
    from redis.exceptions import ConnectionError

    from offers import geo_index

    write, attempts = geo_index.GeoIndex._write, []

    def failing(self, *args):
        attempts.append(1)
        if len(attempts) <= times:
            raise error or ConnectionError("connection reset by peer")
        return write(self, *args)

    monkeypatch.setattr(geo_index.GeoIndex, "_write", failing)
    monkeypatch.setattr(geo_index, "APPLY_RETRY_WAITS_S", (0.0, 0.0, 0.0))
    return attempts


def _filed_offers(redis_client, place: dict) -> list[str]:
    from geo.cells import cell_of
    from offers.geo_index import GeoIndex, ids_of

    records = GeoIndex(redis_client).offers_in([cell_of(place["lat"], place["lng"])])
    return ids_of(records)[0]


def test_an_index_write_that_loses_its_connection_is_tried_again(client, merchant, places,
                                                                 redis_client, monkeypatch):
    """The offer's document is stored by then: answering 503 left it stored but never served
    (until edited again), and a client sending the POST again made a second offer."""
    _, headers = merchant
    attempts = _index_fails(monkeypatch, 3)
    offer = publish(client, headers, offer_body(places[1:]))
    assert len(attempts) == 4
    assert _filed_offers(redis_client, FUEL) == [offer["id"]]


def test_an_index_that_stays_unreachable_is_a_503(client, merchant, places, monkeypatch):
    _, headers = merchant
    _index_fails(monkeypatch, 4)
    response = client.post("/v1/offers", json=offer_body(places[1:]), headers=headers)
    assert (response.status_code, response.json["code"]) == (503, 503)


def test_an_index_write_that_times_out_is_not_tried_again(client, merchant, places, monkeypatch):
    """Each try would wait the socket's 5 s under the writer lock, and Redis may still be
    running the write."""
    from redis.exceptions import TimeoutError

    _, headers = merchant
    attempts = _index_fails(monkeypatch, 4, TimeoutError("Timeout reading from socket"))
    response = client.post("/v1/offers", json=offer_body(places[1:]), headers=headers)
    assert (response.status_code, len(attempts)) == (503, 1)


def test_a_create_sent_again_with_its_idempotency_key_makes_one_offer(client, merchant,
                                                                       new_account, places):
    _, headers = merchant
    once = {**headers, "Idempotency-Key": "7f1c2a7e-5b1e-4a57-9d43-0c1b2d3e4f50"}
    first = client.post("/v1/offers", json=offer_body(places), headers=once)
    again = client.post("/v1/offers", json=offer_body(places), headers=once)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    listed = client.get("/v1/offers", headers=headers).json["items"]
    assert [offer["id"] for offer in listed] == [first.json["id"]]
    # Without a key, or with another, a second offer; another merchant's keys are its own.
    assert client.post("/v1/offers", json=offer_body(places), headers=headers).json["id"] \
        != first.json["id"]
    _, other = new_account("merchants", "B")
    other_places = [item["id"] for item in client.post(
        "/v1/places/bulk", json={"items": [CAFE]}, headers=other).json["items"]]
    assert client.post("/v1/offers", json=offer_body(other_places),
                       headers={**other, "Idempotency-Key": once["Idempotency-Key"]}
                       ).status_code == 201


def test_an_idempotency_key_used_for_another_offer_is_refused(client, merchant, places,
                                                              redis_client):
    _, headers = merchant
    once = {**headers, "Idempotency-Key": "k-1"}
    first = publish(client, once, offer_body(places))
    before = redis_snapshot(redis_client)
    other = client.post("/v1/offers", json=offer_body(places, title="Another"), headers=once)
    assert other.status_code == 422 and "Idempotency-Key" in other.json["errors"]
    assert redis_snapshot(redis_client) == before
    client.delete(f"/v1/offers/{first['id']}", headers=headers)
    gone = client.post("/v1/offers", json=offer_body(places), headers=once)
    assert gone.status_code == 409 and gone.json["errors"]["offer_id"] == [first["id"]]


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "caf\u00e9"])
def test_an_idempotency_key_that_is_not_short_visible_ascii_is_422(client, merchant, places,
                                                                   key):
    _, headers = merchant
    response = client.post("/v1/offers", json=offer_body(places),
                           headers={**headers, "Idempotency-Key": key})
    assert response.status_code == 422 and "Idempotency-Key" in response.json["errors"]
