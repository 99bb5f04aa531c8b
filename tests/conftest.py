"""Fixtures: a real Redis for every test (REDIS_URL, or a throwaway redis-server started here),
emptied before each test, and an app wired to it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from api.app import create_app
from offers.redis_server import RedisServer

ADMIN_TOKEN = "test-admin-token"
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


def redis_snapshot(client: redis.Redis) -> dict:
    """Every key's serialized value: equal snapshots mean nothing was written."""
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


CAFE = {"name": "Café Aalto", "category": "cafe", "lat": 60.1699, "lng": 24.9384,
        "opening_hours": "Mo-Fr 07:00-20:00; Sa 08:00-14:00; Su off",
        "attributes": {"cuisine": ["coffee"], "price_level": 2}}
FUEL = {"name": "Neste Kamppi", "category": "fuel", "brand": "Neste", "lat": 60.1680,
        "lng": 24.9310, "opening_hours": "24/7",
        "attributes": {"fuel_types": ["diesel", "petrol"]}}


def years_from_now(years: float) -> str:
    """An ISO time relative to today, so tests do not start failing on a fixed date."""
    return (datetime.now(UTC) + timedelta(days=365 * years)).isoformat(timespec="seconds")
