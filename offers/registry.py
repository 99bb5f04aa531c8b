"""Merchants, fleets and their API keys.

An API key is shown once, when its owner is created, and only its SHA-256 is stored: a dump of
Redis never yields a usable key. The admin token is configuration, not data, and is checked in
`api/auth.py`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from redis import Redis

from . import keys


@dataclass(frozen=True)
class Principal:
    """Who is calling: `role` is admin, merchant or fleet; `id` is the merchant or fleet id."""

    role: str
    id: str


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_id(prefix: str) -> str:
    # 10 url-safe lowercase characters: ~50 bits, plenty for merchants and fleets.
    return f"{prefix}_{secrets.token_hex(5)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(self, redis: Redis):
        self.redis = redis

    def create_merchant(self, name: str, merchant_id: str | None = None) -> tuple[dict, str]:
        """Create (or, given an existing id, re-key) a merchant; returns its record and API key."""
        return self._create("merchant", keys.MERCHANTS, name, merchant_id or new_id("m"))

    def create_fleet(self, name: str, fleet_id: str | None = None) -> tuple[dict, str]:
        return self._create("fleet", keys.FLEETS, name, fleet_id or new_id("f"))

    def _create(self, role: str, registry_key: str, name: str, object_id: str) -> tuple[dict, str]:
        api_key = f"{role[0]}k_{secrets.token_urlsafe(24)}"
        now = _now()
        record = {"id": object_id, "name": name, "created_at": now,
                  "key_hash": hash_api_key(api_key)}

        def write(pipe) -> None:
            # Watched: two re-keyings at once must not both leave their key working.
            previous = pipe.hget(registry_key, object_id)
            pipe.multi()
            record["created_at"] = now
            if previous:
                # Re-keying (e.g. re-seeding the demo) revokes the old key.
                old = orjson.loads(previous)
                pipe.hdel(keys.API_KEYS, old["key_hash"])
                record["created_at"] = old["created_at"]
            pipe.hset(registry_key, object_id, orjson.dumps(record))
            principal = {"role": role, "id": object_id}
            pipe.hset(keys.API_KEYS, record["key_hash"], orjson.dumps(principal))
            if role == "fleet":  # its drivers' pseudonyms are keyed with the deployment's secret
                pipe.set(keys.DRIVER_KEY_SECRET, secrets.token_hex(32), nx=True)

        self.redis.transaction(write, registry_key)
        return {k: v for k, v in record.items() if k != "key_hash"}, api_key

    def principal_for(self, api_key: str) -> Principal | None:
        raw = self.redis.hget(keys.API_KEYS, hash_api_key(api_key))
        if raw is None:
            return None
        found = orjson.loads(raw)
        return Principal(role=found["role"], id=found["id"])

    def merchant_exists(self, merchant_id: str) -> bool:
        return bool(self.redis.hexists(keys.MERCHANTS, merchant_id))
