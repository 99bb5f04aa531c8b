"""POST /v1/recommendations: the serving rules, end to end through the API on real Redis."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from api.recommendations import _batches, _fill, _NextPlaces
from api.schemas import RecommendationSchema, RecommendedSchema
from geo.cells import cell_of
from geo.route import WGS84
from offers import keys
from offers.catalogue import Catalogue
from offers.geo_index import OFFER_RECORD, PLACE_KEY, GeoIndex, mask_digest, offer_entries
from offers.hours import serving_slots
from offers.redemptions import Redemptions
from offers.serving import Refused, Shortlisted, best_of_each

from .conftest import CAFE

# Driving east along a parallel in Denver at 60 km/h: 1 km takes 60 s.
ROUTE = {"type": "LineString", "coordinates": [[-105.10, 39.745], [-104.80, 39.745]]}
AT = "2026-12-02T08:00:00-07:00"  # a Wednesday morning in Denver


def east_of_start(km: float) -> float:
    """The longitude `km` east of the route start along its parallel."""
    lng, _, _ = WGS84.fwd(-105.10, 39.745, 90, km * 1000)
    return lng


@pytest.fixture
def shop(client, merchant):
    """Publish a place `km` along the route (just off it) with one offer; returns ids."""
    _, headers = merchant

    def publish(km: float, place=None, **offer):
        body = {**CAFE, "lat": 39.746, "lng": east_of_start(km), "opening_hours": None,
                **(place or {})}
        place_id = client.post("/v1/places", json=body, headers=headers).json["id"]
        response = client.post("/v1/offers", headers=headers, json={
            "place_ids": [place_id], "title": f"Coffee at {km} km", "category": "cafe",
            "discount": {"kind": "percent", "value": 20}, "valid_from": "2026-01-01T00:00:00Z",
            **offer})
        assert response.status_code == 201, response.json
        return place_id, response.json["id"]

    return publish


def recommend(client, fleet, **changes):
    _, headers = fleet
    body = {"driver_id": "driver-1", "route": ROUTE, "at": AT,
            "position": {"lat": 39.745, "lng": -105.10, "speed_kmh": 60}, **changes}
    body = {k: v for k, v in body.items() if v is not None}  # route=None: no route
    response = client.post("/v1/recommendations", json=body, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def offer_ids(answer):
    return [item["offer_id"] for item in answer["items"]]


def test_answer_has_an_id_and_ranked_items_with_reasons(client, fleet, shop):
    _, near = shop(2)
    _, far = shop(10)
    answer = recommend(client, fleet)
    assert answer["recommendation_id"].startswith("rec_")
    assert offer_ids(answer) == [near, far]  # same value, the nearer detour-free one first
    item = answer["items"][0]
    assert item["distance_along_route_m"] == pytest.approx(2000, abs=5)
    assert item["eta_s"] == pytest.approx(120 + 1.3 * 111 / (30 / 3.6), abs=5)
    assert item["score"] > answer["items"][1]["score"]
    assert item["reasons"] and all(isinstance(r, str) for r in item["reasons"])
    # Written to JSON directly (api/responses.py): exactly what the documented schema writes.
    assert RecommendationSchema().dump(answer) == answer
    assert all(set(i) == set(RecommendedSchema().fields) for i in answer["items"])


def test_a_warm_recommendation_makes_four_round_trips(client, fleet, shop, monkeypatch):
    from redis.connection import AbstractConnection

    shop(2)
    shop(10)
    recommend(client, fleet)  # warm: the cells, masks and model this process reads once
    sent = []
    original = AbstractConnection.send_packed_command  # TCP and unix sockets alike
    monkeypatch.setattr(AbstractConnection, "send_packed_command",
                        lambda self, *args, **kwargs: (sent.append(1),
                                                       original(self, *args, **kwargs))[1])
    assert len(recommend(client, fleet)["items"]) == 2
    # the API key; the index with the driver and the model; the shortlist; the served log
    assert len(sent) == 4


def test_serving_loads_its_check_script_again_when_redis_lost_it(client, fleet, shop,
                                                                redis_client):
    _, offer = shop(2)
    redis_client.script_flush()  # as after a restart
    assert offer_ids(recommend(client, fleet)) == [offer]


def test_places_behind_the_car_are_not_served(client, fleet, shop):
    _, behind = shop(2)
    _, ahead = shop(10)
    answer = recommend(client, fleet, position={"lat": 39.745, "lng": east_of_start(5)})
    assert offer_ids(answer) == [ahead]


def test_offer_must_be_valid_at_arrival_not_just_now(client, fleet, shop):
    # Valid from 08:10: a place 2 km ahead is reached at ~08:02, one 20 km ahead at ~08:20.
    _, soon = shop(2, valid_from="2026-12-02T08:10:00-07:00")
    _, later = shop(20, valid_from="2026-12-02T08:10:00-07:00")
    assert offer_ids(recommend(client, fleet)) == [later]


def test_offer_ending_before_arrival_is_not_served(client, fleet, shop):
    shop(20, valid_until="2026-12-02T08:10:00-07:00")
    _, near = shop(2, valid_until="2026-12-02T08:10:00-07:00")
    assert offer_ids(recommend(client, fleet)) == [near]


def test_place_must_be_open_at_arrival_in_its_own_timezone(client, fleet, shop):
    # Opens at 08:10 Denver time: closed when the car passes 2 km ahead, open 20 km ahead.
    hours = {"opening_hours": "Mo-Fr 08:10-18:00", "timezone": "America/Denver"}
    shop(2, place=hours)
    _, open_then = shop(20, place=hours)
    assert offer_ids(recommend(client, fleet)) == [open_then]


def test_schedule_limits_when_an_offer_is_served(client, fleet, shop):
    _, breakfast = shop(2, schedule="Mo-Fr 06:00-10:00")
    shop(3, schedule="Mo-Fr 16:00-19:00")
    assert offer_ids(recommend(client, fleet)) == [breakfast]


def test_used_up_budget_cap_or_driver_limit_is_never_served(client, fleet, shop):
    _, headers = fleet
    place_a, budget = shop(2, budget={"max_redemptions": 1})
    place_b, per_driver = shop(3, per_driver_limit=1)
    _, untouched = shop(4)
    for offer_id, place_id in ((budget, place_a), (per_driver, place_b)):
        assert client.post("/v1/redemptions", headers=headers, json={
            "offer_id": offer_id, "place_id": place_id, "driver_id": "driver-1",
            "idempotency_key": uuid.uuid4().hex}).status_code == 201
    assert offer_ids(recommend(client, fleet)) == [untouched]
    # The per-driver limit is this driver's only.
    assert set(offer_ids(recommend(client, fleet, driver_id="driver-2"))) == {per_driver,
                                                                               untouched}


def test_when_the_best_are_used_up_later_rounds_fill_the_answer(client, fleet, shop):
    _, headers = fleet
    used_up = [shop(1 + km / 10, value_estimate=50, budget={"max_redemptions": 1})
               for km in range(6)]  # more than the first round checks for a limit of 2
    for place_id, offer_id in used_up:
        assert client.post("/v1/redemptions", headers=headers, json={
            "offer_id": offer_id, "place_id": place_id, "driver_id": "someone-else",
            "idempotency_key": uuid.uuid4().hex}).status_code == 201
    fallback = [shop(km, value_estimate=1)[1] for km in (5, 6)]
    assert offer_ids(recommend(client, fleet, limit=2)) == fallback


def test_one_item_per_place_unless_asked_otherwise(client, merchant, fleet, shop):
    _, headers = merchant
    place_id, first = shop(2, value_estimate=5)
    second = client.post("/v1/offers", headers=headers, json={
        "place_ids": [place_id], "title": "Muffin", "category": "cafe", "value_estimate": 1,
        "discount": {"kind": "amount", "value": 1, "currency": "USD"}}).json["id"]
    assert offer_ids(recommend(client, fleet)) == [first]
    assert offer_ids(recommend(client, fleet, one_per_place=False)) == [first, second]


def chain_offer(client, merchant, shop, first_place=None, other_km=8):
    """An offer at places 2, 4 and 6 km along (the first with `first_place`'s fields), and
    another offer at `other_km`: their ids and the three places'."""
    _, headers = merchant
    nearest, offer_id = shop(2, place=first_place)
    later = [client.post("/v1/places", headers=headers, json={
        **CAFE, "lat": 39.746, "lng": east_of_start(km), "opening_hours": None}).json["id"]
        for km in (4, 6)]
    client.patch(f"/v1/offers/{offer_id}", headers=headers,
                 json={"place_ids": [nearest, *later]})
    _, other = shop(other_km)
    return offer_id, other, [nearest, *later]


def test_an_offer_at_several_places_is_one_item_at_the_best_of_them(client, merchant, fleet,
                                                                     shop):
    """Feedback names the offer, not the place: the answer shows each offer once."""
    offer_id, other, places = chain_offer(client, merchant, shop)
    answer = recommend(client, fleet)
    assert offer_ids(answer) == [offer_id, other]
    assert answer["items"][0]["place_id"] == places[0]


@pytest.mark.parametrize("other_km, first", [(8, "chain"), (3, "other")])
def test_an_offer_whose_best_place_fails_the_final_check_is_shown_at_the_next(
        client, merchant, fleet, shop, other_km, first):
    """Closed by its exact hours at the nearest of its places (a rule the weekly mask cannot
    hold, so the final check decides), the offer is still shown, at the next place, ranked by
    its score there: after an offer at 3 km, before one at 8 km."""
    offer_id, other, places = chain_offer(client, merchant, shop, {
        "opening_hours": "Mo-Fr 06:00-10:00; Dec 02 off"}, other_km)
    answer = recommend(client, fleet)
    expected = [offer_id, other] if first == "chain" else [other, offer_id]
    assert offer_ids(answer) == expected
    chain = answer["items"][expected.index(offer_id)]
    assert chain["place_id"] == places[1]
    assert chain["distance_along_route_m"] == pytest.approx(4000, abs=5)
    assert [item["score"] for item in answer["items"]] == sorted(
        (item["score"] for item in answer["items"]), reverse=True)
    next_day = recommend(client, fleet, at="2026-12-03T08:00:00-07:00")
    assert offer_ids(next_day)[0] == offer_id
    assert next_day["items"][0]["place_id"] == places[0]  # open there that day


def test_a_place_whose_best_offer_fails_the_final_check_shows_its_next(client, merchant,
                                                                       fleet, shop):
    """One item per place: the offer that won the place is closed on the day by its exact
    hours (a holiday rule the weekly mask cannot hold), and the place's other offer is shown
    instead of nothing; an offer already shown at another place is not shown twice."""
    _, headers = merchant
    place_id, closed = shop(3.0, value_estimate=50, schedule="Mo-Su 06:00-20:00; PH off")
    body = {"place_ids": [place_id], "title": "Tea", "category": "cafe", "value_estimate": 1,
            "discount": {"kind": "percent", "value": 10}, "valid_from": "2026-01-01T00:00:00Z"}
    tea = client.post("/v1/offers", headers=headers, json=body).json["id"]
    christmas = "2026-12-25T08:00:00-07:00"
    assert offer_ids(recommend(client, fleet)) == [closed]  # a Wednesday: open
    assert offer_ids(recommend(client, fleet, at=christmas)) == [tea]
    # Tea at a second place too, whose best offer is closed alike: tea is the next offer at
    # both, and shown once.
    other_place, _ = shop(6.0, value_estimate=50, schedule="Mo-Su 06:00-20:00; PH off")
    client.patch(f"/v1/offers/{tea}", headers=headers,
                 json={"place_ids": [place_id, other_place]})
    assert offer_ids(recommend(client, fleet, at=christmas)) == [tea]


class StandInServing:
    """The final check's answers by row, counting its round trips."""

    def __init__(self, refused: dict[int, Refused]):
        self.refused, self.round_trips = refused, []

    def servable(self, records, eta_s, trip, fleet_id, driver_id):
        rows = records["valid_from"].astype(int).tolist()  # each record's row, put there below
        self.round_trips.append(rows)
        return [self.refused.get(row, Shortlisted({}, {})) for row in rows]


# Rows: offer X at places A (0.9), B (0.2) and C (0.75); offers Y (0.8) and Z (0.7).
CHAIN_ROWS = {"offer": [1, 2, 3, 1, 1], "score": [0.9, 0.8, 0.7, 0.2, 0.75]}


@pytest.mark.parametrize("refused, limit, rows, round_trips", [
    ({}, 3, [0, 1, 2], 1),
    # refused at A: X is shown at C, its next place, after Y (0.8), before Z (0.7)
    ({0: Refused.PLACE}, 3, [1, 4, 2], 2),
    ({0: Refused.PLACE}, 2, [1, 4], 2),
    # at A and C: at B, last (0.2); with a limit of 2 the answer is known once C is refused
    ({0: Refused.PLACE, 4: Refused.PLACE}, 3, [1, 2, 3], 3),
    ({0: Refused.PLACE, 4: Refused.PLACE}, 2, [1, 2], 2),
    # refused for the offer (a budget used up): its other places are not tried
    ({0: Refused.OFFER}, 3, [1, 2], 1),
])
def test_the_shortlist_tries_an_offer_refused_at_its_place_at_the_next(refused, limit, rows,
                                                                        round_trips):
    records = np.zeros(5, OFFER_RECORD)
    records["offer"], records["valid_from"] = CHAIN_ROWS["offer"], np.arange(5)
    scores = np.array(CHAIN_ROWS["score"])
    order = np.array([0, 1, 2])  # one row per offer (its best place), best first
    serving = StandInServing(refused)
    found = type("Found", (), {"serving": serving})
    situation = type("Situation", (), {"fleet_id": "f", "driver_id": "d"})
    candidates = type("Candidates", (), {"eta_s": np.zeros(5)})
    served, chances, checks = _fill(found, order, np.array([0.5, 0.3, 0.2]), scores, records,
                                    candidates, None, situation, limit, _batches(limit),
                                    _NextPlaces(records, np.arange(5), scores))
    assert served.tolist() == rows
    assert len(serving.round_trips) == round_trips
    # an item's propensity is its offer's: the policy chose the offer, the check its place
    assert chances == [{0: 0.5, 1: 0.3, 2: 0.2, 3: 0.5, 4: 0.5}[row] for row in rows]
    assert len(checks) == len(rows)


def test_max_detour_categories_and_limit(client, fleet, shop):
    shop(2, place={"lat": 39.76})  # 1.7 km off the route
    _, on_route = shop(3)
    assert offer_ids(recommend(client, fleet, max_detour_s=120)) == [on_route]
    assert offer_ids(recommend(client, fleet, categories=["fuel"])) == []
    assert len(recommend(client, fleet, limit=1)["items"]) == 1


def test_without_a_route_the_radius_and_heading_decide(client, fleet, shop):
    _, west = shop(2)
    _, east = shop(4)
    position = {"lat": 39.745, "lng": east_of_start(3), "heading_deg": 90}
    answer = recommend(client, fleet, route=None, position=position, radius_m=2000)
    assert offer_ids(answer) == [east]
    assert answer["items"][0]["distance_along_route_m"] is None


def test_paused_deleted_and_moved_offers_stop_being_served(client, merchant, fleet, shop):
    _, headers = merchant
    _, paused = shop(2)
    _, deleted = shop(3)
    moved_place, moved = shop(4)
    client.patch(f"/v1/offers/{paused}", json={"status": "paused"}, headers=headers)
    client.delete(f"/v1/offers/{deleted}", headers=headers)
    client.patch(f"/v1/places/{moved_place}", json={"lat": 40.5}, headers=headers)
    assert offer_ids(recommend(client, fleet)) == []
    client.patch(f"/v1/offers/{paused}", json={"status": "active"}, headers=headers)
    client.patch(f"/v1/places/{moved_place}", json={"lat": 39.746}, headers=headers)
    assert offer_ids(recommend(client, fleet)) == [paused, moved]


@pytest.mark.parametrize("stale", [
    {"schedule": "Mo-Fr 16:00-19:00"},                 # closed at arrival
    {"schedule": "Mo-Fr 06:00-10:00; Dec 02 off"},     # the same mask, but inexact: closed
])
def test_an_index_record_behind_the_catalogue_is_not_served(client, fleet, shop, redis_client,
                                                            stale):
    """Edits racing each other can leave an index record filed with older hours; the final
    check compares it with the documents and serves by those."""
    _, breakfast = shop(2, schedule="Mo-Fr 06:00-10:00")
    assert offer_ids(recommend(client, fleet)) == [breakfast]
    key = keys.offers(keys.owner_of(breakfast))
    doc = orjson.loads(redis_client.hget(key, breakfast))
    redis_client.hset(key, breakfast, orjson.dumps({**doc, **stale}))  # the index not told
    assert offer_ids(recommend(client, fleet)) == []


def test_an_offer_whose_index_write_is_under_way_is_served_by_its_documents(
        client, fleet, shop, redis_client):
    """An edit's documents are written before its index records: meanwhile the record's hours
    are not the documents', and the final check serves by the documents, exactly (before, it
    left the offer out)."""
    _, breakfast = shop(2, schedule="Mo-Fr 06:00-10:00")
    key = keys.offers(keys.owner_of(breakfast))
    doc = orjson.loads(redis_client.hget(key, breakfast))
    # Other hours, open at the arrival too; the index not told yet.
    redis_client.hset(key, breakfast, orjson.dumps({**doc, "schedule": "Mo-Fr 07:00-11:00"}))
    assert offer_ids(recommend(client, fleet)) == [breakfast]


def test_random_edits_never_leave_the_index_out_of_step(client, merchant, fleet, shop):
    """After every random create, pause, resume, delete or move, the radius answer is exactly
    the active offers at places within the radius (a brute-force model of the catalogue)."""
    _, headers = merchant
    rng = random.Random(3)
    model: dict[str, dict] = {}  # offer id -> {"place": id, "km": float, "active": bool}
    for _ in range(40):
        action = rng.choice(["create", "create", "pause", "resume", "delete", "move"])
        if action == "create" or not model:
            km = rng.uniform(0, 8)
            place_id, offer_id = shop(km)
            model[offer_id] = {"place": place_id, "km": km, "active": True}
            continue
        offer_id = rng.choice(sorted(model))
        entry = model[offer_id]
        if action in ("pause", "resume"):
            status = "paused" if action == "pause" else "active"
            client.patch(f"/v1/offers/{offer_id}", json={"status": status}, headers=headers)
            entry["active"] = status == "active"
        elif action == "delete":
            client.delete(f"/v1/offers/{offer_id}", headers=headers)
            del model[offer_id]
        else:
            entry["km"] = rng.uniform(0, 8)
            client.patch(f"/v1/places/{entry['place']}", json={"lng": east_of_start(entry["km"])},
                         headers=headers)
        expected = {oid for oid, e in model.items() if e["active"] and WGS84.inv(
            -105.10, 39.746, east_of_start(e["km"]), 39.746)[2] <= 5000}
        answer = recommend(client, fleet, route=None, limit=50, radius_m=5000,
                           position={"lat": 39.746, "lng": -105.10})
        assert set(offer_ids(answer)) == expected


def test_racing_edits_leave_the_index_as_the_documents_say(app, merchant, shop, redis_client):
    """A place's edits re-file the offers naming it; racing an edit of the offer itself, one
    could file the offer from what it read before, for good. Writes of a merchant take turns,
    so after each round the index record holds the documents' hours."""
    _, headers = merchant
    place_id, offer_id = shop(2)
    merchant_id = keys.owner_of(offer_id)
    index = GeoIndex(redis_client)

    def patch(path, body):
        return app.test_client().patch(path, json=body, headers=headers).status_code

    for round_ in range(50):
        patch(f"/v1/offers/{offer_id}", {"schedule": None})
        edits = [(f"/v1/places/{place_id}", {"opening_hours": ["Mo-Su 06:00-22:00",
                                                               "Mo-Fr 07:00-20:00"][i % 2]})
                 for i in range(6)]
        edits.insert(3, (f"/v1/offers/{offer_id}", {"schedule": f"Mo 08:00-09:{round_:02d}"}))
        with ThreadPoolExecutor(len(edits)) as pool:
            assert set(pool.map(lambda edit: patch(*edit), edits)) == {200}
        offer = orjson.loads(redis_client.hget(keys.offers(merchant_id), offer_id))
        place = orjson.loads(redis_client.hget(keys.places(merchant_id), place_id))
        filed = index.offers_in([cell_of(place["lat"], place["lng"])])["serving"].tolist()
        slots, _ = serving_slots(place["opening_hours"], offer["schedule"])
        assert filed == [mask_digest(slots)], f"round {round_}"


INVALID = {
    "no position": ({"position": None}, "position"),
    "lat out of range": ({"position": {"lat": 95, "lng": 0}}, "position"),
    "route of one point": ({"route": {"type": "LineString", "coordinates": [[0, 0]]}}, "route"),
    "position far from route": ({"position": {"lat": 45.0, "lng": -100.0}}, "position"),
    "limit over 50": ({"limit": 51}, "limit"),
    "radius over 50 km": ({"radius_m": 50_001}, "radius_m"),
    "unknown weather": ({"context": {"weather": "plasma"}}, "context"),
    "demographics": ({"context": {"age": 34}}, "context"),
    "time without offset": ({"at": "2026-12-02T08:00:00"}, "at"),
    # arrivals after it would be past the last date Python holds (this was a 500)
    "time in the year 9999": ({"at": "9999-12-31T23:59:00Z"}, "at"),
    "offset with seconds": ({"at": "2026-12-02T08:00:00-06:59:56"}, "at"),
    # DELETE /v1/drivers/{id} could never name it to erase what was learned
    "driver id with a slash": ({"driver_id": "emp/1042"}, "driver_id"),
    # a JSON number, as a route's coordinates must be
    "lat as a string": ({"position": {"lat": "39.745", "lng": -105.1}}, "position"),
    "limit as a string": ({"limit": "10"}, "limit"),
    "limit not whole": ({"limit": 10.5}, "limit"),
}


def test_an_offer_without_end_is_served_at_the_latest_time_accepted(client, fleet, shop):
    _, offer_id = shop(3.0)  # no valid_until: valid for ever
    answer = recommend(client, fleet, at="9998-12-31T23:59:59Z")
    assert offer_ids(answer) == [offer_id]


@pytest.mark.parametrize("change, field", INVALID.values(), ids=INVALID.keys())
def test_requests_that_cannot_be_served_are_422(client, fleet, change, field):
    _, headers = fleet
    body = {"driver_id": "d", "route": ROUTE, "position": {"lat": 39.745, "lng": -105.1},
            **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post("/v1/recommendations", json=body, headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]


def test_a_car_at_the_end_of_its_route_gets_an_empty_answer(client, fleet, shop):
    _, offer_id = shop(25.0)  # the route is 25.7 km long
    answer = recommend(client, fleet, position={"lat": 39.745, "lng": -104.80})
    assert answer["items"] == [] and answer["recommendation_id"]
    assert answer["model"] == recommend(client, fleet)["model"]
    # A kilometre before the place, it is ahead.
    assert offer_ids(recommend(client, fleet, position={
        "lat": 39.745, "lng": east_of_start(24.0)})) == [offer_id]


def test_only_fleet_keys_get_recommendations(client, merchant):
    _, headers = merchant
    body = {"driver_id": "d", "position": {"lat": 39.7, "lng": -105.0}}
    assert client.post("/v1/recommendations", json=body).status_code == 401
    assert client.post("/v1/recommendations", json=body, headers=headers).status_code == 403


def test_each_places_best_offer_is_found_as_by_sorting_ids():
    rng = np.random.default_rng(4)
    ids = np.zeros(300, PLACE_KEY)  # merchants, external flags and digits that repeat apart
    ids["merchant"] = [f"m_{i % 7}" for i in range(300)]
    ids["external"] = rng.integers(0, 2, 300)
    ids["digits"] = rng.integers(0, 40, 300) << 56  # zero low bytes, distinct high ones
    ids = ids.view(f"S{PLACE_KEY.itemsize}")
    drawn = ids[rng.integers(0, len(ids), 2000)]  # many offers per place
    scores = rng.integers(0, 5, len(drawn)).astype(float)  # many ties
    best_first = np.argsort(-scores, kind="stable")
    _, first = np.unique(drawn[best_first], return_index=True)
    expected = np.sort(best_first[first])  # the best, the earliest of equals
    assert len(expected) > 200
    assert best_of_each(drawn, scores).tolist() == expected.tolist()
    assert best_of_each(np.zeros(0, "S35"), np.zeros(0)).size == 0
    one_place = ids[[0, 0, 0]]
    assert best_of_each(one_place, np.array([np.nan, 1.0, 5.0])).tolist() == [2]


def test_a_place_whose_hours_have_a_fallback_is_served_all_week(client, fleet, shop):
    _, offer = shop(2, place={"opening_hours": 'Mo-Fr 07:00-18:00 || "by appointment"'})
    assert offer_ids(recommend(client, fleet)) == [offer]  # Wednesday, not only Monday


def test_a_place_closed_on_its_countrys_holidays_is_not_served_on_them(client, fleet, shop):
    _, offer = shop(2, place={"opening_hours": "Mo-Su 06:00-20:00; PH off"})
    assert offer_ids(recommend(client, fleet)) == [offer]
    assert offer_ids(recommend(client, fleet, at="2026-12-25T08:00:00-07:00")) == []


def _redeem(client, fleet, place_id, offer_id, driver="someone-else"):
    _, headers = fleet
    response = client.post("/v1/redemptions", headers=headers, json={
        "offer_id": offer_id, "place_id": place_id, "driver_id": driver,
        "idempotency_key": uuid.uuid4().hex})
    assert response.status_code == 201, response.json


def test_used_up_offers_leave_serving_and_never_crowd_out_servable_ones(client, fleet, shop):
    # More used-up offers, ranked above, than the shortlist's rounds check (16 for a limit
    # of 2): they leave the index when used up, so the servable ones still fill the answer.
    for km in range(20):
        _redeem(client, fleet, *shop(1 + km / 20, value_estimate=50,
                                     budget={"max_redemptions": 1}))
    fallback = [shop(km, value_estimate=1)[1] for km in (5, 6)]
    assert offer_ids(recommend(client, fleet, limit=2)) == fallback


def test_a_capped_offer_hides_its_places_other_offers_only_until_used_up(
        client, merchant, fleet, shop, redis_client):
    _, headers = merchant
    place, capped = shop(2, value_estimate=50, budget={"daily_max": 1})
    other = client.post("/v1/offers", headers=headers, json={
        "place_ids": [place], "title": "Small", "category": "cafe", "value_estimate": 1,
        "discount": {"kind": "percent", "value": 5}, "valid_from": "2026-01-01T00:00:00Z"})
    assert offer_ids(recommend(client, fleet)) == [capped]  # one item per place: the best
    fleet_id, _ = fleet
    Redemptions(redis_client, Catalogue(redis_client)).redeem(
        fleet_id, capped, "someone-else", place, "k1", now=datetime(2026, 12, 2, 14, tzinfo=UTC))
    assert offer_ids(recommend(client, fleet)) == [other.json["id"]]  # the same day
    stored = client.get(f"/v1/offers/{capped}", headers=headers).json
    assert stored["used_up_until"] == "2026-12-03T00:00:00-07:00"  # Denver's next midnight
    assert offer_ids(recommend(client, fleet, at="2026-12-03T08:00:00-07:00")) == [capped]


def test_raising_a_used_up_budget_serves_the_offer_again(client, merchant, fleet, shop,
                                                         redis_client):
    merchant_id, headers = merchant
    place, offer = shop(2, budget={"max_redemptions": 1})  # no valid_until
    _redeem(client, fleet, place, offer)
    assert offer_ids(recommend(client, fleet)) == []
    catalogue = Catalogue(redis_client)  # used up for good: no record left in the index
    entries = offer_entries(catalogue.get_offer(merchant_id, offer),
                            {place: catalogue.get_place(merchant_id, place)})
    assert [entry.record for entry in entries] == [None]
    assert client.get(f"/v1/offers/{offer}", headers=headers).json["used_up_until"] == \
        "9999-12-31T23:59:59+00:00"
    patched = client.patch(f"/v1/offers/{offer}", headers=headers,
                           json={"budget": {"max_redemptions": 2}})
    assert patched.status_code == 200 and "used_up_until" not in patched.json
    assert offer_ids(recommend(client, fleet)) == [offer]


def test_an_offer_a_driver_used_up_leaves_their_answers_not_its_places_other_offers(
        client, merchant, fleet, shop):
    _, headers = merchant
    place, first_visit = shop(2, value_estimate=50, per_driver_limit=1)
    other = client.post("/v1/offers", headers=headers, json={
        "place_ids": [place], "title": "Small", "category": "cafe", "value_estimate": 1,
        "discount": {"kind": "percent", "value": 5}, "valid_from": "2026-01-01T00:00:00Z"})
    _redeem(client, fleet, place, first_visit, driver="driver-1")
    assert offer_ids(recommend(client, fleet)) == [other.json["id"]]
    assert offer_ids(recommend(client, fleet, driver_id="driver-2")) == [first_visit]
    # A limit raised since serves it again; a limit lowered keeps it out.
    for limit, shown in ((2, first_visit), (1, other.json["id"])):
        assert client.patch(f"/v1/offers/{first_visit}", headers=headers,
                            json={"per_driver_limit": limit}).status_code == 200
        assert offer_ids(recommend(client, fleet)) == [shown]


def test_many_offers_a_driver_used_up_never_crowd_out_the_rest(client, fleet, shop):
    for km in range(20):
        _redeem(client, fleet, *shop(1 + km / 20, value_estimate=50, per_driver_limit=1),
                driver="driver-1")
    fallback = [shop(km, value_estimate=1)[1] for km in (5, 6)]
    assert offer_ids(recommend(client, fleet, limit=2)) == fallback


def test_a_redemption_counted_while_a_patch_lowers_the_budget_still_takes_it_out(
        client, merchant, fleet, shop, redis_client, monkeypatch):
    """The PATCH reads the counters, then a redemption counts under the old terms (so it cannot
    tell it used the offer up), then the PATCH writes: it must notice and read them again."""
    _, headers = merchant
    place, capped = shop(2, value_estimate=50, budget={"max_redemptions": 10})
    other = client.post("/v1/offers", headers=headers, json={
        "place_ids": [place], "title": "Small", "category": "cafe", "value_estimate": 1,
        "discount": {"kind": "percent", "value": 5}, "valid_from": "2026-01-01T00:00:00Z"})
    for n in range(4):
        _redeem(client, fleet, place, capped, driver=f"driver-{n}")
    read_counters = Catalogue._with_used_up
    racing = Redemptions(redis_client, Catalogue(redis_client))

    def then_a_redemption(pipe, merchant_id, doc, now):
        found = read_counters(pipe, merchant_id, doc, now)
        if not racing.redis.exists("raced"):
            racing.redis.set("raced", 1)
            racing.redeem(fleet[0], capped, "driver-9", place, "k-race")
        return found

    monkeypatch.setattr(Catalogue, "_with_used_up", staticmethod(then_a_redemption))
    patched = client.patch(f"/v1/offers/{capped}", headers=headers,
                           json={"budget": {"max_redemptions": 5}})
    assert patched.json["redemptions"] == 5 and "used_up_until" in patched.json
    assert offer_ids(recommend(client, fleet)) == [other.json["id"]]


@pytest.mark.parametrize("schedule", ["Mo-Fr 06:00-20:00; PH Sa,Su off",
                                      "Mo-Fr 08:00-18:00; SH Mo-Fr 07:00-12:00"])
def test_an_offer_whose_holiday_rule_the_mask_cannot_fold_is_still_filed_and_served(
        client, fleet, shop, schedule):
    _, offer = shop(2, schedule=schedule)  # 201, not a 500 after the offer was stored
    assert offer_ids(recommend(client, fleet)) == [offer]
