"""Deleting keys by pattern: SCAN in batches and UNLINK each batch, so Redis never blocks on
a KEYS call or one huge delete. For maintenance (reindexing), never for
a request's hot path."""

from __future__ import annotations

from redis import Redis

BATCH = 1000


def unlink_matching(redis: Redis, pattern: str) -> None:
    """Unlink every key matching `pattern`."""
    batch = []
    for key in redis.scan_iter(match=pattern, count=BATCH):
        batch.append(key)
        if len(batch) == BATCH:
            redis.unlink(*batch)
            batch = []
    if batch:
        redis.unlink(*batch)
