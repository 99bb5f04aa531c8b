"""The `offers` console command: seed, import and serve, against the real Redis."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from offers import keys
from offers.redis_server import free_port

from .conftest import SHARED_DATA


@pytest.fixture
def run(redis_url, redis_client, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_seed_loads_the_demo_region_and_prints_a_key_per_account(run, redis_client):
    result = run("seed")
    assert result.exit_code == 0
    accounts = json.loads(Path("seed_data/merchants.json").read_text())
    fleets = json.loads(Path("seed_data/fleets.json").read_text())
    assert result.output.count("key: ") == len(accounts) + len(fleets)
    places = json.loads(Path("seed_data/places.json").read_text())
    stored = sum(redis_client.hlen(key) for key in redis_client.scan_iter("*:places"))
    assert stored == len(places)
    offers = json.loads(Path("seed_data/offers.json").read_text())
    assert sum(redis_client.hlen(key) for key in redis_client.scan_iter("*:offers")) == len(offers)


def test_seeding_twice_duplicates_nothing(run, redis_client):
    run("seed")
    counts = {key: redis_client.hlen(key) for key in redis_client.scan_iter("*:offers")}
    assert run("seed").exit_code == 0
    assert {key: redis_client.hlen(key) for key in redis_client.scan_iter("*:offers")} == counts


def write_geojson(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def feature(name, lng, lat, **properties):
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lng, lat]},
            "properties": {"name": name, "category": "cafe", **properties}}


def test_import_without_merchant_fills_the_shared_catalogue(run, redis_client, tmp_path):
    path = write_geojson(tmp_path / "cafes.geojson",
                         [feature("A", 24.94, 60.17), feature("B", 24.95, 60.18)])
    result = run("import", path)
    assert result.exit_code == 0, result.output
    assert redis_client.hlen(keys.places(keys.SHARED_MERCHANT)) == 2


def test_import_with_one_bad_place_stores_nothing(run, redis_client, tmp_path):
    path = write_geojson(tmp_path / "cafes.geojson",
                         [feature("A", 24.94, 60.17), feature("B", 24.95, 95.0)])
    result = CliRunner().invoke(main, ["import", path])
    assert result.exit_code != 0
    assert "nothing imported" in result.output
    assert redis_client.dbsize() == 0


def test_import_of_a_file_naming_an_external_id_twice_stores_nothing(run, redis_client,
                                                                     tmp_path):
    path = write_geojson(tmp_path / "cafes.geojson", [
        feature("A", 24.94, 60.17, external_id="osm:node/7"),
        feature("B", 24.95, 60.18, external_id="osm:node/7")])
    result = run("import", path)
    assert result.exit_code == 1 and "repeat an external_id" in result.output
    assert "osm:node/7" in result.output and redis_client.dbsize() == 0


def test_import_for_an_unknown_merchant_fails(run, tmp_path):
    path = write_geojson(tmp_path / "cafes.geojson", [feature("A", 24.94, 60.17)])
    result = CliRunner().invoke(main, ["import", path, "--merchant", "m_nobody"])
    assert result.exit_code != 0
    assert "no merchant" in result.output


def test_a_file_or_server_a_command_cannot_use_is_one_line_not_a_traceback(run, tmp_path,
                                                                         redis_client,
                                                                         monkeypatch):
    """Exit status 1 and `Error: <kind>: <message>`; nothing stored."""
    broken = tmp_path / "broken.osm.pbf"
    broken.write_bytes(b"not a protobuf file at all")
    result = run("import", str(broken))
    assert result.exit_code == 1 and result.output.startswith("Error: RuntimeError: ")
    assert "Traceback" not in result.output and redis_client.dbsize() == 0
    empty = tmp_path / "empty.csv"
    empty.write_text("driver_id\n")
    result = run("ranking", "train", "--data", str(empty), "--format", "coupon-survey",
                 "--out", str(tmp_path / "model"))
    assert result.exit_code == 1 and "holds no rows" in result.output
    assert not (tmp_path / "model").exists()
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    result = run("seed")
    assert result.exit_code == 1 and result.output.startswith("Error: ConnectionError: ")


def test_trim_drops_log_entries_past_their_retention_of_idle_merchants_and_an_idle_engine(
        run, redis_client, merchant):
    """Writes trim their own log; a merchant with no redemption since, or an engine that
    stopped serving, would keep a location history past its retention without the job."""
    from offers.redemptions import REDEMPTION_LOG_RETENTION_S
    from ranking.learning import LOG_RETENTION_S

    now_ms = int(time.time() * 1000)
    logs = {keys.redemptions(merchant[0]): REDEMPTION_LOG_RETENTION_S,
            keys.redemptions(keys.SHARED_MERCHANT): REDEMPTION_LOG_RETENTION_S,
            keys.SERVED_LOG: LOG_RETENTION_S, keys.FEEDBACK_LOG: LOG_RETENTION_S,
            keys.DECISION_LOG: LOG_RETENTION_S}
    for log, retention_s in logs.items():
        redis_client.xadd(log, {"age": "past"}, id=f"{now_ms - retention_s * 1000 - 60_000}-1")
        redis_client.xadd(log, {"age": "within"}, id=f"{now_ms - retention_s * 1000 + 60_000}-1")
    result = run("trim")
    assert result.exit_code == 0 and result.output.startswith(
        "dropped 2 redemption log entries of 2 merchants and 3 learning log entries"), result.output
    for log in logs:
        assert [f[b"age"] for _, f in redis_client.xrange(log)] == [b"within"], log


@pytest.mark.skipif(not (SHARED_DATA / "osm").exists(), reason="shared OSM extracts absent")
def test_importing_an_osm_extract_twice_upserts_by_osm_id(run, redis_client):
    extract = str(SHARED_DATA / "osm" / "monaco-2019.osm.pbf")
    assert run("import", extract).exit_code == 0
    count = redis_client.hlen(keys.places(keys.SHARED_MERCHANT))
    assert count > 100
    assert run("import", extract).exit_code == 0
    assert redis_client.hlen(keys.places(keys.SHARED_MERCHANT)) == count


GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@contextlib.contextmanager
def serving(command: list[str], redis_url: str, stdout=subprocess.DEVNULL):
    """The server `command` (its last argument the port or address to bind, added here)
    started and answering /readyz; its port."""
    port = free_port()
    address = f"127.0.0.1:{port}" if command[0] == GUNICORN else str(port)
    env = {**os.environ, "REDIS_URL": redis_url}
    server = subprocess.Popen([*command, address], env=env, stdout=stdout,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as response:
                    assert json.load(response) == {"status": "ready"}
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


SERVE = [sys.executable, "-m", "api", "serve", "--workers", "1", "--port"]


@pytest.mark.parametrize("command", [
    SERVE, [GUNICORN, "api.app:create_app()", "--workers", "1", "--bind"],
], ids=["offers serve", "gunicorn factory"])
def test_the_app_answers_over_http_under_gunicorn(redis_url, command):
    with serving(command, redis_url):
        pass


def test_the_access_log_names_no_driver(redis_url, fleet, tmp_path):
    """A driver's own id is in the path of their preferences and their erasure; the engine
    keeps drivers only pseudonymously, and its log too."""
    log = tmp_path / "access.log"
    with log.open("wb") as out, serving(SERVE, redis_url, stdout=out) as port:
        for method, path, body in [
                ("PUT", "/v1/drivers/alice.smith%40example.com/preferences", b'{"bar": "gt8"}'),
                ("GET", "/v1/drivers/alice.smith%40example.com/preferences?x=1", None),
                ("GET", "/v1/%64rivers/alice.smith%40example.com/preferences", None),
                ("DELETE", "/v1/drivers/alice.smith%40example.com", None)]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", data=body, method=method,
                headers={**fleet[1], "Content-Type": "application/json",
                         "Referer": f"http://example.com{path}"})
            with urllib.request.urlopen(request) as response:
                assert response.status in (200, 204)
    lines = log.read_text().splitlines()
    assert [line.split('"')[1] for line in lines if "/v1/" in line] == [
        "PUT /v1/drivers/-/preferences HTTP/1.1", "GET /v1/drivers/-/preferences?x=1 HTTP/1.1",
        "GET /v1/drivers/-/preferences HTTP/1.1", "DELETE /v1/drivers/- HTTP/1.1"]
    assert not any("alice" in line for line in lines)


@pytest.mark.parametrize("command", [
    SERVE, [GUNICORN, "api.app:create_app()", "--workers", "1", "--logger-class",
            "api.access_log.AccessLogWithoutDrivers", "--bind"],
], ids=["offers serve", "the README's gunicorn line"])
def test_what_gunicorn_refuses_itself_is_answered_in_the_error_shape(redis_url, command):
    """A request line or headers over gunicorn's limits never reach the app: gunicorn answered
    them with an HTML page."""
    with serving(command, redis_url) as port:
        for path, headers, status in [
                ("/v1/places?name=" + "x" * 5000, {}, 414),
                ("/healthz", {f"X-Header-{i}": "1" for i in range(120)}, 431)]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)
            assert refused.value.code == status
            assert refused.value.headers["Content-Type"] == "application/json"
            body = json.load(refused.value)
            assert set(body) == {"code", "status", "message", "errors"}
            assert body["code"] == status


def test_reindex_rebuilds_a_lost_geo_index(run, redis_client):
    run("seed")
    search = {"lat": 39.74, "lng": -104.99, "radius": 3000}
    from offers.search import PlaceSearch

    before = PlaceSearch(redis_client).nearby(search["lat"], search["lng"], search["radius"], 50)
    for key in list(redis_client.scan_iter(match="{g:*")):
        redis_client.delete(key)
    assert PlaceSearch(redis_client).nearby(39.74, -104.99, 3000, 50) == []
    result = run("reindex")
    assert result.exit_code == 0 and "filed" in result.output
    assert PlaceSearch(redis_client).nearby(39.74, -104.99, 3000, 50) == before
    assert before
