"""The learning loop through the API: models, preferences, feedback and what the next answer
learns from it, on real Redis with a small model trained here."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from offers import keys
from offers.redemptions import driver_key, unkeyed_driver_key
from ranking import learning
from ranking.learning import LOG_RETENTION_S
from ranking.registry import ModelRegistry
from ranking.training import RankingModel

from .conftest import CAFE, TASTED, redis_snapshot
from .test_recommendations import east_of_start, recommend


@pytest.fixture
def mixed_shop(client, merchant):
    """Places of five categories along the route, cafés the farthest; offer ids by category."""
    _, headers = merchant
    by_category: dict[str, list[str]] = {c: [] for c in TASTED}
    for i in range(15):
        category = TASTED[i % 5]
        km = 2 + i + (10 if category == "cafe" else 0)
        place = {**CAFE, "category": category, "lat": 39.746, "lng": east_of_start(km),
                 "opening_hours": None, "name": f"{category} {i}"}
        place_id = client.post("/v1/places", json=place, headers=headers).json["id"]
        response = client.post("/v1/offers", headers=headers, json={
            "place_ids": [place_id], "title": f"{category} offer {i}", "category": category,
            "discount": {"kind": "percent", "value": 10}, "valid_from": "2026-01-01T00:00:00Z"})
        assert response.status_code == 201, response.json
        by_category[category].append(response.json["id"])
    return by_category


def feedback(client, fleet, recommendation_id, offer_id, event):
    _, headers = fleet
    return client.post("/v1/feedback", headers=headers, json={
        "recommendation_id": recommendation_id, "offer_id": offer_id, "event": event})


def test_the_baseline_serves_until_a_model_is_activated(client, fleet, mixed_shop, model_dir,
                                                        redis_client, admin):
    assert recommend(client, fleet)["model"] == "baseline-1"
    version = ModelRegistry(redis_client).publish(model_dir)
    assert recommend(client, fleet)["model"] == "baseline-1"  # published is not active
    assert client.post(f"/v1/models/{version}/activate", headers=admin).status_code == 200
    assert recommend(client, fleet)["model"] == version


def test_an_outcome_given_while_the_baseline_served_is_the_first_and_teaches_nothing_later(
        client, fleet, mixed_shop, model_dir, redis_client, admin):
    """The dismiss counted under the baseline is the offer's first outcome (the export's label
    says so): an accept once a model serves must not teach the opposite."""
    answer = recommend(client, fleet)
    offer_id = answer["items"][0]["offer_id"]
    assert feedback(client, fleet, answer["recommendation_id"], offer_id,
                    "dismiss").status_code == 200
    version = ModelRegistry(redis_client).publish(model_dir)
    assert client.post(f"/v1/models/{version}/activate", headers=admin).status_code == 200
    assert feedback(client, fleet, answer["recommendation_id"], offer_id,
                    "accept").json["counted"]
    assert redis_client.hget(_profile_key(fleet), "state") is None


def test_models_are_listed_activated_and_rolled_back_by_admins_only(
        client, fleet, merchant, redis_client, model_dir, admin):
    registry = ModelRegistry(redis_client)
    first, second = registry.publish(model_dir), registry.publish(model_dir)
    for headers in (fleet[1], merchant[1]):
        assert client.post(f"/v1/models/{first}/activate", headers=headers).status_code == 403
    assert client.post("/v1/models/v999/activate", headers=admin).status_code == 404
    assert client.post(f"/v1/models/{first}/activate", headers=admin).json["active"]
    assert client.post(f"/v1/models/{second}/activate", headers=admin).json["active"]
    listed = client.get("/v1/models", headers=admin).json["items"]
    assert [(m["version"], m["active"]) for m in listed] == [(first, False), (second, True)]
    assert client.post("/v1/models/rollback", headers=admin).json["version"] == first
    assert recommend(client, fleet)["model"] == first


def test_a_registry_rebuilt_from_nothing_never_serves_what_a_worker_loaded_before(
        client, fleet, mixed_shop, model_dir, redis_client, redis_url, admin, tmp_path):
    """A Redis restarted empty: models published again start from v1, and a worker that
    loaded the old v1 must load the new one, not serve the old one under its name."""
    from api.app import create_app
    from ranking.model import AcceptanceModel
    from ranking.training import train

    from .conftest import ADMIN_TOKEN, synthetic_survey
    registry = ModelRegistry(redis_client)
    old = registry.publish(model_dir)
    assert client.post(f"/v1/models/{old}/activate", headers=admin).status_code == 200
    before = [item["score"] for item in recommend(client, fleet)["items"]]
    redis_client.delete(keys.MODEL_FILES, keys.MODEL_META, keys.MODEL_SEQUENCE,
                        keys.MODEL_ACTIVE, keys.MODEL_SERVING, keys.MODEL_HISTORY)
    other = tmp_path / "other"
    train(synthetic_survey(seed=9), AcceptanceModel(max_iter=5), inner_folds=3).save(other)
    new = registry.publish(other)
    assert new == old
    assert client.post(f"/v1/models/{new}/activate", headers=admin).status_code == 200
    after = [item["score"] for item in recommend(client, fleet)["items"]]
    fresh = create_app({"REDIS_URL": redis_url, "OFFERS_ADMIN_TOKEN": ADMIN_TOKEN,
                        "OFFERS_EXPLORATION": "greedy"})
    assert after != before
    assert after == [item["score"] for item in recommend(fresh.test_client(), fleet)["items"]]


def test_a_version_an_earlier_release_activated_serves_during_a_rolling_upgrade(
        client, fleet, mixed_shop, model_dir, redis_client, admin):
    """The active version stays a bare name (what earlier releases read and write); its
    pointer is used only while it names that version."""
    registry = ModelRegistry(redis_client)
    first, second = registry.publish(model_dir), registry.publish(model_dir)
    assert client.post(f"/v1/models/{first}/activate", headers=admin).status_code == 200
    assert redis_client.get(keys.MODEL_ACTIVE) == first.encode()
    assert recommend(client, fleet)["model"] == first
    redis_client.set(keys.MODEL_ACTIVE, second)  # activated by a worker of an earlier release
    assert recommend(client, fleet)["model"] == second
    assert registry.active_pointer() == second


def test_a_version_that_cannot_load_is_not_fetched_again_by_every_request(
        client, fleet, mixed_shop, model_dir, redis_client, monkeypatch):
    """Activated by an earlier release, damaged in Redis: the baseline serves, and the files
    are fetched and tried once per FAILED_LOAD_RETRY_S, not by every request."""
    from ranking import registry as registry_module
    version = ModelRegistry(redis_client).publish(model_dir)
    redis_client.hset(keys.MODEL_FILES, f"{version}/global.skops", b"not a zip archive")
    redis_client.set(keys.MODEL_ACTIVE, version)
    loads = []
    load = registry_module.ModelRegistry._load
    monkeypatch.setattr(registry_module.ModelRegistry, "_load",
                        lambda self, v: (loads.append(v), load(self, v))[1])
    assert all(recommend(client, fleet)["model"] == "baseline-1" for _ in range(5))
    assert loads == [version]
    monkeypatch.setattr(registry_module, "FAILED_LOAD_RETRY_S", 0.0)
    recommend(client, fleet)
    assert loads == [version, version]


def test_rolling_back_again_goes_further_back(client, redis_client, model_dir, admin):
    """As an undo: after v1, v2 and v3 were activated, rollbacks give v2, then v1, then a
    404 (nothing before); activating again starts a new turn."""
    registry = ModelRegistry(redis_client)
    versions = [registry.publish(model_dir) for _ in range(3)]
    for version in versions:
        assert client.post(f"/v1/models/{version}/activate", headers=admin).status_code == 200

    def rollback():
        return client.post("/v1/models/rollback", headers=admin)

    assert [rollback().json["version"] for _ in range(2)] == versions[1::-1]
    nothing_before = rollback()
    assert nothing_before.status_code == 404 and registry.active_version() == versions[0]
    assert nothing_before.json["message"] == "No earlier model version to roll back to."
    assert client.post(f"/v1/models/{versions[2]}/activate", headers=admin).status_code == 200
    assert rollback().json["version"] == versions[0]


def test_feedback_on_unknown_recommendations_or_offers_is_404(client, fleet, new_account,
                                                            mixed_shop):
    answer = recommend(client, fleet)
    offer_id = answer["items"][0]["offer_id"]
    rec = answer["recommendation_id"]
    assert feedback(client, fleet, "rec_nope", offer_id, "accept").status_code == 404
    forged = rec[:-16] + "0" * 16  # the right driver, no such recommendation
    assert feedback(client, fleet, forged, offer_id, "accept").status_code == 404
    shown = {item["offer_id"] for item in answer["items"]}
    not_shown = next(o for ids in mixed_shop.values() for o in ids if o not in shown)
    assert feedback(client, fleet, rec, not_shown, "accept").status_code == 404
    other_fleet = new_account("fleets", "Other fleet")
    assert feedback(client, other_fleet, rec, offer_id, "accept").status_code == 404
    bad = feedback(client, fleet, rec, offer_id, "purchase")
    assert bad.status_code == 422 and "event" in bad.json["errors"]


def test_duplicate_feedback_counts_once(client, fleet, mixed_shop, active_model, redis_client):
    answer = recommend(client, fleet)
    rec, offer_id = answer["recommendation_id"], answer["items"][0]["offer_id"]
    first = feedback(client, fleet, rec, offer_id, "accept")
    assert first.status_code == 200 and first.json["counted"] is True
    state = redis_client.hget(_profile_key(fleet), "state")
    again = feedback(client, fleet, rec, offer_id, "accept")
    assert again.status_code == 200 and again.json["counted"] is False
    assert redis_client.hget(_profile_key(fleet), "state") == state
    # a later redeem of the same offer is logged but teaches nothing more
    assert feedback(client, fleet, rec, offer_id, "redeem").json["counted"] is True
    assert redis_client.hget(_profile_key(fleet), "state") == state
    assert redis_client.xlen(keys.FEEDBACK_LOG) == 2


def _profile_key(fleet, driver_id: str = "driver-1") -> str:
    return keys.driver_profile(driver_key(fleet[0], driver_id))


def test_every_served_item_is_logged_with_its_propensity_and_model(client, fleet, mixed_shop,
                                                                   active_model, redis_client):
    answer = recommend(client, fleet, limit=4)
    entries = redis_client.xrange(keys.SERVED_LOG)
    assert [e[b"offer_id"].decode() for _, e in entries] == \
        [item["offer_id"] for item in answer["items"]]
    for position, (_, entry) in enumerate(entries):
        assert entry[b"model"].decode() == active_model
        assert entry[b"position"] == str(position).encode()
        assert float(entry[b"propensity"]) == 1.0  # greedy in tests
        assert entry[b"recommendation_id"].decode() == answer["recommendation_id"]
        assert b"driver-1" not in entry[b"driver"]  # pseudonymous


def test_log_entries_past_their_retention_are_trimmed_entry_by_entry(client, fleet, mixed_shop,
                                                                      active_model,
                                                                      redis_client):
    """The served, decision and feedback logs amount to a location history: an entry older
    than LOG_RETENTION_S goes at the next write, even when it shares a stream node with new
    ones."""
    old = int((time.time() - LOG_RETENTION_S - 86_400) * 1000)
    logs = (keys.SERVED_LOG, keys.DECISION_LOG, keys.FEEDBACK_LOG)
    for log in logs:
        redis_client.xadd(log, {"old": 1}, id=f"{old}-1")
    answer = recommend(client, fleet)
    assert feedback(client, fleet, answer["recommendation_id"], answer["items"][0]["offer_id"],
                    "accept").status_code == 200
    for log in logs:
        assert redis_client.xlen(log) > 0
        assert all(b"old" not in fields for _, fields in redis_client.xrange(log)), log


def test_an_answer_with_nothing_to_serve_keeps_and_logs_nothing(client, fleet, mixed_shop,
                                                                 redis_client):
    before = set(redis_client.keys("*"))
    answer = recommend(client, fleet, categories=["car_wash"])  # none along the route
    assert answer["items"] == [] and answer["recommendation_id"]
    assert set(redis_client.keys("*")) == before
    offer_id = mixed_shop["cafe"][0]
    assert feedback(client, fleet, answer["recommendation_id"], offer_id,
                    "accept").status_code == 404


def test_declared_preferences_are_stored_validated_and_forgotten(client, fleet):
    _, headers = fleet
    prefs = {"bar": "never", "coffee_house": "4~8", "carry_away": "1~3",
             "restaurant_lt20": "1~3", "restaurant_20_50": "less1"}
    assert client.put("/v1/drivers/driver-1/preferences", json=prefs,
                      headers=headers).status_code == 200
    assert client.get("/v1/drivers/driver-1/preferences", headers=headers).json == prefs
    bad = client.put("/v1/drivers/driver-1/preferences", json={"bar": "daily"}, headers=headers)
    assert bad.status_code == 422 and "bar" in bad.json["errors"]
    assert client.get("/v1/drivers/driver-1/preferences", headers=headers).json == prefs
    assert client.delete("/v1/drivers/driver-1", headers=headers).status_code == 204
    assert client.get("/v1/drivers/driver-1/preferences", headers=headers).json == {}


@pytest.mark.parametrize("driver", ["%00", "a%1Bb", "x" * 129])
def test_a_driver_id_in_the_path_is_held_to_a_bodys_rules(client, fleet, redis_client,
                                                          driver):
    """A NUL named in the path stored preferences for a driver no recommendation can name
    (its body's driver_id is refused)."""
    _, headers = fleet
    before = redis_snapshot(redis_client)
    for method, path, body in [("put", f"/v1/drivers/{driver}/preferences", {"bar": "gt8"}),
                               ("get", f"/v1/drivers/{driver}/preferences", None),
                               ("delete", f"/v1/drivers/{driver}", None)]:
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == 422 and "driver_id" in response.json["errors"]
    assert redis_snapshot(redis_client) == before


def test_a_driver_who_takes_coffee_gets_coffee_first_after_a_few_dozen_events(
        client, fleet, mixed_shop, active_model):
    cafes = set(mixed_shop["cafe"])

    def top(answer, n=3):
        return [item["offer_id"] for item in answer["items"][:n]]

    before = recommend(client, fleet, limit=5)
    assert not set(top(before)) <= cafes  # the cafés, farthest away, do not lead at first
    events = 0
    while events < 40:
        answer = recommend(client, fleet, limit=5)
        for item in answer["items"]:
            event = "accept" if item["offer_id"] in cafes else "dismiss"
            assert feedback(client, fleet, answer["recommendation_id"], item["offer_id"],
                            event).status_code == 200
            events += 1
    after = recommend(client, fleet, limit=5)
    assert set(top(after)) == cafes
    assert any("you often take cafe offers" in item["reasons"] for item in after["items"])


def test_thompson_sampling_serves_and_logs_estimated_propensities(
        redis_url, fleet, mixed_shop, active_model, redis_client):
    from api.app import create_app

    from .conftest import ADMIN_TOKEN
    app = create_app({"REDIS_URL": redis_url, "OFFERS_ADMIN_TOKEN": ADMIN_TOKEN,
                      "OFFERS_EXPLORATION": "thompson:16", "OFFERS_EXPLORATION_SEED": 3})
    answer = recommend(app.test_client(), fleet, limit=5)
    assert len(answer["items"]) == 5 and answer["model"] == active_model
    logged = [float(e[b"propensity"]) for _, e in redis_client.xrange(keys.SERVED_LOG)]
    assert len(logged) == 5 and all(1 / 17 <= p <= 1 for p in logged)
    assert {e[b"policy"] for _, e in redis_client.xrange(keys.SERVED_LOG)} == {b"thompson"}


def _left(redis_client, driver: str) -> list[bytes]:
    """What an erased driver's hash tag still holds: only how often they were erased."""
    return sorted(redis_client.scan_iter(match="{d:" + driver + "}:*"))


def test_forgetting_a_driver_also_drops_what_later_feedback_could_learn_from(
        client, fleet, mixed_shop, active_model, redis_client):
    answer = recommend(client, fleet)
    offer_id = answer["items"][0]["offer_id"]
    assert feedback(client, fleet, answer["recommendation_id"], offer_id,
                    "accept").status_code == 200
    assert redis_client.hget(_profile_key(fleet), "state") is not None
    scans = _scans(redis_client)
    assert client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
    # Found by name, not by scanning a keyspace that grows with every driver and offer.
    assert _scans(redis_client) == scans
    late = feedback(client, fleet, answer["recommendation_id"], offer_id, "redeem")
    assert late.status_code == 404
    driver = driver_key(fleet[0], "driver-1")
    assert _left(redis_client, driver) == [keys.driver_erasures(driver).encode()]


def _scans(redis_client) -> int:
    return redis_client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)


def test_erasing_a_driver_erases_every_recommendation_kept_for_them(
        client, fleet, mixed_shop, active_model, redis_client):
    answers = [recommend(client, fleet) for _ in range(3)]
    feedback(client, fleet, answers[1]["recommendation_id"], answers[1]["items"][0]["offer_id"],
             "dismiss")
    driver = driver_key(fleet[0], "driver-1")
    assert redis_client.zcard(keys.driver_recommendations(driver)) == 3
    redis_client.hset(keys.driver_used_up(driver), "o.m_x.0000000000000001", 1)  # redeemed
    assert client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
    assert _left(redis_client, driver) == [keys.driver_erasures(driver).encode()]


def test_what_a_recommendation_keeps_ends_at_one_time_and_the_list_drops_what_is_past(
        client, fleet, mixed_shop, active_model, redis_client):
    driver = driver_key(fleet[0], "driver-1")
    listed = keys.driver_recommendations(driver)
    redis_client.zadd(listed, {"rec_past": 1000})  # expired in 1970
    rec = recommend(client, fleet)["recommendation_id"]
    ends = redis_client.pexpiretime(keys.served(driver, rec))
    assert abs(ends - (time.time() + 7 * 24 * 3600) * 1000) < 60_000
    assert redis_client.zrange(listed, 0, -1, withscores=True) == [(rec.encode(), ends)]
    assert redis_client.pexpiretime(listed) == ends
    assert client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
    assert 0 < redis_client.ttl(keys.driver_erasures(driver)) <= 3600


def test_a_driver_keeps_only_their_newest_recommendations(client, fleet, mixed_shop,
                                                         active_model, redis_client,
                                                         monkeypatch):
    """A car asking every few seconds must not fill Redis: past the most a driver keeps, the
    oldest recommendation goes, with its record and its feedback set."""
    monkeypatch.setattr(learning, "MAX_KEPT_PER_DRIVER", 2)
    driver = driver_key(fleet[0], "driver-1")
    first = recommend(client, fleet)
    feedback(client, fleet, first["recommendation_id"], first["items"][0]["offer_id"], "dismiss")
    later = [recommend(client, fleet)["recommendation_id"] for _ in range(2)]
    assert [rec.decode() for rec in redis_client.zrange(
        keys.driver_recommendations(driver), 0, -1)] == later
    gone = first["recommendation_id"]
    assert not redis_client.exists(keys.served(driver, gone), keys.feedback_seen(driver, gone))
    assert feedback(client, fleet, gone, first["items"][0]["offer_id"],
                    "accept").status_code == 404
    assert all(redis_client.exists(keys.served(driver, rec)) for rec in later)


def test_a_script_the_server_lost_runs_again_alone(client, fleet, mixed_shop, active_model,
                                                  redis_client):
    """After a restart or a failover the server may know one of a round trip's scripts and
    not another (an earlier release loaded the log's): only the refused command is sent again,
    and the served log gets each item once."""
    from ranking.learning import _LOG
    redis_client.script_flush()
    redis_client.script_load(_LOG)
    answer = recommend(client, fleet)
    assert redis_client.xlen(keys.SERVED_LOG) == len(answer["items"]) > 0
    assert redis_client.xlen(keys.DECISION_LOG) == 1  # greedy: its first pick was served
    driver = driver_key(fleet[0], "driver-1")
    assert redis_client.exists(keys.served(driver, answer["recommendation_id"])) == 1


def test_a_feedback_set_ends_with_its_recommendation_however_late_the_feedback(
        client, fleet, mixed_shop, active_model, redis_client):
    """Renewed at each event, it would outlive the record and the list that names it for an
    erase; it ends when they do, by Redis's clock."""
    answer = recommend(client, fleet)
    rec, offer_id = answer["recommendation_id"], answer["items"][0]["offer_id"]
    driver = driver_key(fleet[0], "driver-1")
    served, seen = keys.served(driver, rec), keys.feedback_seen(driver, rec)
    redis_client.pexpire(served, 50_000)  # as if served long ago: 50 s left
    redis_client.zadd(keys.driver_recommendations(driver),
                      {rec: redis_client.pexpiretime(served)})
    for event in ("impression", "accept", "redeem"):
        assert feedback(client, fleet, rec, offer_id, event).status_code == 200
        assert redis_client.pexpiretime(seen) == redis_client.pexpiretime(served)


def test_an_erase_inside_feedbacks_transaction_leaves_no_state(
        client, fleet, mixed_shop, active_model, redis_client, monkeypatch):
    """The erase lands after feedback read the served record and before it writes: its
    transaction fails, and it finds nothing when it tries again."""
    from ranking.learning import LearningLoop
    answer = recommend(client, fleet)
    learn = LearningLoop._learn
    erased = []

    def erase_then_learn(*args):
        if not erased:
            erased.append(client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code)
        return learn(*args)

    monkeypatch.setattr(LearningLoop, "_learn", staticmethod(erase_then_learn))
    assert feedback(client, fleet, answer["recommendation_id"], answer["items"][0]["offer_id"],
                    "accept").status_code == 404
    assert erased == [204] and redis_client.exists(_profile_key(fleet)) == 0


def test_a_recommendation_that_read_a_profile_an_erase_then_deleted_keeps_nothing(
        client, fleet, mixed_shop, active_model, redis_client, monkeypatch):
    """The erase lands between a recommendation's read of the driver and the write of what it
    served: the record would hold the erased preferences in its feature rows, and feedback on
    it would learn a state again; the logs' entries, written after the erase, their declared
    preferences among the raw fields."""
    from ranking.learning import LearningLoop
    assert client.put("/v1/drivers/driver-1/preferences", json={"bar": "gt8"},
                      headers=fleet[1]).status_code == 200
    before = recommend(client, fleet)
    logged = (redis_client.xrange(keys.SERVED_LOG), redis_client.xrange(keys.DECISION_LOG))
    assert len(logged[0]) == len(before["items"]) and len(logged[1]) == 1
    record = LearningLoop.record_served

    def erase_then_record(*args, **kwargs):
        assert client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
        return record(*args, **kwargs)

    monkeypatch.setattr(LearningLoop, "record_served", erase_then_record)
    answer = recommend(client, fleet)
    assert answer["items"]
    monkeypatch.undo()
    assert feedback(client, fleet, answer["recommendation_id"], answer["items"][0]["offer_id"],
                    "accept").status_code == 404
    driver = driver_key(fleet[0], "driver-1")
    assert _left(redis_client, driver) == [keys.driver_erasures(driver).encode()]
    # Logged before the erase: kept until they age out, as every log entry (docs/ranking.md).
    assert (redis_client.xrange(keys.SERVED_LOG), redis_client.xrange(keys.DECISION_LOG)) \
        == logged
    after = recommend(client, fleet)  # read after the erase: kept, and it learns
    assert feedback(client, fleet, after["recommendation_id"], after["items"][0]["offer_id"],
                    "accept").status_code == 200


def test_erasing_a_driver_also_erases_what_an_earlier_release_kept_unkeyed(
        client, fleet, mixed_shop, active_model, redis_client):
    """Releases before keyed pseudonyms kept a profile (no expiry) and recommendations under a
    plain SHA-256: the profile is erased by name, the recommendations once `offers migrate`
    has listed them."""
    from ranking.learning import LearningLoop
    old = unkeyed_driver_key(fleet[0], "driver-1")
    redis_client.hset(keys.driver_profile(old), "preferences", b'{"bar": "never"}')
    redis_client.hset(keys.served(old, "rec_x"), "fleet", fleet[0])
    redis_client.expire(keys.served(old, "rec_x"), 3600)
    redis_client.sadd(keys.feedback_seen(old, "rec_x"), "o.m.1|accept")
    redis_client.expire(keys.feedback_seen(old, "rec_x"), 7200)  # renewed by a late event
    assert LearningLoop(redis_client).migrate()["listed"] == 1
    assert client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
    assert _left(redis_client, old) == []


def test_erasing_a_driver_erases_what_was_kept_before_the_deployment_was_given_a_secret(
        client, fleet, mixed_shop, active_model, redis_client, redis_url):
    """A deployment that ran on the secret it kept in Redis (`make demo`) and is then given
    OFFERS_DRIVER_KEY_SECRET reads its drivers afresh under new pseudonyms; what it kept
    under the old ones (a profile has no expiry) is still erased with the driver."""
    from api.app import create_app

    assert client.put("/v1/drivers/driver-1/preferences", json={"bar": "gt8"},
                      headers=fleet[1]).status_code == 200
    answer = recommend(client, fleet)
    assert feedback(client, fleet, answer["recommendation_id"], answer["items"][0]["offer_id"],
                    "accept").status_code == 200
    old = driver_key(fleet[0], "driver-1")
    assert _left(redis_client, old)
    configured = create_app({"REDIS_URL": redis_url, "OFFERS_DRIVER_KEY_SECRET": "production",
                             "TESTING": True}).test_client()
    assert configured.get("/v1/drivers/driver-1/preferences", headers=fleet[1]).json == {}
    assert configured.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
    assert _left(redis_client, old) == []


def test_migrating_lists_what_an_earlier_release_kept_so_erases_find_it_and_feedback_counts(
        client, fleet, mixed_shop, active_model, redis_client):
    from ranking.learning import LearningLoop
    answers = [recommend(client, fleet) for _ in range(2)]
    driver = driver_key(fleet[0], "driver-1")
    listed = keys.driver_recommendations(driver)
    redis_client.delete(listed)  # as an earlier release left them
    redis_client.set("{d:" + driver + "}:erased", 1.0)  # its erase mark
    redis_client.sadd(keys.feedback_seen(driver, "rec_gone"), "o.m.1|accept")  # record gone
    rec, other = answers[0]["recommendation_id"], answers[1]["recommendation_id"]
    seen = keys.feedback_seen(driver, other)
    redis_client.sadd(seen, "o.m.1|impression")
    redis_client.expire(seen, 14 * 24 * 3600)  # renewed by a late event, as releases before did
    redis_client.persist(keys.served(driver, other))  # kept with no end at all
    # Listed in seconds by commits between the lists and milliseconds: re-scored.
    redis_client.zadd(listed, {other: int(time.time()) + 7 * 24 * 3600})
    assert feedback(client, fleet, rec, answers[0]["items"][0]["offer_id"],
                    "accept").status_code == 404  # unlisted: no erase could find it
    assert LearningLoop(redis_client).migrate() == {
        "listed": 2, "orphaned_feedback_sets": 1, "erase_marks": 1}
    for kept in (rec, other):
        ends = redis_client.pexpiretime(keys.served(driver, kept))
        assert 0 < ends <= (time.time() + 7 * 24 * 3600) * 1000 + 1000
        assert redis_client.zscore(listed, kept) == ends
    assert redis_client.pexpiretime(seen) == redis_client.zscore(listed, other)
    assert redis_client.pexpiretime(listed) == max(redis_client.zscore(listed, r)
                                                   for r in (rec, other))
    assert feedback(client, fleet, rec, answers[0]["items"][0]["offer_id"],
                    "accept").status_code == 200
    assert client.delete("/v1/drivers/driver-1", headers=fleet[1]).status_code == 204
    assert _left(redis_client, driver) == [keys.driver_erasures(driver).encode()]


def test_feedback_racing_an_erase_never_brings_a_state_back(app, fleet, mixed_shop,
                                                           active_model, redis_client, redis_url):
    """Feedback and DELETE sent at once, from two applications (as two workers), again and
    again: whichever lands first, no state is left once both have answered. A recommendation
    served after the erase learns again. (The interleavings that matter are pinned down by the
    two tests above; this one lets the threads find others.)"""
    from api.app import create_app

    from .conftest import ADMIN_TOKEN
    other = create_app({"REDIS_URL": redis_url, "OFFERS_ADMIN_TOKEN": ADMIN_TOKEN,
                        "OFFERS_EXPLORATION": "greedy"}).test_client()
    client = app.test_client()
    outcomes, errors = [], []
    for _ in range(30):
        answer = recommend(client, fleet)
        start = threading.Barrier(2)

        def send_feedback(answer=answer, start=start):
            start.wait()
            outcomes.append(("feedback", feedback(
                client, fleet, answer["recommendation_id"], answer["items"][0]["offer_id"],
                "accept").status_code))

        def erase(start=start):
            start.wait()
            outcomes.append(("erase", other.delete("/v1/drivers/driver-1",
                                                   headers=fleet[1]).status_code))

        threads = [threading.Thread(target=_reporting(send_feedback, errors)),
                   threading.Thread(target=_reporting(erase, errors))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert redis_client.hget(_profile_key(fleet), "state") is None
    assert len(outcomes) == 60
    assert {status for kind, status in outcomes if kind == "erase"} == {204}
    assert {status for kind, status in outcomes if kind == "feedback"} <= {200, 404}
    after = recommend(client, fleet)
    assert feedback(client, fleet, after["recommendation_id"], after["items"][0]["offer_id"],
                    "accept").status_code == 200
    assert redis_client.hget(_profile_key(fleet), "state") is not None


def _reporting(target, errors: list):
    """`target`, its exceptions kept in `errors` (a thread's own would only be a warning)."""
    def run():
        try:
            target()
        except BaseException as error:  # the test asserts there were none
            errors.append(error)
    return run


def test_feedback_on_a_recommendation_the_driver_list_does_not_hold_is_404(
        client, fleet, mixed_shop, active_model, redis_client):
    """Kept by a release before the list: no erase could find it, so it teaches nothing."""
    answer = recommend(client, fleet)
    redis_client.zrem(keys.driver_recommendations(driver_key(fleet[0], "driver-1")),
                      answer["recommendation_id"])
    assert feedback(client, fleet, answer["recommendation_id"],
                    answer["items"][0]["offer_id"], "accept").status_code == 404
    assert redis_client.hget(_profile_key(fleet), "state") is None


def test_a_state_of_an_older_layout_is_dropped_not_a_500(client, fleet, mixed_shop,
                                                         active_model, redis_client):
    redis_client.hset(_profile_key(fleet), "state", b"\x00\x01garbage")
    answer = recommend(client, fleet)
    assert answer["items"]
    offer_id = answer["items"][0]["offer_id"]
    assert feedback(client, fleet, answer["recommendation_id"], offer_id,
                    "accept").status_code == 200


def test_a_model_holding_functions_is_refused_and_never_runs_them(
        client, model_dir, redis_client, admin, tmp_path):
    """A pipeline of numpy's own functions that, scoring, would run code given as text: skops
    must not be told to trust them (it was, for any name under numpy or scikit-learn)."""
    from numpy.testing._private.utils import build_err_msg, runstring
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('ran')#"
    model = RankingModel.load(model_dir)
    model.estimator = Pipeline([
        ("text", FunctionTransformer(build_err_msg, kw_args={
            "err_msg": "", "header": code, "verbose": False})),
        ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
        ("fit", LogisticRegression().fit(np.eye(2), [0, 1]))])
    model.save(tmp_path / "model")
    with pytest.raises(ValueError, match="runstring"):
        RankingModel.load(tmp_path / "model")
    with pytest.raises(ValueError, match="runstring"):
        ModelRegistry(redis_client).publish(tmp_path / "model")
    # Written into Redis by someone who can: refused when activated too.
    version = ModelRegistry(redis_client).publish(model_dir)
    redis_client.hset(keys.MODEL_FILES, f"{version}/global.skops",
                      (tmp_path / "model" / "global.skops").read_bytes())
    assert client.post(f"/v1/models/{version}/activate", headers=admin).status_code == 422
    assert not marker.exists()


def unservable(model_dir, tmp_path, change: str):
    """A copy of `model_dir` that loads but cannot score: its estimator fitted on other
    columns, or its prior no covariance."""
    model = RankingModel.load(model_dir)
    if change == "estimator fitted on 5 columns":
        rng = np.random.default_rng(0)
        model.estimator.fit(rng.normal(size=(60, 5)), rng.integers(0, 2, 60))
    else:
        model.prior_covariance[0, 0] = np.nan
    model.save(tmp_path)
    return tmp_path


@pytest.mark.parametrize("damage", [
    ("model.json", b'{"format": 99, "feature_names": [], "driver_terms": []}'),  # a later format
    ("global.skops", b"not a zip archive"),                                       # damaged
    ("model.json", b"{not json"),
    "estimator fitted on 5 columns",  # these two load, and failed every request (500)
    "prior with a NaN",
])
def test_a_version_this_release_cannot_load_is_refused_and_never_breaks_serving(
        client, fleet, mixed_shop, model_dir, redis_client, admin, tmp_path, damage):
    if isinstance(damage, str):
        version = ModelRegistry(redis_client).publish(unservable(model_dir, tmp_path, damage))
    else:
        version = ModelRegistry(redis_client).publish(model_dir)
        name, blob = damage
        redis_client.hset(keys.MODEL_FILES, f"{version}/{name}", blob)
    refused = client.post(f"/v1/models/{version}/activate", headers=admin)
    assert refused.status_code == 422
    redis_client.set(keys.MODEL_ACTIVE, version)  # as if activated by an older release
    assert recommend(client, fleet)["model"] == "baseline-1"
