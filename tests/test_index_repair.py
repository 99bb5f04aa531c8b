"""A write that dies between its catalogue documents and its geo index records is made good:
by the merchant's next write, or by the repair each serving process runs (`repair_index`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis

from api.app import create_app
from offers import catalogue, keys
from offers.catalogue import Catalogue
from offers.geo_index import GeoIndex

from .conftest import ADMIN_TOKEN, redis_snapshot
from .test_recommendations import offer_ids, recommend, shop  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def lose_redis_while_filing(monkeypatch):
    """Every index write fails as when Redis stays out of reach past the retries."""

    def unreachable(self, *args, **kwargs):
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(GeoIndex, "apply", unreachable)


def post_offer_losing_redis(client, headers, place_id, monkeypatch) -> str:
    """Create an offer whose index write fails (a 503): stored, not filed; returns its id."""
    with monkeypatch.context() as patch:
        lose_redis_while_filing(patch)
        response = client.post("/v1/offers", headers=headers, json={
            "place_ids": [place_id], "title": "Tea", "category": "cafe",
            "discount": {"kind": "percent", "value": 50}, "valid_from": "2026-01-01T00:00:00Z"})
    assert response.status_code == 503, response.json
    stored = client.get("/v1/offers", headers=headers).json["items"]
    return next(offer["id"] for offer in stored if offer["title"] == "Tea")


def test_an_offer_whose_index_write_failed_is_filed_by_the_repair(
        client, merchant, fleet, shop, redis_client, monkeypatch):  # noqa: F811
    merchant_id, headers = merchant
    place_id, served = shop(3.0)
    stored = post_offer_losing_redis(client, headers, place_id, monkeypatch)
    assert offer_ids(recommend(client, fleet, one_per_place=False)) == [served]
    assert redis_client.exists(keys.index_owed(merchant_id))

    assert Catalogue(redis_client).repair_index() == [merchant_id]
    assert sorted(offer_ids(recommend(client, fleet, one_per_place=False))) == sorted(
        [served, stored])
    assert not redis_client.exists(keys.index_owed(merchant_id))
    assert Catalogue(redis_client).repair_index() == []  # nothing owed now


def test_the_merchants_next_write_files_what_a_failed_one_owed(
        client, merchant, fleet, shop, monkeypatch):  # noqa: F811
    _, headers = merchant
    place_id, first = shop(3.0)
    owed = post_offer_losing_redis(client, headers, place_id, monkeypatch)
    assert offer_ids(recommend(client, fleet, one_per_place=False)) == [first]
    _, third = shop(5.0)
    assert sorted(offer_ids(recommend(client, fleet, one_per_place=False))) == sorted(
        [first, owed, third])


def test_a_refused_write_owes_nothing_and_changes_nothing(client, merchant, redis_client):
    _, headers = merchant
    before = redis_snapshot(redis_client)
    response = client.post("/v1/offers", headers=headers, json={
        "place_ids": ["p.m_nobody.0000000000000000"], "title": "Tea", "category": "cafe",
        "discount": {"kind": "percent", "value": 50}})
    assert response.status_code in (404, 422)
    assert redis_snapshot(redis_client) == before


def test_a_writer_killed_before_its_index_write_is_repaired_once_its_lock_lapses(
        client, merchant, fleet, shop, redis_client, redis_url):  # noqa: F811
    merchant_id, _ = merchant
    place_id, served = shop(3.0)
    # A process that stores an offer and dies (no exception, no cleanup) before filing it,
    # holding a writer lock of a one-second lease.
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        import redis
        from offers import catalogue
        from offers.geo_index import GeoIndex
        catalogue.WRITER_LEASE_S = 1.0
        GeoIndex.apply = lambda self, *args, **kwargs: os._exit(9)
        catalogue.Catalogue(redis.Redis.from_url({redis_url!r})).add_offer({merchant_id!r}, {{
            "place_ids": [{place_id!r}], "title": "Tea", "category": "cafe",
            "discount": {{"kind": "percent", "value": 50}}, "status": "active",
            "valid_from": "2026-01-01T00:00:00Z"}})
        """)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert killed.returncode == 9, killed.stderr
    assert offer_ids(recommend(client, fleet, one_per_place=False)) == [served]
    catalogue = Catalogue(redis_client)
    assert catalogue.repair_index() == []  # its lock still held: a write may be under way
    time.sleep(1.1)
    assert catalogue.repair_index() == [merchant_id]
    assert len(offer_ids(recommend(client, fleet, one_per_place=False))) == 2


def test_each_serving_process_repairs_the_index_by_itself(
        redis_client, redis_url, merchant, client, fleet, shop, monkeypatch):  # noqa: F811
    merchant_id, headers = merchant
    place_id, _ = shop(3.0)
    post_offer_losing_redis(client, headers, place_id, monkeypatch)
    app = create_app({"REDIS_URL": redis_url, "OFFERS_ADMIN_TOKEN": ADMIN_TOKEN,
                      "OFFERS_INDEX_REPAIR_S": 0.05})
    try:
        deadline = time.monotonic() + 10
        while redis_client.exists(keys.index_owed(merchant_id)):
            assert time.monotonic() < deadline, "the index was not repaired"
            time.sleep(0.05)
    finally:
        app.extensions["index_repair"].set()  # stops it: other tests own this Redis
    assert len(offer_ids(recommend(client, fleet, one_per_place=False))) == 2



def test_a_create_retried_after_a_503_with_its_idempotency_key_is_one_served_offer(
        client, merchant, fleet, shop, monkeypatch):  # noqa: F811
    _, headers = merchant
    place_id, first = shop(3.0)
    body = {"place_ids": [place_id], "title": "Tea", "category": "cafe",
            "discount": {"kind": "percent", "value": 50}, "valid_from": "2026-01-01T00:00:00Z"}
    once = {**headers, "Idempotency-Key": "tea-1"}
    with monkeypatch.context() as patch:
        lose_redis_while_filing(patch)
        assert client.post("/v1/offers", headers=once, json=body).status_code == 503
    retried = client.post("/v1/offers", headers=once, json=body)
    assert retried.status_code == 201 and retried.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/offers", headers=headers).json["items"]) == 2
    assert sorted(offer_ids(recommend(client, fleet, one_per_place=False))) == sorted(
        [first, retried.json["id"]])


@pytest.mark.parametrize("every", ["0", "-1", "nan"])
def test_a_repair_every_0_seconds_from_the_environment_is_none(redis_url, monkeypatch, every):
    """A number from the environment is read as one: "0" stayed a (true) string, and the
    repair ran in a loop that never waited."""
    monkeypatch.setenv("OFFERS_INDEX_REPAIR_S", every)
    assert "index_repair" not in create_app({"REDIS_URL": redis_url}).extensions
    monkeypatch.setenv("OFFERS_INDEX_REPAIR_S", "30")
    app = create_app({"REDIS_URL": redis_url})
    app.extensions["index_repair"].set()


def test_a_turn_whose_lease_ran_out_leaves_the_next_turns_mark(
        client, merchant, fleet, shop, redis_client, monkeypatch):  # noqa: F811
    """Writer A stalls in its index write past its lease; B takes the turn over, stores an
    offer and dies before filing it; A, ending, must not take B's mark (nor its lock)."""
    merchant_id, _ = merchant
    place_id, _ = shop(3.0)
    monkeypatch.setattr(catalogue, "WRITER_LEASE_S", 0.5)
    filed, a_done = GeoIndex.apply, threading.Event()

    def apply(self, *args, **kwargs):
        if threading.current_thread().name == "A":
            time.sleep(0.8)
        elif threading.current_thread().name == "B":
            a_done.wait()
            raise redis.ConnectionError("Redis went away")
        return filed(self, *args, **kwargs)

    monkeypatch.setattr(GeoIndex, "apply", apply)
    writer = Catalogue(redis_client)
    offer = {"place_ids": [place_id], "title": "Tea", "category": "cafe", "status": "active",
             "discount": {"kind": "percent", "value": 50}, "valid_from": "2026-01-01T00:00:00Z"}

    def a():
        writer.add_offer(merchant_id, dict(offer))
        a_done.set()

    def b():
        with contextlib.suppress(redis.ConnectionError):
            writer.add_offer(merchant_id, dict(offer))

    first = threading.Thread(target=a, name="A")
    first.start()
    time.sleep(0.6)  # A's lease ran out
    second = threading.Thread(target=b, name="B")
    second.start()
    first.join(10)
    second.join(10)
    monkeypatch.setattr(GeoIndex, "apply", filed)
    assert redis_client.exists(keys.index_owed(merchant_id))
    assert writer.repair_index() == [merchant_id]
    assert len(offer_ids(recommend(client, fleet, one_per_place=False))) == 3


def test_a_refused_write_does_not_repair_what_an_earlier_one_owed(
        client, merchant, shop, redis_client, monkeypatch):  # noqa: F811
    """A rejected write changes nothing in Redis, even when the index is owed: the repair is
    left to the next write that stands, or to the repair thread."""
    merchant_id, headers = merchant
    place_id, _ = shop(3.0)
    post_offer_losing_redis(client, headers, place_id, monkeypatch)
    before = redis_snapshot(redis_client)
    missing = client.patch(f"/v1/offers/o.{merchant_id}.0000000000000000", headers=headers,
                           json={"title": "x"})
    assert missing.status_code == 404
    refused = client.post("/v1/offers", headers=headers, json={
        "place_ids": [f"p.{merchant_id}.0000000000000000"], "title": "Tea",
        "category": "cafe", "discount": {"kind": "percent", "value": 50}})
    assert refused.status_code == 422
    assert redis_snapshot(redis_client) == before


def test_a_turn_whose_lease_ran_out_before_it_wrote_writes_nothing(
        client, merchant, shop, redis_client, monkeypatch):  # noqa: F811
    """Writer A stalls before its transaction past its lease, and B takes the turn over: A's
    write is refused (a 409 to try again), not stored after B's with a mark B would take for
    its own and delete (its offer then stored and never served)."""
    merchant_id, headers = merchant
    place_id, _ = shop(3.0)
    monkeypatch.setattr(catalogue, "WRITER_LEASE_S", 0.5)
    made = catalogue.offer_entries

    def offer_entries(*args, **kwargs):
        if threading.current_thread().name == "A":
            time.sleep(0.8)
        return made(*args, **kwargs)

    monkeypatch.setattr(catalogue, "offer_entries", offer_entries)
    writer = Catalogue(redis_client)
    offer = {"place_ids": [place_id], "title": "Tea", "category": "cafe", "status": "active",
             "discount": {"kind": "percent", "value": 50}, "valid_from": "2026-01-01T00:00:00Z"}
    refused = []

    def a():
        try:
            writer.add_offer(merchant_id, {**offer, "title": "A"})
        except catalogue.Conflict as error:
            refused.append(error)

    first = threading.Thread(target=a, name="A")
    first.start()
    time.sleep(0.6)
    writer.add_offer(merchant_id, {**offer, "title": "B"})
    first.join(10)
    assert len(refused) == 1
    titles = [o["title"] for o in client.get("/v1/offers", headers=headers).json["items"]]
    assert sorted(titles) == ["B", "Coffee at 3.0 km"]
    assert not redis_client.exists(keys.index_owed(merchant_id))


def test_a_write_that_stands_is_answered_so_when_the_repair_after_it_fails(
        client, merchant, fleet, shop, redis_client, monkeypatch):  # noqa: F811
    merchant_id, headers = merchant
    place_id, _ = shop(3.0)
    post_offer_losing_redis(client, headers, place_id, monkeypatch)

    def unreachable(self, merchant_id):
        raise redis.ConnectionError("Redis went away")

    with monkeypatch.context() as patch:
        patch.setattr(Catalogue, "_file_catalogue", unreachable)
        cake = client.post("/v1/offers", headers=headers, json={
            "place_ids": [place_id], "title": "Cake", "category": "cafe",
            "discount": {"kind": "percent", "value": 10}, "valid_from": "2026-01-01T00:00:00Z"})
    assert cake.status_code == 201
    assert redis_client.exists(keys.index_owed(merchant_id))  # left for the repair
    assert Catalogue(redis_client).repair_index() == [merchant_id]
    assert len(offer_ids(recommend(client, fleet, one_per_place=False))) == 3
