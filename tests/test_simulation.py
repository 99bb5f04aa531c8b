"""`offers simulate` and `offers ranking publish`: synthetic drivers against the app in-process
(the Flask test client as the transport), on the seed region, real Redis and a small model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from api.cli import main
from ranking import simulation
from ranking.registry import ModelRegistry
from ranking.simulation import Simulation, table
from seed_data.loader import load_seed

from .conftest import CAFE


@pytest.fixture
def seeded(redis_client, app):
    accounts = load_seed(redis_client)
    return next(a["api_key"] for a in accounts if a["role"] == "fleet")


@pytest.fixture
def transport(client, seeded):
    headers = {"Authorization": f"Bearer {seeded}"}

    def call(method: str, path: str, body: dict | None):
        response = client.open(path, method=method, json=body, headers=headers)
        return response.status_code, response.get_json(silent=True)

    return call


@pytest.fixture
def publish(monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)

    def run(*args: str):
        result = CliRunner().invoke(main, ["ranking", "publish", *map(str, args)],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def test_publish_stores_a_version_and_activates_it_only_when_asked(publish, model_dir,
                                                                    redis_client):
    registry = ModelRegistry(redis_client)
    assert publish(model_dir, "--note", "first").strip() == "published v1"
    assert registry.active_version() is None
    assert publish(model_dir, "--activate").strip() == "published v2 (active)"
    assert registry.active_version() == "v2"
    assert [m["note"] for m in registry.versions()] == ["first", ""]


def test_analysts_activate_roll_back_and_list_versions_from_the_console(
        publish, model_dir, redis_client, monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)
    for note in ("first", "second"):
        publish(model_dir, "--note", note)

    def run(*args: str):
        return CliRunner().invoke(main, ["ranking", *args])

    assert run("activate", "v1").output == "v1 active\n"
    assert run("activate", "v2").output == "v2 active\n"
    assert ModelRegistry(redis_client).active_version() == "v2"
    assert run("rollback").output == "v1 active\n"
    listed = run("versions").output.splitlines()
    assert [line[:5] for line in listed] == ["* v1 ", "  v2 "]
    assert listed[0].endswith("first") and listed[1].endswith("second")
    for args in (("activate", "v9"), ("rollback",)):  # no v9; nothing before v1
        refused = run(*args)
        assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert ModelRegistry(redis_client).active_version() == "v1"


@pytest.mark.parametrize("description", ["{}", "[]", '{"format": 2}'])
def test_publishing_a_directory_that_is_no_model_says_so_and_stores_nothing(
        monkeypatch, redis_url, redis_client, model_dir, tmp_path, description):
    for name in ("global.skops", "model.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    (tmp_path / "model.json").write_text(description)
    monkeypatch.setenv("REDIS_URL", redis_url)
    result = CliRunner().invoke(main, ["ranking", "publish", str(tmp_path)])
    assert result.exit_code != 0
    assert "model" in result.output and "Traceback" not in result.output
    assert ModelRegistry(redis_client).versions() == []


def test_a_small_simulation_reports_sound_windows(transport, publish, model_dir,
                                                  tmp_path):
    publish(model_dir, "--activate")
    routes = json.loads(simulation.ROUTES_FILE.read_text())[:2]
    sim = Simulation(transport, drivers=3, steps=8, seed=5, window=3, routes=routes,
                     slots=simulation.SLOTS[:2], concurrency=1)
    report = sim.run()

    assert report["models"] == ["v1"]
    feedback = report["feedback"]
    assert feedback["sent"] > 0 and feedback["ok"] == feedback["sent"]
    assert [w["steps"] for w in report["windows"]] == [[0, 3], [3, 6], [6, 8]]
    assert sum(w["steps_run"] for w in report["windows"]) == 3 * 8
    for window in report["windows"]:
        assert window["shown"] > 0
        assert window["accepted"] + window["dismissed"] + window["ignored"] == window["shown"]
        rates = [window[name] for name in ("engine_expected", "engine_realised",
                                           "control_expected", "oracle", "oracle_personal")]
        assert all(0 <= rate <= 1 for rate in rates)
        # the oracle picks from every offer the engine could have shown
        assert window["oracle"] >= window["engine_expected"] - 1e-12
        assert window["oracle"] >= window["control_expected"] - 1e-12
        assert window["oracle"] >= window["oracle_personal"] - 1e-12
    assert report["gap_closed"] is None or report["gap_closed"] <= 1 + 1e-12
    assert not report["oracle_pools_saturated"]
    assert "gap closed over the last window" in table(report)

    data, image = simulation.write(report, tmp_path)
    assert json.loads(data.read_text())["config"]["drivers"] == 3
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hidden_drivers_are_deterministic_in_the_seed():
    def tastes(seed):
        return [d.taste for d in Simulation(lambda *a: (200, {}), drivers=4, seed=seed).drivers]

    assert tastes(3) == tastes(3)
    assert tastes(3) != tastes(4)


def test_the_command_prints_the_table_and_writes_json_and_png(transport, publish, model_dir,
                                                              monkeypatch, tmp_path):
    publish(model_dir, "--activate")
    monkeypatch.setattr(simulation, "HttpTransport", lambda url, key: transport)
    result = CliRunner().invoke(main, [
        "simulate", "--fleet-key", "unused", "--drivers", "2", "--steps", "3", "--window", "2",
        "--concurrency", "1", "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "models serving: v1" in result.output
    assert "gap closed over the last window" in result.output
    assert (tmp_path / "out" / "simulation.png").exists()
    assert json.loads((tmp_path / "out" / "simulation.json").read_text())["windows"]


def test_offers_of_a_category_the_oracle_does_not_ask_for_still_make_a_report(
        client, merchant, fleet):
    """The oracle's own calls ask for the simulation's categories; what the engine shows
    besides (here a convenience store's offer, the only one) counts among what it picks from
    (this was a TypeError, and no report)."""
    routes = json.loads(simulation.ROUTES_FILE.read_text())[:1]
    coordinates = routes[0]["route"]["coordinates"]
    lng, lat = coordinates[len(coordinates) // 2]
    place = client.post("/v1/places", headers=merchant[1], json={
        **CAFE, "category": "convenience", "lat": lat, "lng": lng,
        "opening_hours": "24/7"}).json
    assert client.post("/v1/offers", headers=merchant[1], json={
        "place_ids": [place["id"]], "title": "Snack deal", "category": "convenience",
        "discount": {"kind": "percent", "value": 10},
        "valid_from": "2026-01-01T00:00:00Z"}).status_code == 201

    def call(method: str, path: str, body: dict | None):
        response = client.open(path, method=method, json=body, headers=fleet[1])
        return response.status_code, response.get_json(silent=True)

    report = Simulation(call, drivers=1, steps=2, seed=1, window=2, routes=routes,
                        slots=simulation.SLOTS[:1], concurrency=1).run()
    window = report["windows"][0]
    assert window["shown"] > 0
    assert window["oracle"] >= window["engine_expected"] - 1e-12
