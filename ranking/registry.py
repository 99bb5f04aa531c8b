"""The model registry in Redis: published versions, the active one, and rollback.

A version is a trained model directory (`ranking.training.RankingModel.save`: the estimator as
skops, the prior as JSON), stored file by file. Serving reads the active version's name in the
round trip it already makes for the driver's profile, and loads a version it has not seen yet
once per process (with skops' type check: nothing is ever unpickled), so activating a version
switches every worker on its next request, without a restart. Next to the active version,
activation writes a pointer naming it and a digest of its files (`v3@<digest>`), and a process
keeps what it loaded under that pointer: a registry rebuilt from nothing (a Redis restarted
empty, models published again from v1) can never have a worker serve what it loaded under the
old name. The active version stays a bare name, as releases before the pointer read it.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import orjson
from redis import Redis, WatchError

from offers import keys
from offers.errors import Invalid, NotFound

from .learned import LearnedRanker
from .training import RankingModel

MODEL_FILES = ("global.skops", "model.json")
HISTORY_LENGTH = 100
LOADED_VERSIONS = 4
FAILED_LOAD_RETRY_S = 30.0


class UnknownModel(NotFound):
    """No such model version."""

    def __init__(self, version: str):
        super().__init__(f"No model version {version!r}.")


class ModelRegistry:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._loaded: dict[str, LearnedRanker] = {}
        self._failed: dict[str, tuple[float, Exception]] = {}  # pointer -> (when, why)

    def publish(self, directory: str | Path, note: str = "") -> str:
        """Store a trained model directory as a new version (not yet active); its name."""
        directory = Path(directory)
        model = RankingModel.load(directory)  # refuses anything it would not serve
        files = {name: (directory / name).read_bytes() for name in MODEL_FILES}
        version = f"v{self.redis.incr(keys.MODEL_SEQUENCE)}"
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.MODEL_FILES, mapping={f"{version}/{n}": b for n, b in files.items()})
            pipe.hset(keys.MODEL_META, version, orjson.dumps({
                "version": version, "published_at": time.time(), "note": note,
                "info": model.info}))
            pipe.execute()
        return version

    def versions(self) -> list[dict]:
        active = self.active_version()
        metas = [orjson.loads(raw) for raw in self.redis.hvals(keys.MODEL_META)]
        for meta in metas:
            meta["active"] = meta["version"] == active
        return sorted(metas, key=lambda m: int(m["version"][1:]))

    def activate(self, version: str) -> dict:
        raw = self.redis.hget(keys.MODEL_META, version)
        if raw is None:
            raise UnknownModel(version)
        pointer = self._check_loads(version)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.MODEL_ACTIVE, version)
            pipe.set(keys.MODEL_SERVING, pointer)
            pipe.lpush(keys.MODEL_HISTORY, version)
            pipe.ltrim(keys.MODEL_HISTORY, 0, HISTORY_LENGTH - 1)
            pipe.execute()
        return {**orjson.loads(raw), "active": True}

    def rollback(self) -> dict:
        """Re-activate the version that was active before the current one, taking the
        current one's turn off the history: rolling back again goes further back (after v1,
        v2 and v3 were activated, rollbacks give v2, then v1), as an undo does."""
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(keys.MODEL_HISTORY, keys.MODEL_ACTIVE)
                    history = [v.decode() for v in pipe.lrange(keys.MODEL_HISTORY, 0, -1)]
                    current = pipe.get(keys.MODEL_ACTIVE)
                    current = current.decode() if current else None
                    turns = 0  # the current version's latest turns, newest first
                    while turns < len(history) and history[turns] == current:
                        turns += 1
                    if turns == len(history):
                        raise NotFound("No earlier model version to roll back to.")
                    version = history[turns]
                    pointer = self._check_loads(version)
                    meta = pipe.hget(keys.MODEL_META, version)
                    pipe.multi()
                    pipe.set(keys.MODEL_ACTIVE, version)
                    pipe.set(keys.MODEL_SERVING, pointer)
                    pipe.ltrim(keys.MODEL_HISTORY, turns, -1)
                    pipe.execute()
                    return {**orjson.loads(meta), "active": True}
                except WatchError:
                    continue

    def _check_loads(self, version: str) -> str:
        """Load a version here first: one that cannot load and score never serves (422). Its
        pointer (kept loaded: this process serves it next)."""
        try:
            ranker = self._load(version)
        except ValueError as error:
            raise Invalid(f"Model version {version!r} cannot be served: {error}") from None
        self._keep(ranker.pointer, ranker)
        return ranker.pointer

    def active_pointer(self) -> str | None:
        """What serving loads (`ranker`): the active version and its files' digest."""
        return self.pointer_from(self.redis.mget(keys.MODEL_ACTIVE, keys.MODEL_SERVING))

    def active_version(self) -> str | None:
        raw = self.redis.get(keys.MODEL_ACTIVE)
        return raw.decode() if raw else None

    @staticmethod
    def active_command(pipe) -> None:
        """Queue the read of the active version and its pointer on `pipe` (to share a round
        trip); `pointer_from` reads the reply."""
        pipe.mget(keys.MODEL_ACTIVE, keys.MODEL_SERVING)

    @staticmethod
    def pointer_from(reply: list) -> str | None:
        """The pointer to serve, from the active version and the pointer activation wrote
        with it; the bare version when the pointer names another one (a release before
        pointers activated it: a rolling upgrade), None when no version is active."""
        active, serving = (raw.decode() if raw else None for raw in reply)
        if active is None:
            return None
        return serving if serving and version_of(serving) == active else active

    def ranker(self, pointer: str) -> LearnedRanker:
        """The ranker a pointer names (`v3@<digest>`, or a bare version), loaded once per
        process. One that cannot be loaded is tried again only after FAILED_LOAD_RETRY_S: a
        version an earlier release activated, which this one cannot load, would otherwise
        cost every request a fetch of its files and a failed load."""
        ranker = self._loaded.get(pointer)
        if ranker is None:
            failed = self._failed.get(pointer)
            if failed is not None and time.monotonic() - failed[0] < FAILED_LOAD_RETRY_S:
                raise failed[1]
            try:
                ranker = self._load(version_of(pointer))
                if pointer not in (ranker.pointer, ranker.version):
                    raise ValueError(
                        f"the files of {ranker.version} are not the ones activated")
            except (ValueError, UnknownModel) as error:
                if len(self._failed) >= LOADED_VERSIONS:
                    self._failed.pop(next(iter(self._failed)))
                self._failed[pointer] = (time.monotonic(), error)
                raise
            self._failed.pop(pointer, None)
            self._keep(pointer, ranker)
        return ranker

    def _keep(self, pointer: str, ranker: LearnedRanker) -> None:
        if len(self._loaded) >= LOADED_VERSIONS:  # versions stay small, but not forever
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[pointer] = ranker

    def _load(self, version: str) -> LearnedRanker:
        names = [f"{version}/{n}" for n in MODEL_FILES]
        blobs = self.redis.hmget(keys.MODEL_FILES, names)
        if any(b is None for b in blobs):
            raise UnknownModel(version)
        digest = hashlib.sha256()
        for blob in blobs:
            digest.update(hashlib.sha256(blob).digest())
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            for name, blob in zip(MODEL_FILES, blobs, strict=True):
                (Path(tmp) / name).write_bytes(blob)
            try:
                model = RankingModel.load(tmp)
            except ValueError:
                raise
            except Exception as error:  # files damaged in Redis: not a zip, not JSON...
                raise ValueError(f"its stored files cannot be read ({error})") from None
        ranker = LearnedRanker(model, version, f"{version}@{digest.hexdigest()[:16]}")
        ranker.check_serves()  # loads but cannot score: refused, as if it could not load
        return ranker


def version_of(pointer: str) -> str:
    """The version an active pointer names."""
    return pointer.split("@", 1)[0]
