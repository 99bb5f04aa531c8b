"""Deleting keys by pattern: SCAN in batches and UNLINK each batch, so Redis never blocks on
a KEYS call or one huge delete. For maintenance (reindexing, forgetting a driver), never for
a request's hot path."""

from __future__ import annotations

from redis import Redis

BATCH = 1000


def unlink_matching(redis: Redis, pattern: str, keep: str | None = None) -> None:
    """Unlink every key matching `pattern` but `keep`."""
    batch = []
    kept = keep.encode() if keep is not None else None
    for key in redis.scan_iter(match=pattern, count=BATCH):
        if key == kept:
            continue
        batch.append(key)
        if len(batch) == BATCH:
            redis.unlink(*batch)
            batch = []
    if batch:
        redis.unlink(*batch)
