"""Keys are laid out for Redis Cluster: every key carries a hash tag, and every transaction
and Lua script touches keys of one hash tag only. Checked on the wire with MONITOR while a
representative workload runs through the API."""

from __future__ import annotations

import re
import threading
import uuid
from collections import defaultdict

from ranking.registry import ModelRegistry

from .conftest import CAFE, FUEL

TAG = re.compile(r"^\{(registry|models|log|masks|[mgd]:[^}]+)\}:")
MULTI_KEY = {"DEL", "UNLINK", "WATCH", "EXISTS", "MGET"}
KEYLESS = {"MULTI", "EXEC", "DISCARD", "UNWATCH", "PING", "HELLO", "SELECT", "CLIENT",
           "SCRIPT", "FLUSHDB", "INFO", "MONITOR", "SCAN", "DUMP", "DBSIZE"}


def workload(client, admin, new_account, redis_client, model_dir):
    _, merchant = new_account("merchants", "M")
    _, fleet = new_account("fleets", "F")
    ids = [item["id"] for item in client.post("/v1/places/bulk", headers=merchant, json={
        "items": [{**CAFE, "lat": 39.746, "lng": -105.0}, {**FUEL, "lat": 39.746,
                                                          "lng": -104.99}]}).json["items"]]
    offer = client.post("/v1/offers", headers=merchant, json={
        "place_ids": ids, "title": "t", "category": "cafe", "valid_from": "2026-01-01T00:00:00Z",
        "discount": {"kind": "percent", "value": 10}, "budget": {"max_redemptions": 5}}).json
    client.patch(f"/v1/places/{ids[0]}", json={"lat": 39.747}, headers=merchant)
    client.patch(f"/v1/offers/{offer['id']}", json={"status": "paused"}, headers=merchant)
    client.patch(f"/v1/offers/{offer['id']}", json={"status": "active"}, headers=merchant)
    client.post("/v1/redemptions", headers=fleet, json={
        "offer_id": offer["id"], "place_id": ids[1], "driver_id": "d",
        "idempotency_key": uuid.uuid4().hex})
    route = {"type": "LineString", "coordinates": [[-105.01, 39.746], [-104.98, 39.746]]}
    client.post("/v1/places/search-along-route", headers=fleet, json={"route": route})
    client.post("/v1/recommendations", headers=fleet, json={
        "driver_id": "d", "route": route, "position": {"lat": 39.746, "lng": -105.01}})
    version = ModelRegistry(redis_client).publish(model_dir)
    client.post(f"/v1/models/{version}/activate", headers=admin)
    client.put("/v1/drivers/d/preferences", headers=fleet, json={"coffee_house": "4~8"})
    answer = client.post("/v1/recommendations", headers=fleet, json={
        "driver_id": "d", "route": route, "position": {"lat": 39.746, "lng": -105.01},
        "at": "2026-12-02T10:00:00-07:00"}).json
    assert answer["items"], answer
    client.post("/v1/feedback", headers=fleet, json={
        "recommendation_id": answer["recommendation_id"],
        "offer_id": answer["items"][0]["offer_id"], "event": "accept"})
    client.delete("/v1/drivers/d", headers=fleet)
    client.delete(f"/v1/offers/{offer['id']}", headers=merchant)
    client.delete(f"/v1/places/{ids[0]}", headers=merchant)


def test_every_transaction_and_script_stays_in_one_hash_tag(client, admin, new_account,
                                                            redis_client, model_dir):
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    commands: list[dict] = []
    ready, done = threading.Event(), threading.Event()

    def record():
        with redis_client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if command["command"] == "PING" and done.is_set():
                    break
                if command["db"] == db:
                    commands.append(command)

    listener = threading.Thread(target=record)
    listener.start()
    ready.wait(5)
    workload(client, admin, new_account, redis_client, model_dir)
    done.set()
    redis_client.ping()
    listener.join(10)

    open_blocks: dict[str, set[str] | None] = defaultdict(lambda: None)
    watched: dict[str, set[str]] = {}
    blocks, untagged = [], []
    for command in commands:
        words = command["command"].split(" ")
        name = words[0].upper()
        connection = f"{command['client_address']}:{command['client_port']}"
        if name in KEYLESS and name not in ("MULTI", "EXEC"):
            continue
        if name == "WATCH":  # watched keys must share the transaction's slot too
            watched[connection] = {TAG.match(k).group(1) for k in words[1:] if TAG.match(k)}
            continue
        if name == "MULTI":
            open_blocks[connection] = watched.pop(connection, set())
            continue
        if name == "EXEC":
            blocks.append(open_blocks.pop(connection))
            continue
        if name in ("EVALSHA", "EVAL"):
            keys = words[3:3 + int(words[2])]
            blocks.append({TAG.match(k).group(1) for k in keys if TAG.match(k)})
            untagged += [k for k in keys if not TAG.match(k)]
        else:
            keys = words[1:] if name in MULTI_KEY else words[1:2]
            for key in keys:
                if not TAG.match(key):
                    untagged.append(command["command"][:80])
                elif open_blocks[connection] is not None:
                    open_blocks[connection].add(TAG.match(key).group(1))
    assert untagged == []
    assert len(blocks) > 10, "the workload ran transactions and scripts"
    assert [tags for tags in blocks if len(tags) > 1] == []
