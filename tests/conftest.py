"""Fixtures: a real Redis for every test (REDIS_URL, or a throwaway redis-server started here),
emptied before each test, and an app wired to it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis

from api.app import create_app
from geo.route import RouteError, route_from_points
from offers.redis_server import RedisServer
from ranking.datasets import Dataset
from ranking.features import ENUM_FIELDS, RAW_FIELDS
from ranking.model import AcceptanceModel
from ranking.registry import ModelRegistry
from ranking.training import train

ADMIN_TOKEN = "test-admin-token"
# No index repair behind the tests' backs, in any app a test makes or server it starts (the
# repair's own tests ask for it: tests/test_index_repair.py).
os.environ["OFFERS_INDEX_REPAIR_S"] = "0"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def redis_url():
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app(redis_client, redis_url):
    # Greedy: tests of ranking see one order; exploration has tests of its own.
    return create_app({"REDIS_URL": redis_url, "OFFERS_ADMIN_TOKEN": ADMIN_TOKEN,
                       "TESTING": True, "OFFERS_EXPLORATION": "greedy"})


@pytest.fixture
def client(app):
    return app.test_client()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin():
    return bearer(ADMIN_TOKEN)


@pytest.fixture
def new_account(client, admin):
    """Create a merchant or fleet through the API; returns (id, auth headers)."""

    def create(kind: str = "merchants", name: str = "Test") -> tuple[str, dict]:
        response = client.post(f"/v1/{kind}", json={"name": name}, headers=admin)
        assert response.status_code == 201, response.json
        return response.json["id"], bearer(response.json["api_key"])

    return create


@pytest.fixture
def merchant(new_account):
    return new_account("merchants", "Merchant A")


@pytest.fixture
def fleet(new_account):
    return new_account("fleets", "Fleet A")


def drawn_route(lat, lng):
    """The route of vertices a property test drew, or None where it is no route: fewer than
    2 points a millimetre apart on the earth (`geo.route.DISTINCT_M`; refused with a 422,
    tests/test_geo_route.py)."""
    try:
        return route_from_points(lat, lng)
    except RouteError as error:
        if "2 distinct" in str(error):
            return None
        raise


def redis_snapshot(client: redis.Redis) -> dict:
    """Every key's type, contents and expiry time: equal snapshots mean nothing was written.
    Contents rather than DUMP's bytes, which a read can reorder (it moves a hash's incremental
    rehash along) and which leave the expiry out."""
    contents = {b"string": client.get, b"hash": client.hgetall, b"set": client.smembers,
                b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
                b"list": lambda key: client.lrange(key, 0, -1), b"stream": client.xrange}
    snapshot = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        snapshot[key] = kind, contents[kind](key), client.pexpiretime(key)
    return snapshot


CAFE = {"name": "Café Aalto", "category": "cafe", "lat": 60.1699, "lng": 24.9384,
        "opening_hours": "Mo-Fr 07:00-20:00; Sa 08:00-14:00; Su off",
        "attributes": {"cuisine": ["coffee"], "price_level": 2}}
FUEL = {"name": "Neste Kamppi", "category": "fuel", "brand": "Neste", "lat": 60.1680,
        "lng": 24.9310, "opening_hours": "24/7",
        "attributes": {"fuel_types": ["diesel", "petrol"]}}


def years_from_now(years: float) -> str:
    """An ISO time relative to today, so tests do not start failing on a fixed date."""
    return (datetime.now(UTC) + timedelta(days=365 * years)).isoformat(timespec="seconds")


# -- a small ranking model, trained here (no shared data needed) ------------------------------

TASTED = ("cafe", "fast_food", "restaurant", "bar", "fuel")


def synthetic_survey(drivers: int = 40, rows: int = 30, seed: int = 4) -> Dataset:
    """Drivers who differ in which categories they take, in random situations."""
    rng = np.random.default_rng(seed)
    n = drivers * rows
    raw = {}
    for name in RAW_FIELDS:
        if name in ENUM_FIELDS:
            raw[name] = rng.integers(-1, len(ENUM_FIELDS[name]), n)
        else:
            raw[name] = rng.uniform(0, 100, n)
    raw["arrival_hour"] = rng.uniform(0, 24, n)
    raw["arrival_weekday"] = rng.integers(0, 7, n)
    raw["brand"] = rng.integers(0, 2**32, n).astype(np.uint64)
    raw["price_level"] = rng.integers(0, 5, n)
    raw["ahead"] = np.ones(n)
    categories = [ENUM_FIELDS["category"].index(c) for c in TASTED]
    raw["category"] = rng.choice(categories, n)
    taste = rng.normal(0, 1.5, (drivers, max(categories) + 1))
    driver = np.repeat(np.arange(drivers), rows)
    logit = taste[driver, raw["category"]] - 0.01 * raw["detour_s"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return Dataset(raw, np.array([f"d{d}" for d in driver]), y, np.arange(n))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    train(synthetic_survey(), AcceptanceModel(max_iter=30), inner_folds=3).save(directory)
    return directory


@pytest.fixture
def active_model(redis_client, model_dir, client, admin):
    version = ModelRegistry(redis_client).publish(model_dir, note="test")
    response = client.post(f"/v1/models/{version}/activate", headers=admin)
    assert response.status_code == 200, response.json
    return version
