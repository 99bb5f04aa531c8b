"""Redemptions: budgets, daily caps and per-driver limits hold under concurrency; retries with
the same idempotency key count once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from offers import keys
from offers.catalogue import Catalogue
from offers.errors import Conflict
from offers.redemptions import REDEMPTION_LOG_RETENTION_S, Redemptions, driver_key

from .conftest import CAFE, redis_snapshot, years_from_now


@pytest.fixture
def offer_at(client, merchant):
    """Publish an offer at a new place with the given budget fields; returns (offer, place)."""
    _, headers = merchant
    place = client.post("/v1/places", json=CAFE, headers=headers).json

    def publish(**terms):
        body = {"place_ids": [place["id"]], "title": "Free coffee", "category": "cafe",
                "discount": {"kind": "percent", "value": 100},
                "valid_from": "2026-01-01T00:00:00Z", **terms}
        response = client.post("/v1/offers", json=body, headers=headers)
        assert response.status_code == 201, response.json
        return response.json, place

    return publish


def redeem(client, headers, offer, place, driver="driver-1", key=None):
    return client.post("/v1/redemptions", headers=headers, json={
        "offer_id": offer["id"], "place_id": place["id"], "driver_id": driver,
        "idempotency_key": key or uuid.uuid4().hex})


def test_redemption_is_counted(client, fleet, merchant, offer_at):
    _, headers = fleet
    offer, place = offer_at()
    response = redeem(client, headers, offer, place)
    assert response.status_code == 201, response.json
    assert response.json["replayed"] is False
    assert response.json["id"].startswith("r_")
    _, merchant_headers = merchant
    assert client.get(f"/v1/offers/{offer['id']}",
                      headers=merchant_headers).json["redemptions"] == 1


def test_retry_with_the_same_idempotency_key_counts_once(client, fleet, merchant, offer_at):
    _, headers = fleet
    offer, place = offer_at(budget={"max_redemptions": 5})
    first = redeem(client, headers, offer, place, key="k-1")
    again = redeem(client, headers, offer, place, key="k-1")
    assert again.status_code == 201
    assert again.json["id"] == first.json["id"]
    assert again.json["replayed"] is True
    _, merchant_headers = merchant
    assert client.get(f"/v1/offers/{offer['id']}",
                      headers=merchant_headers).json["redemptions"] == 1


def test_idempotency_key_reused_for_another_driver_is_refused(client, fleet, offer_at):
    _, headers = fleet
    offer, place = offer_at()
    redeem(client, headers, offer, place, driver="a", key="k-1")
    response = redeem(client, headers, offer, place, driver="b", key="k-1")
    assert response.status_code == 422
    assert "idempotency_key" in response.json["errors"]


def test_budget_used_up_is_409(client, fleet, offer_at):
    _, headers = fleet
    offer, place = offer_at(budget={"max_redemptions": 2})
    assert [redeem(client, headers, offer, place, driver=f"d{n}").status_code
            for n in range(3)] == [201, 201, 409]
    refused = redeem(client, headers, offer, place, driver="d9")
    assert refused.json["errors"] == {"offer_id": ["budget_exhausted"]}


def test_daily_cap_is_409_until_the_next_local_day(redis_client, client, fleet, offer_at):
    fleet_id, _ = fleet
    offer, place = offer_at(budget={"max_redemptions": 10, "daily_max": 1})
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    # Helsinki is UTC+2 in winter: 21:30Z and 23:30Z fall on different local days.
    day_one = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
    late = datetime(2026, 12, 1, 21, 50, tzinfo=UTC)
    day_two = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k1", now=day_one)
    with pytest.raises(Exception, match="daily cap"):
        redemptions.redeem(fleet_id, offer["id"], "b", place["id"], "k2", now=late)
    assert redemptions.redeem(fleet_id, offer["id"], "b", place["id"], "k3", now=day_two).id


def test_per_driver_limit_is_409_for_that_driver_only(client, fleet, offer_at):
    _, headers = fleet
    offer, place = offer_at(per_driver_limit=1)
    assert redeem(client, headers, offer, place, driver="a").status_code == 201
    second = redeem(client, headers, offer, place, driver="a")
    assert second.status_code == 409
    assert second.json["errors"] == {"offer_id": ["driver_limit_reached"]}
    assert redeem(client, headers, offer, place, driver="b").status_code == 201


def test_a_refusal_for_a_used_up_driver_limit_writes_nothing(redis_client, fleet, offer_at):
    """The first redemption at the limit notes the offer used up for the driver; refusals
    after it leave Redis as it is, unless the note has gone (then they write it again)."""
    fleet_id, _ = fleet
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    offer, place = offer_at(per_driver_limit=1)
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)
    redemptions.redeem(fleet_id, offer["id"], "d", place["id"], "k1", now=start)
    before = redis_snapshot(redis_client)
    with pytest.raises(Conflict, match="per-driver limit"):
        redemptions.redeem(fleet_id, offer["id"], "d", place["id"], "k2",
                           now=start.replace(minute=5))
    assert redis_snapshot(redis_client) == before
    noted = keys.driver_used_up(driver_key(fleet_id, "d"))
    redis_client.delete(noted)
    with pytest.raises(Conflict, match="per-driver limit"):
        redemptions.redeem(fleet_id, offer["id"], "d", place["id"], "k3",
                           now=start.replace(minute=10))
    assert list(redis_client.hgetall(noted)) == [offer["id"].encode()]


@pytest.mark.parametrize("terms, reason", [
    ({"status": "paused"}, "paused"),
    ({"valid_from": years_from_now(2)}, "not_yet_valid"),
    ({"valid_from": "2020-01-01T00:00:00Z", "valid_until": "2021-01-01T00:00:00Z"}, "expired"),
])
def test_offer_not_live_is_409(client, fleet, offer_at, redis_client, terms, reason):
    _, headers = fleet
    offer, place = offer_at(**terms)
    before = redis_snapshot(redis_client)
    response = redeem(client, headers, offer, place)
    assert response.status_code == 409
    assert response.json["errors"] == {"offer_id": [reason]}
    assert redis_snapshot(redis_client) == before


def test_unknown_offer_is_404_and_wrong_place_is_422(client, fleet, offer_at):
    _, headers = fleet
    offer, place = offer_at()
    assert redeem(client, headers, {"id": "o.m_nobody.1"}, place).status_code == 404
    assert redeem(client, headers, {"id": "garbage"}, place).status_code == 404
    wrong = redeem(client, headers, offer, {"id": "p.m_x.1"})
    assert wrong.status_code == 422
    assert "place_id" in wrong.json["errors"]


def test_only_fleet_keys_redeem(client, merchant, offer_at):
    _, merchant_headers = merchant
    offer, place = offer_at()
    assert redeem(client, {}, offer, place).status_code == 401
    assert redeem(client, merchant_headers, offer, place).status_code == 403


def test_fifty_concurrent_redemptions_never_overspend_a_budget_of_ten(app, fleet, merchant,
                                                                      offer_at, redis_client):
    _, headers = fleet
    offer, place = offer_at(budget={"max_redemptions": 10})

    def attempt(n: int) -> int:
        # One test client per thread: each request runs the real app against the real server.
        return redeem(app.test_client(), headers, offer, place, driver=f"d{n}").status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(50)))
    assert statuses.count(201) == 10
    assert statuses.count(409) == 40
    _, merchant_headers = merchant
    assert app.test_client().get(f"/v1/offers/{offer['id']}",
                                 headers=merchant_headers).json["redemptions"] == 10


def test_concurrent_retries_of_one_request_count_once(app, fleet, offer_at):
    _, headers = fleet
    offer, place = offer_at(budget={"max_redemptions": 100})
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(
            lambda _: redeem(app.test_client(), headers, offer, place, key="same").json,
            range(20)))
    assert len({answer["id"] for answer in answers}) == 1
    assert sum(not answer["replayed"] for answer in answers) == 1


def test_retry_after_the_offer_changed_still_gets_the_first_answer(client, fleet, merchant,
                                                                    offer_at):
    _, headers = fleet
    _, merchant_headers = merchant
    offer, place = offer_at()
    first = redeem(client, headers, offer, place, key="k-1")
    client.delete(f"/v1/offers/{offer['id']}", headers=merchant_headers)
    again = redeem(client, headers, offer, place, key="k-1")
    assert again.status_code == 201
    assert (again.json["id"], again.json["replayed"]) == (first.json["id"], True)


@pytest.mark.parametrize("offer_id", [
    "o.m_a}:idem:f_x:K.x0123456789abcdef", "o.m_a.{x}", "o..", "o.m_a.x0123456789abcdef:x",
])
def test_crafted_offer_ids_are_404(client, fleet, offer_at, offer_id):
    _, headers = fleet
    _, place = offer_at()
    assert redeem(client, headers, {"id": offer_id}, place).status_code == 404


def test_outside_the_offers_weekly_schedule_is_409_in_the_places_local_time(
        redis_client, fleet, offer_at):
    fleet_id, _ = fleet
    offer, place = offer_at(schedule="Mo-Fr 08:00-10:00")  # a breakfast offer, Helsinki time
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    # Monday 7 December 2026: Helsinki is UTC+2, so 05:30Z is 07:30 there and 06:30Z is 08:30.
    early = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)
    before = redis_snapshot(redis_client)
    with pytest.raises(Conflict, match="not served at this time") as refused:
        redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k1", now=early)
    assert refused.value.errors == {"offer_id": ["outside_schedule"]}
    assert redis_snapshot(redis_client) == before
    on_time = datetime(2026, 12, 7, 6, 30, tzinfo=UTC)
    counted = redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k2", now=on_time)
    # A retry after closing time answers as the first request did.
    late = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    again = redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k2", now=late)
    assert (again.id, again.replayed) == (counted.id, True)


def test_a_schedule_off_on_public_holidays_is_off_on_the_places_countrys(redis_client, fleet,
                                                                         offer_at):
    fleet_id, _ = fleet
    offer, place = offer_at(schedule="Mo-Su 08:00-20:00; PH off")  # in Helsinki
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    with pytest.raises(Conflict, match="not served at this time"):  # Christmas Day, noon
        redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k1",
                           now=datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    assert redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k2",
                              now=datetime(2026, 12, 23, 10, 0, tzinfo=UTC)).id


def test_a_paused_offer_says_paused_even_outside_its_schedule(redis_client, fleet, offer_at):
    fleet_id, _ = fleet
    offer, place = offer_at(schedule="Mo-Fr 08:00-10:00", status="paused")
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    with pytest.raises(Conflict) as refused:
        redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k1",
                           now=datetime(2026, 12, 7, 5, 30, tzinfo=UTC))
    assert refused.value.errors == {"offer_id": ["paused"]}


def test_a_schedule_changed_between_the_check_and_the_count_refuses(redis_client, fleet,
                                                                    offer_at):
    from offers import keys

    fleet_id, _ = fleet
    offer, place = offer_at(schedule="Mo-Fr 08:00-10:00")
    # As if a PATCH to other hours landed after this request read the offer.
    redis_client.hset(keys.offer_terms(keys.owner_of(offer["id"]), offer["id"]), "schedule",
                      "0123456789abcdef")
    before = redis_snapshot(redis_client)
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    with pytest.raises(Conflict, match="schedule changed") as refused:
        redemptions.redeem(fleet_id, offer["id"], "a", place["id"], "k1",
                           now=datetime(2026, 12, 7, 6, 30, tzinfo=UTC))
    assert refused.value.errors == {"offer_id": ["schedule_changed"]}
    assert redis_snapshot(redis_client) == before


def test_a_place_taken_off_the_offer_while_redeeming_refuses(client, merchant, fleet,
                                                             offer_at, redis_client):
    """The place is checked against the offer as read; the count checks that the offer's
    places are still those (an edit and the place's deletion landing in between)."""
    _, headers = merchant
    offer, place = offer_at()
    other = client.post("/v1/places", json={**CAFE, "name": "Other"}, headers=headers).json
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    read, before = redemptions.catalogue.get_offer, {}

    def read_then_edited(*args):
        doc = read(*args)
        assert client.patch(f"/v1/offers/{offer['id']}", json={"place_ids": [other["id"]]},
                            headers=headers).status_code == 200
        assert client.delete(f"/v1/places/{place['id']}", headers=headers).status_code == 204
        before["snapshot"] = redis_snapshot(redis_client)
        return doc

    redemptions.catalogue.get_offer = read_then_edited
    with pytest.raises(Conflict, match="places changed") as refused:
        redemptions.redeem(fleet[0], offer["id"], "a", place["id"], "k1")
    assert refused.value.errors == {"offer_id": ["places_changed"]}
    assert redis_snapshot(redis_client) == before["snapshot"]


def test_the_redemption_log_forgets_entries_past_its_retention(client, fleet, merchant,
                                                               offer_at, redis_client):
    """Where and when a driver redeemed is a location history: trimmed after
    REDEMPTION_LOG_RETENTION_S, entry by entry (not whole stream nodes only)."""
    merchant_id, _ = merchant
    log = keys.redemptions(merchant_id)
    old = int((datetime.now(UTC).timestamp() - REDEMPTION_LOG_RETENTION_S - 86_400) * 1000)
    for i in range(3):
        redis_client.xadd(log, {"redemption_id": f"r_old{i}"}, id=f"{old}-{i + 1}")
    offer, place = offer_at()
    assert redeem(client, fleet[1], offer, place).status_code == 201
    assert [fields[b"offer_id"].decode() for _, fields in redis_client.xrange(log)] == [
        offer["id"]]


def test_drivers_pseudonyms_are_keyed_with_the_deployments_secret(redis_url, redis_client,
                                                                  fleet):
    """Unkeyed, a short driver id could be found again from its pseudonym by trying them all
    (SHA-256 of fleet and id); keyed, not without the secret, which the first fleet made."""
    import hashlib

    from api.app import create_app
    from offers import redemptions

    secret = redis_client.get(keys.DRIVER_KEY_SECRET)
    assert secret and len(secret) == 64
    fleet_id = fleet[0]
    stored = redemptions.driver_key(fleet_id, "drv-8f3a")
    unkeyed = hashlib.sha256(f"{fleet_id}\x00drv-8f3a".encode()).hexdigest()[:20]
    assert stored != unkeyed and stored == redemptions.driver_key(fleet_id, "drv-8f3a")
    create_app({"REDIS_URL": redis_url, "OFFERS_DRIVER_KEY_SECRET": "another deployment"})
    elsewhere = redemptions.driver_key(fleet_id, "drv-8f3a")
    assert elsewhere not in (stored, unkeyed)
    create_app({"REDIS_URL": redis_url})
    assert redemptions.driver_key(fleet_id, "drv-8f3a") == stored


def test_the_idempotency_record_holds_no_raw_driver_id(client, fleet, offer_at, redis_client):
    """Its fingerprint is kept beside the redemption id, whose offer and place the merchant's
    log gives: made from the driver's id, it would let a short id be found by trying them."""
    import hashlib

    offer, place = offer_at()
    assert redeem(client, fleet[1], offer, place, driver="drv-8f3a", key="k").status_code == 201
    [stored] = [redis_client.get(k) for k in redis_client.scan_iter("*:idem:*")]
    raw = hashlib.sha256(f"{offer['id']}|drv-8f3a|{place['id']}".encode()).hexdigest()
    assert raw.encode() not in stored


def test_a_driver_erased_during_a_redemption_has_no_used_up_offers_noted_after(
        app, client, fleet, offer_at, redis_client, monkeypatch):
    offer, place = offer_at(per_driver_limit=1)
    redemptions = app.extensions["offers"].redemptions
    script = redemptions._redeem

    def counted_then_erased(*args, **kwargs):
        counted = script(*args, **kwargs)
        assert client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
        return counted

    monkeypatch.setattr(redemptions, "_redeem", counted_then_erased)
    assert redeem(client, fleet[1], offer, place).status_code == 201
    with app.app_context():
        used_up = keys.driver_used_up(driver_key(fleet[0], "driver-1"))
    assert redis_client.exists(used_up) == 0


def test_each_used_up_offer_is_kept_its_own_time(redis_client, fleet, offer_at):
    fleet_id, _ = fleet
    redemptions = Redemptions(redis_client, Catalogue(redis_client))
    first, place = offer_at(per_driver_limit=1)
    second, _ = offer_at(per_driver_limit=1)
    redemptions.redeem(fleet_id, first["id"], "d", place["id"], "k1",
                       now=datetime(2026, 1, 5, 10, tzinfo=UTC))
    redemptions.redeem(fleet_id, second["id"], "d", place["id"], "k2",
                       now=datetime(2026, 6, 5, 10, tzinfo=UTC))  # 151 days later
    noted = redis_client.hgetall(keys.driver_used_up(driver_key(fleet_id, "d")))
    assert list(noted) == [second["id"].encode()]  # the first one's 90 days are over
