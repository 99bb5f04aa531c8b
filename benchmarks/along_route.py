"""Benchmark of search along a route and of recommendations, with baselines from the same run.

    .venv/bin/python -m benchmarks.along_route [--places 200000 1000000]
        [--routes-km 10 50 200] [--queries 200] [--out FILE.json] [--postgres-dsn DSN]

The run works on a copy of the code taken when it starts (api/, geo/, offers/, ranking/), so a
long run, and the gunicorn it starts later, measure one version even if the working tree
changes meanwhile; the JSON records its git commit and a hash of its files.

For each catalogue size it starts a throwaway redis-server (never the one on :6379), writes a
synthetic catalogue (`benchmarks.synthetic`) through the real code path, `Catalogue.add_places`
in chunks of 10,000 and `Catalogue.add_offer` one offer at a time, and measures:

- build rate (places/s) and Redis memory per place (`INFO memory` used_memory delta);
- latency, per route length, of
  (a) `PlaceSearch.along_route(route, corridor, 1000)` in-process; the same call answering
      place ids instead of documents (`along_route_ids`); and the same without a limit
      (`along_route_all`: every place in the corridor, the like-for-like of the baselines);
      and POST /v1/places/search-along-route (limit 1000) through the Flask test client
      (`along_route_endpoint`: parsing the body, the search and writing the JSON answer);
  (b) POST /v1/recommendations through the Flask test client (fleet key, position at the
      route start, limit 10);
  (c) the same over HTTP against gunicorn with one worker (sequential requests from one
      keep-alive client; the default sync worker closes each connection, so a gthread worker
      with keep-alive is measured too), checking each answer equals the in-process one;
- the baselines on the same places and routes: Redis GEOSEARCH sampled along the route with an
  exact filter, a numpy scan (bounding box, then `Route.locate`) and PostGIS (`ST_DWithin`, whole
  route and route pieces) when PostgreSQL with PostGIS is reachable;
- that every method finds the same places as `along_route` without a limit (GEOSEARCH and
  PostGIS within 1 m of the corridor's edge, reported separately: their coordinates and
  distances differ from the exact geodesic ones by centimetres to a metre).

Every search latency includes turning the GeoJSON route into a `Route`
(`geo.route.route_from_geojson`, which checks the input and calls `route_from_points`), as a
request pays it; PostGIS is given the vertices instead. The report is a table on stdout and a
JSON file with the machine, the command line, every latency and every count.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import http.client
import json
import os
import platform
import pstats
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import redis

from api.app import DEFAULTS, create_app
from geo import cells as geo_cells
from geo.cells import corridor_cells
from geo.route import Route, route_from_geojson
from offers import keys
from offers.catalogue import Catalogue
from offers.geo_index import GeoIndex
from offers.redis_server import RedisServer, free_port
from offers.registry import Registry
from offers.search import PlaceSearch
from offers.serving import OfferServing, Trip
from ranking.registry import ModelRegistry

from . import synthetic
from .baselines import GEO_KEY, GeoSearchBaseline, NumpyBaseline, PostgisBaseline

REPO = Path(__file__).resolve().parent.parent
PLACES_CHUNK = 10_000
BOUNDARY_TOLERANCE_M = 1.0
DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3"
PRODUCT_PACKAGES = ("api/", "geo/", "offers/", "ranking/")
SNAPSHOT_ENV = "BENCH_CODE_STATE"  # set in the child that runs on a snapshot of the code
# Methods that measure with the exact coordinates, so their order along the route must match.
ORDER_EXACT_METHODS = ("along_route", "along_route_ids", "along_route_all",
                       "along_route_endpoint", "numpy")
# answer at most --limit places
LIMITED_METHODS = ("along_route", "along_route_ids", "along_route_endpoint")
UNLIMITED = 10**9
# Greedy, so the in-process and HTTP answers can be compared offer for offer.
EXPLORATION = "greedy"
DEFAULT_EXPLORATION = DEFAULTS["OFFERS_EXPLORATION"]  # also timed in-process (thompson:32)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.along_route",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--places", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--routes-km", type=float, nargs="+", default=[10, 50, 200])
    parser.add_argument("--queries", type=int, default=200, help="routes per length")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per method")
    parser.add_argument("--corridor-m", type=float, default=1000.0)
    parser.add_argument("--limit", type=int, default=1000, help="along_route limit")
    parser.add_argument("--recommend-limit", type=int, default=10)
    parser.add_argument("--region-km", type=float, default=300.0)
    parser.add_argument("--far-copies", type=int, nargs="+", default=[0],
                        help="also run each size with K more copies of its places in regions "
                             "far from every route (a catalogue K+1 times larger with the same "
                             "corridors)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--route-start", choices=("towns", "anywhere"), default="towns",
                        help="routes start in a town chosen by size, or anywhere")
    parser.add_argument("--postgres-dsn", default=DEFAULT_DSN)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--model", type=Path, metavar="MODEL_DIR",
                        help="publish and activate this trained ranking model before the "
                             "recommendation runs (otherwise the baseline ranker serves)")
    parser.add_argument("--report", type=Path, metavar="FILE.json",
                        help="print the tables of an earlier run's JSON and exit")
    parser.add_argument("--live-code", action="store_true",
                        help="run on the working tree instead of a snapshot of it")
    parser.add_argument("--profile-queries", type=int, default=100,
                        help="in-process recommendations profiled with cProfile")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" /
                        "along_route.json")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- machine and versions ----------------------------------------------------------------------

def _command(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, cwd=REPO,
                              check=False).stdout.strip()
    except OSError:
        return ""


def machine_info() -> dict:
    cpu = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import h3
    import pyproj
    import scipy

    memory = ""
    with open("/proc/meminfo") as meminfo:
        memory = meminfo.readline().split(":", 1)[1].strip()
    return {"nproc": _command("nproc"), "cpu_model": cpu, "memory": memory,
            "platform": platform.platform(), "python": sys.version.split()[0],
            "numpy": np.__version__, "scipy": scipy.__version__, "h3": h3.__version__,
            "pyproj": pyproj.__version__, "redis_py": redis.__version__}


# -- timing ------------------------------------------------------------------------------------

def summary(latencies_ms: list[float]) -> dict:
    values = np.asarray(latencies_ms)
    if values.size == 0:
        return {}
    return {"n": int(values.size), "p50_ms": float(np.percentile(values, 50)),
            "p90_ms": float(np.percentile(values, 90)),
            "p99_ms": float(np.percentile(values, 99)), "mean_ms": float(values.mean()),
            "min_ms": float(values.min()), "max_ms": float(values.max())}


def measure(call: Callable, inputs: list, warmup: int,
            keep: Callable = lambda result: result) -> tuple[list[float], list]:
    """Call once per input (after `warmup` untimed calls); latencies in ms and, untimed,
    `keep(result)` of each call (kept small so the harness does not load the GC)."""
    for item in inputs[:warmup]:
        call(item)
    latencies, results = [], []
    for item in inputs:
        start = time.perf_counter()
        result = call(item)
        latencies.append((time.perf_counter() - start) * 1000)
        results.append(keep(result))
    return latencies, results


# -- building the catalogue --------------------------------------------------------------------

def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def key_family(key: bytes) -> str:
    text = key.decode()
    if text.startswith("{g:"):
        if ":cells:" in text:
            return "geo index: cell versions"
        return "geo index: place cells" if ":places:" in text else "geo index: offer cells"
    if text.startswith("{m:"):
        if text.endswith(":places"):
            return "catalogue: place documents"
        if text.endswith(":place_ids"):
            return "catalogue: place id sets"
        if text.endswith(":offers"):
            return "catalogue: offer documents"
        if text.endswith(":offer_ids"):
            return "catalogue: offer id sets"
        if text.endswith(":terms"):
            return "catalogue: offer terms"
    if text == keys.SERVING_MASKS:
        return "geo index: serving masks"
    if text == GEO_KEY:
        return "baseline: GEOADD key"
    return "other"


def memory_breakdown(client: redis.Redis) -> dict[str, dict]:
    """MEMORY USAGE (all samples) of every key, summed by what the key holds."""
    families: dict[str, dict] = {}
    batch: list[bytes] = []

    def flush() -> None:
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
        for key, size in zip(batch, sizes, strict=True):
            family = families.setdefault(key_family(key), {"keys": 0, "bytes": 0})
            family["keys"] += 1
            family["bytes"] += int(size or 0)
        batch.clear()

    for key in client.scan_iter(count=10_000):
        batch.append(key)
        if len(batch) == 5_000:
            flush()
    flush()
    return dict(sorted(families.items()))


def build_catalogue(client: redis.Redis, catalogue: synthetic.Catalogue,
                    offers: list[tuple[str, dict]]) -> dict:
    """Write places (add_places, chunks of 10,000) and offers (add_offer, one by one)."""
    writer = Catalogue(client)
    before = used_memory(client)
    start = time.perf_counter()
    for merchant, docs in catalogue.places.items():
        for first in range(0, len(docs), PLACES_CHUNK):
            writer.add_places(merchant, docs[first:first + PLACES_CHUNK])
    places_s = time.perf_counter() - start
    log(f"  places written in {places_s:.1f} s; writing {len(offers):,} offers")
    start = time.perf_counter()
    for merchant, offer in offers:
        writer.add_offer(merchant, offer)
    offers_s = time.perf_counter() - start
    after = used_memory(client)
    n = len(catalogue.place_id)
    records = sum(len(offer["place_ids"]) for _, offer in offers)
    return {
        "places": n, "offers": len(offers), "offer_records": records,
        "places_path": f"Catalogue.add_places, chunks of {PLACES_CHUNK:,}",
        "offers_path": "Catalogue.add_offer, one offer per call",
        "places_s": places_s, "offers_s": offers_s,
        "places_per_s": n / places_s, "offers_per_s": len(offers) / offers_s,
        "offer_records_per_s": records / offers_s,
        "catalogue_places_per_s": n / (places_s + offers_s),
        "used_memory_before": before, "used_memory_after": after,
        "memory_bytes_per_place": (after - before) / n,
    }


def release_documents(catalogue: synthetic.Catalogue, offers: list) -> None:
    """Drop the generated documents (millions of dicts) once written, and freeze what is left:
    otherwise every full garbage collection during the timed loops walks them, adding pauses
    of tens of milliseconds that belong to the harness, not to the code measured."""
    catalogue.places.clear()
    offers.clear()
    gc.collect()
    gc.freeze()


def create_accounts(client: redis.Redis) -> str:
    registry = Registry(client)
    for merchant in synthetic.merchant_ids():
        registry.create_merchant(f"Bench merchant {merchant[3:]}", merchant)
    _, fleet_key = registry.create_fleet("Bench fleet", "f_bench")
    return fleet_key


# -- the search methods ------------------------------------------------------------------------

class IdsOnlySearch(PlaceSearch):
    """`PlaceSearch` exactly as it is, except that an answer is the ordered place ids instead
    of documents: `along_route` without its last round trip (the documents) and the dicts."""

    def _answer(self, records: np.ndarray, measures: dict, limit: int) -> np.ndarray:
        return records["place_id"][:limit]


def stage_times(client: redis.Redis, lines: list[dict], corridor_m: float) -> dict:
    """The fixed steps of a retrieval timed one by one (p50 ms): parsing the route, choosing
    its cells, and reading the place cells (a search) and the offer cells (a recommendation)
    into a new index (nothing cached: every cell from Redis), then the offer cells again (each
    cell's version checked, its records from memory), with the bytes of records each read
    returns. The rest of a query is its numpy work."""
    times: dict[str, list[float]] = {k: [] for k in (
        "parse_route", "corridor_cells", "read_place_cells", "read_offer_cells",
        "read_offer_cells_cached")}
    sizes: dict[str, list[int]] = {"place_bytes": [], "offer_bytes": []}
    for line in lines:
        marks = [time.perf_counter()]
        route = route_from_geojson(line)
        marks.append(time.perf_counter())
        cells = corridor_cells(route, corridor_m)
        index = GeoIndex(client)
        marks.append(time.perf_counter())
        places = index.places_in(cells)
        marks.append(time.perf_counter())
        offers = index.offers_in(cells)
        marks.append(time.perf_counter())
        index.offers_in(cells)
        marks.append(time.perf_counter())
        for name, begin, end in zip(times, marks[:-1], marks[1:], strict=True):
            times[name].append((end - begin) * 1000)
        sizes["place_bytes"].append(places.nbytes)
        sizes["offer_bytes"].append(offers.nbytes)
    return {"p50_ms": {k: float(np.median(v)) for k, v in times.items()},
            "mean_bytes": {k: float(np.mean(v)) for k, v in sizes.items()}}


def _vertices(line: dict) -> tuple[np.ndarray, np.ndarray]:
    coords = np.asarray(line["coordinates"], dtype=float)
    return coords[:, 1], coords[:, 0]


def search_endpoint(redis_url: str, key: str, corridor_m: float,
                    limit: int) -> Callable[[dict], list]:
    """POST /v1/places/search-along-route through the Flask test client: its answer's items."""
    client = create_app({"REDIS_URL": redis_url}).test_client()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(line: dict) -> list:
        response = client.post("/v1/places/search-along-route", headers=headers,
                               data=orjson.dumps({"route": line, "corridor_m": corridor_m,
                                                  "limit": limit}))
        if response.status_code != 200:
            raise RuntimeError(f"search failed with {response.status_code}: "
                               f"{response.get_data()[:500]!r}")
        return orjson.loads(response.get_data())["items"]

    return call


def search_methods(client: redis.Redis, redis_url: str, key: str,
                   geosearch: GeoSearchBaseline, scan: NumpyBaseline,
                   postgis: PostgisBaseline | None, corridor_m: float,
                   limit: int) -> dict[str, Callable[[dict], object]]:
    search, ids_only = PlaceSearch(client), IdsOnlySearch(client)
    methods = {
        "route_parse": route_from_geojson,
        "along_route": lambda line: search.along_route(route_from_geojson(line), corridor_m,
                                                       limit),
        "along_route_ids": lambda line: ids_only.along_route(route_from_geojson(line),
                                                             corridor_m, limit),
        "along_route_all": lambda line: ids_only.along_route(route_from_geojson(line),
                                                             corridor_m, UNLIMITED),
        "along_route_endpoint": search_endpoint(redis_url, key, corridor_m, limit),
        "geosearch": lambda line: geosearch.along(route_from_geojson(line), corridor_m),
        "numpy": lambda line: scan.along(route_from_geojson(line), corridor_m),
    }
    if postgis is not None:
        methods["postgis_dwithin"] = lambda line: postgis.along(*_vertices(line), corridor_m)
        methods["postgis_pieces"] = lambda line: postgis.along_pieces(*_vertices(line),
                                                                      corridor_m)
    return methods


def _kept(method: str, result):
    """What verification needs of a result: its place ids in order (and a baseline's counts)."""
    if method == "route_parse":
        return None
    if method in ("along_route", "along_route_endpoint"):
        return [item["place_id"] for item in result]
    if method in ("along_route_ids", "along_route_all"):
        return [pid.decode() for pid in result]
    return [str(pid) for pid in result[0]], result[1]


def _ids(method: str, kept) -> list[str]:
    return kept if method.startswith("along_route") else kept[0]


class Verifier:
    """Checks every method's answer against `along_route` without a limit, and counts what each
    query read. A place found by one side only is a boundary case when its exact geodesic
    offset is within BOUNDARY_TOLERANCE_M of the corridor's edge, a mismatch otherwise."""

    def __init__(self, client: redis.Redis, catalogue: synthetic.Catalogue, corridor_m: float,
                 limit: int, at: datetime):
        self.search, self.serving = PlaceSearch(client), OfferServing(client)
        self.catalogue, self.corridor_m, self.limit, self.at = catalogue, corridor_m, limit, at
        self.row_of = {pid: i for i, pid in enumerate(catalogue.place_id.tolist())}

    def offsets(self, route: Route, ids) -> np.ndarray:
        rows = np.array([self.row_of[pid] for pid in ids], dtype=np.intp)
        return route.locate(self.catalogue.lat[rows], self.catalogue.lng[rows],
                            self.corridor_m + 1000).offset_m

    def check(self, lines: list[dict], results: dict[str, list]) -> dict:
        counts: dict[str, list] = {k: [] for k in (
            "route_km", "cells", "place_records_read", "places_in_corridor",
            "offer_records_read", "offer_candidates", "geosearch_samples", "geosearch_hits",
            "geosearch_candidates", "numpy_bbox_candidates")}
        checks = {m: {"identical": 0, "same_set_other_order": 0, "boundary_only": 0,
                      "boundary_places": 0, "mismatched_queries": 0, "mismatched_places": 0,
                      "worst_mismatch_m": 0.0}
                  for m in results if m != "route_parse"}
        for i, line in enumerate(lines):
            route = route_from_geojson(line)
            full = [item["place_id"] for item in
                    self.search.along_route(route, self.corridor_m, UNLIMITED)]
            self._count(counts, route, full, results, i)
            for method in checks:
                found = _ids(method, results[method][i])
                expected = full[: self.limit] if method in LIMITED_METHODS else full
                if method.startswith("postgis"):
                    found, expected = sorted(found), sorted(expected)
                self._compare(method, checks[method], route, found, expected)
        return {"counts": {k: v for k, v in counts.items() if v},
                "count_means": {k: float(np.mean(v)) for k, v in counts.items() if v},
                "checks": checks}

    def _count(self, counts: dict, route: Route, full: list[str], results: dict, i: int):
        cells = corridor_cells(route, self.corridor_m)
        counts["route_km"].append(route.length_m / 1000)
        counts["cells"].append(len(cells))
        counts["place_records_read"].append(len(self.search.index.places_in(cells)))
        counts["places_in_corridor"].append(len(full))
        counts["offer_records_read"].append(len(self.serving.index.offers_in(cells)))
        trip = Trip(lat=float(route.lat[0]), lng=float(route.lng[0]), at=self.at, route=route,
                    corridor_m=self.corridor_m)
        counts["offer_candidates"].append(len(self.serving.candidates(trip)[0]))
        if "geosearch" in results:
            geo = results["geosearch"][i][1]
            counts["geosearch_samples"].append(geo["samples"])
            counts["geosearch_hits"].append(geo["hits"])
            counts["geosearch_candidates"].append(geo["candidates"])
        if "numpy" in results:
            counts["numpy_bbox_candidates"].append(results["numpy"][i][1]["candidates"])

    def _compare(self, method: str, check: dict, route: Route, found: list[str],
                 expected: list[str]) -> None:
        if found == expected:
            check["identical"] += 1
            return
        differing = sorted(set(found) ^ set(expected))
        if not differing:
            # Same places in another order: GEOSEARCH's rounded coordinates can swap places
            # lying at (nearly) the same distance along; for exact methods it is a mismatch.
            if method in ORDER_EXACT_METHODS:
                check["mismatched_queries"] += 1
            else:
                check["same_set_other_order"] += 1
            return
        edge = np.abs(self.offsets(route, differing) - self.corridor_m)
        if (edge <= BOUNDARY_TOLERANCE_M).all():
            check["boundary_only"] += 1
            check["boundary_places"] += len(differing)
        else:
            check["mismatched_queries"] += 1
            check["mismatched_places"] += int((edge > BOUNDARY_TOLERANCE_M).sum())
            check["worst_mismatch_m"] = max(check["worst_mismatch_m"], float(edge.max()))


# -- recommendations ---------------------------------------------------------------------------

def next_wednesday_noon(now: datetime) -> datetime:
    """A fixed local time of week (Wednesday 12:00 in Denver) so opening hours filter alike
    on every run; the offers are valid for a year around the run."""
    local = now.astimezone(ZoneInfo(synthetic.TIMEZONE))
    days = (2 - local.weekday()) % 7 or 7
    return (local + timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)


def recommendation_bodies(lines: list[dict], at: datetime, corridor_m: float,
                          limit: int) -> list[bytes]:
    bodies = []
    for i, line in enumerate(lines):
        lng, lat = line["coordinates"][0]
        bodies.append(orjson.dumps({
            "driver_id": f"driver-{i % 100}", "route": line,
            "position": {"lat": lat, "lng": lng, "speed_kmh": 60},
            "corridor_m": corridor_m, "limit": limit, "at": at.isoformat(),
            "context": {"weather": "sunny", "passengers": "alone"}}))
    return bodies


def _answer(status: int, data: bytes) -> tuple[str, ...]:
    """The offer ids of a recommendation answer; anything but a 200 stops the benchmark."""
    if status != 200:
        raise RuntimeError(f"recommendation failed with {status}: {data[:500]!r}")
    return tuple(item["offer_id"] for item in orjson.loads(data)["items"])


def inprocess_client(redis_url: str, fleet_key: str, exploration: str = EXPLORATION,
                     cold: bool = False) -> Callable[[bytes], tuple[int, bytes]]:
    """POST /v1/recommendations through a new application's test client; `cold`: its first
    request (Flask's own first-request work, loading the ranking model) made in mid-Atlantic,
    far from every place, and the process's cell centres and disks forgotten: what it then
    answers, it answers with nothing of the region cached."""
    client = create_app({"REDIS_URL": redis_url,
                         "OFFERS_EXPLORATION": exploration}).test_client()
    headers = {"Authorization": f"Bearer {fleet_key}", "Content-Type": "application/json"}
    if cold:
        client.post("/v1/recommendations", headers=headers, json={
            "driver_id": "warm-up", "position": {"lat": 0.0, "lng": -30.0},
            "route": {"type": "LineString", "coordinates": [[-30.0, 0.0], [-29.99, 0.0]]}})
        geo_cells.forget_cached()

    def call(body: bytes) -> tuple[int, bytes]:
        response = client.post("/v1/recommendations", data=body, headers=headers)
        return response.status_code, response.get_data()

    return call


@contextmanager
def gunicorn(redis_url: str, extra: list[str]) -> Iterator[tuple[int, list[str]]]:
    """`gunicorn -w 1` serving `api.app:create_app()` on a free port, stopped afterwards."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "gunicorn"), "-w", "1", "-b",
               f"127.0.0.1:{port}", *extra, "api.app:create_app()"]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "REDIS_URL": redis_url,
                                                      "OFFERS_EXPLORATION": EXPLORATION},
                                   stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(port, process, output)
            yield port, command
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(port: int, process: subprocess.Popen, output, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"gunicorn exited: {output.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not come up")


def http_client(port: int, fleet_key: str) -> tuple[Callable[[bytes], tuple[int, bytes]], dict]:
    """One keep-alive connection (http.client reconnects when the server closes it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {fleet_key}", "Content-Type": "application/json"}
    stats = {"requests": 0, "server_closed": 0}

    def call(body: bytes) -> tuple[int, bytes]:
        connection.request("POST", "/v1/recommendations", body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        stats["requests"] += 1
        stats["server_closed"] += bool(response.will_close)
        return response.status, data

    return call, stats


def profile(call: Callable, inputs: list, top: int = 10) -> dict:
    """cProfile over calls in-process: the top entries by cumulative time (all, and in the
    project's own packages) and by own time, in ms per call."""
    profiler = cProfile.Profile()
    profiler.enable()
    for item in inputs:
        call(item)
    profiler.disable()
    bodies = inputs
    stats = pstats.Stats(profiler)
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        where = path.replace(str(REPO) + "/", "").replace(sys.prefix + "/", "")
        rows.append({"function": f"{where}:{line}({name})", "calls": calls,
                     "own_ms_per_request": own * 1000 / len(bodies),
                     "cumulative_ms_per_request": cumulative * 1000 / len(bodies)})
    by_cumulative = sorted(rows, key=lambda r: -r["cumulative_ms_per_request"])
    ours = [r for r in by_cumulative if r["function"].startswith(PRODUCT_PACKAGES)]
    by = {"cumulative": by_cumulative[:top], "product_cumulative": ours[:top + 5],
          "own": sorted(rows, key=lambda r: -r["own_ms_per_request"])[:top + 5]}
    return {"requests": len(bodies), **by}


# -- one catalogue size ------------------------------------------------------------------------

def setup_baselines(args, client: redis.Redis, catalogue: synthetic.Catalogue,
                    result: dict) -> tuple[GeoSearchBaseline, NumpyBaseline,
                                           PostgisBaseline | None]:
    before = used_memory(client)
    start = time.perf_counter()
    geosearch = GeoSearchBaseline(client)
    geosearch.load(catalogue.place_id, catalogue.lat, catalogue.lng)
    n = len(catalogue.place_id)
    result["geosearch_setup"] = {
        "geoadd_s": time.perf_counter() - start,
        "memory_bytes_per_place": (used_memory(client) - before) / n,
        "memory_usage_key_bytes": int(client.memory_usage(GEO_KEY, samples=0))}
    scan = NumpyBaseline(catalogue.place_id, catalogue.lat, catalogue.lng)
    postgis = None
    if args.no_postgres:
        result["postgis_setup"] = {"skipped": "--no-postgres"}
    else:
        try:
            postgis = PostgisBaseline(args.postgres_dsn)
            start = time.perf_counter()
            sizes = postgis.load(catalogue.place_id, catalogue.lat, catalogue.lng)
            result["postgis_setup"] = {"load_and_index_s": time.perf_counter() - start,
                                       "versions": postgis.versions, **sizes}
        except Exception as error:  # any reason PostGIS is unusable: skip, and say why
            result["postgis_setup"] = {"skipped": f"{type(error).__name__}: {error}"}
            log(f"  PostGIS skipped: {error}")
            postgis = None
    return geosearch, scan, postgis


def run_searches(args, client, redis_url, key, catalogue, routes, at, baselines) -> dict:
    methods = search_methods(client, redis_url, key, *baselines, args.corridor_m, args.limit)
    verifier = Verifier(client, catalogue, args.corridor_m, args.limit, at)
    out = {}
    for length, lines in routes.items():
        timings, results = {}, {}
        for name, call in methods.items():
            latencies, results[name] = measure(call, lines, args.warmup,
                                               lambda result, name=name: _kept(name, result))
            timings[name] = {"summary": summary(latencies), "latencies_ms": latencies}
            log(f"  {length:g} km {name}: p50 {timings[name]['summary']['p50_ms']:.2f} ms")
        checked = verifier.check(lines, results)
        out[f"{length:g}"] = {"timings": timings, **checked,
                              "stages": stage_times(client, lines, args.corridor_m),
                              "us_per_record": per_record(timings, checked["counts"])}
    middle = sorted(routes)[len(routes) // 2]
    profiled = {"route_km": middle, "call": f"along_route(route, corridor, {args.limit})",
                **profile(methods["along_route"], routes[middle][: args.profile_queries])}
    return out, profiled


def per_record(timings: dict, counts: dict) -> dict:
    """Median over queries of latency divided by what the query read: cost per candidate."""
    pairs = {"along_route_all": "place_records_read", "along_route": "place_records_read",
             "geosearch": "geosearch_hits", "numpy": "numpy_bbox_candidates"}
    out = {}
    for method, count in pairs.items():
        if method in timings and counts.get(count):
            latency = np.asarray(timings[method]["latencies_ms"])
            out[method] = float(np.median(1000 * latency / np.maximum(counts[count], 1)))
    return out


# A request that finds no candidate: a car in mid-Atlantic, no route (see `floor`).
NOTHING_NEARBY = orjson.dumps({"driver_id": "driver-0", "position": {"lat": 0.0, "lng": -30.0},
                               "radius_m": 2000, "context": {"weather": "sunny"}})


def floor(call: Callable[[bytes], tuple[int, bytes]], queries: int) -> dict:
    """What a recommendation costs before any candidate: `NOTHING_NEARBY`, answered with no
    items, through the same code but for the route (authentication, parsing, the driver and
    model, the index read, Flask; no route to parse or cover with cells, and since 34eef8e no
    served log to write): the latency the targets compare with starts above this."""
    latencies, answers = measure(call, [NOTHING_NEARBY] * queries, 20, lambda a: _answer(*a))
    if any(answers):
        raise RuntimeError("the floor's request found offers: it must find none")
    return summary(latencies)


def redis_round_trip(server_url: str, queries: int) -> dict:
    """redis-py's PING on this machine's loopback: the price of each round trip a request
    makes (a recommendation makes four or five)."""
    client = redis.Redis.from_url(server_url)
    latencies, _ = measure(lambda _: client.ping(), [None] * queries, 20)
    client.close()
    return summary(latencies)


def run_recommendations(args, server_url: str, fleet_key: str, routes: dict,
                        at: datetime) -> dict:
    bodies = {length: recommendation_bodies(lines, at, args.corridor_m, args.recommend_limit)
              for length, lines in routes.items()}
    out: dict = {f"{length:g}": {} for length in routes}
    expected: dict = {}
    inprocess = inprocess_client(server_url, fleet_key)
    floors = {"redis_ping": redis_round_trip(server_url, 10 * args.queries),
              "recommend_inprocess": floor(inprocess, args.queries)}
    log(f"  floor: Redis PING p50 {floors['redis_ping']['p50_ms']:.3f} ms; a recommendation "
        f"with no candidate in-process p50 {floors['recommend_inprocess']['p50_ms']:.2f} ms")
    for length, batch in bodies.items():
        latencies, expected[length] = measure(inprocess, batch, args.warmup,
                                              lambda a: _answer(*a))
        out[f"{length:g}"]["recommend_inprocess"] = {
            "summary": summary(latencies), "latencies_ms": latencies,
            "mean_items": float(np.mean([len(a) for a in expected[length]]))}
        log(f"  {length:g} km recommend in-process: p50 {np.median(latencies):.2f} ms")
    # The server's default policy, Thompson sampling: its answers are random draws, so only
    # timed (and checked to be answers), not compared.
    thompson = inprocess_client(server_url, fleet_key, DEFAULT_EXPLORATION)
    for length, batch in bodies.items():
        latencies, answers = measure(thompson, batch, args.warmup, lambda a: _answer(*a))
        out[f"{length:g}"]["recommend_inprocess_thompson"] = {
            "summary": summary(latencies), "latencies_ms": latencies,
            "mean_items": float(np.mean([len(a) for a in answers]))}
        log(f"  {length:g} km recommend in-process, {DEFAULT_EXPLORATION}: "
            f"p50 {np.median(latencies):.2f} ms")
    middle = sorted(routes)[len(routes) // 2]
    profiled = {"route_km": middle, "call": "POST /v1/recommendations (Flask test client)",
                **profile(inprocess, bodies[middle][: args.profile_queries])}
    # Cold: each request in a new application whose caches of cells, masks and cell centres
    # hold nothing of the region, as a worker's first requests there (`inprocess_client`).
    # After the profile, which is of a warm worker.
    for length, batch in bodies.items():
        latencies, answers = [], []
        for body in batch:
            call = inprocess_client(server_url, fleet_key, cold=True)
            start = time.perf_counter()
            answers.append(_answer(*call(body)))
            latencies.append((time.perf_counter() - start) * 1000)
        out[f"{length:g}"]["recommend_inprocess_cold"] = {
            "summary": summary(latencies), "latencies_ms": latencies,
            "mean_items": float(np.mean([len(a) for a in answers])),
            "same_offers_as_warm": sum(
                a == b for a, b in zip(answers, expected[length], strict=True))}
        log(f"  {length:g} km recommend in-process, cold caches: "
            f"p50 {np.median(latencies):.2f} ms")
    if args.no_http:
        return {"by_length": out, "profile": profiled, "floor": floors}
    servers = {"recommend_http_sync": [],
               "recommend_http_gthread": ["-k", "gthread", "--threads", "1"]}
    commands = {}
    for name, extra in servers.items():
        with gunicorn(server_url, extra) as (port, command):
            commands[name] = shlex.join(command)
            for length, batch in bodies.items():
                call, stats = http_client(port, fleet_key)
                latencies, answers = measure(call, batch, args.warmup, lambda a: _answer(*a))
                out[f"{length:g}"][name] = {
                    "summary": summary(latencies), "latencies_ms": latencies,
                    "mean_items": float(np.mean([len(a) for a in answers])),
                    "same_offers_as_inprocess": sum(
                        a == b for a, b in zip(answers, expected[length], strict=True)),
                    "connections_closed_by_server": stats["server_closed"],
                    "requests": stats["requests"]}
                log(f"  {length:g} km {name}: p50 {np.median(latencies):.2f} ms")
            call, _ = http_client(port, fleet_key)
            floors[name] = floor(call, args.queries)
    return {"by_length": out, "profile": profiled, "gunicorn_commands": commands,
            "floor": floors}


def run_size(args, n: int, far_copies: int, region: synthetic.Region, routes: dict,
             now: datetime) -> dict:
    at = next_wednesday_noon(now)
    log(f"catalogue of {n:,} places and {far_copies} far copies: generating")
    parts = [synthetic.make_places(args.seed, region, n, copy)
             for copy in range(far_copies + 1)]
    offers = [offer for copy, part in enumerate(parts)
              for offer in synthetic.make_offers(args.seed, part, now, copy)]
    catalogue = synthetic.merged(parts)
    checked = synthetic.check_with_schemas(catalogue, offers)
    result: dict = {"places": len(catalogue.place_id), "places_near_routes": n,
                    "far_copies": far_copies, "recommendation_at": at.isoformat(),
                    "documents_checked_with_schemas": checked}
    server = RedisServer().start()
    baselines = None
    try:
        client = redis.Redis.from_url(server.url)
        result["redis_version"] = client.info("server")["redis_version"]
        fleet_key = create_accounts(client)
        log(f"  writing to a throwaway redis-server at {server.url}")
        result["build"] = build_catalogue(client, catalogue, offers)
        release_documents(catalogue, offers)
        result["memory_breakdown"] = memory_breakdown(client)
        baselines = setup_baselines(args, client, catalogue, result)
        result["search"], result["search_profile"] = run_searches(
            args, client, server.url, fleet_key, catalogue, routes, at, baselines)
        if args.model:
            registry = ModelRegistry(client)
            result["ranking_model"] = registry.activate(registry.publish(args.model))
        result["recommendations"] = run_recommendations(args, server.url, fleet_key, routes, at)
        for length, block in result["recommendations"]["by_length"].items():
            counts = result["search"][length]["counts"]
            latency = np.asarray(block["recommend_inprocess"]["latencies_ms"])
            result["search"][length]["us_per_record"]["recommend_inprocess"] = float(np.median(
                1000 * latency / np.maximum(counts["offer_records_read"], 1)))
    finally:
        if baselines and baselines[2] is not None:
            baselines[2].close()
        server.stop()
        gc.unfreeze()
    return result


# -- report ------------------------------------------------------------------------------------

def _row(cells: list, widths: list[int]) -> str:
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _check_text(check: dict | None) -> str:
    if check is None:
        return ""
    text = f"{check['identical']} same"
    if check["same_set_other_order"]:
        text += f", {check['same_set_other_order']} reordered"
    if check["boundary_only"]:
        text += f", {check['boundary_only']} edge<=1m ({check['boundary_places']} pl)"
    if check["mismatched_queries"]:
        text += f", {check['mismatched_queries']} MISMATCH"
    return text


def print_size(size: dict) -> None:
    build, n = size["build"], size["places"]
    far = (f" ({size['places_near_routes']:,} in the routes' region and {size['far_copies']} "
           f"copies far away)" if size.get("far_copies") else "")
    print(f"\n=== {n:,} places{far}, {build['offers']:,} offers ({build['offer_records']:,} "
          f"offer-place records), 200 merchants; Redis {size['redis_version']} ===")
    print(f"build: places {build['places_per_s']:,.0f} places/s ({build['places_path']}); "
          f"offers {build['offers_per_s']:,.0f} offers/s = {build['offer_records_per_s']:,.0f} "
          f"records/s ({build['offers_path']}); whole catalogue "
          f"{build['catalogue_places_per_s']:,.0f} places/s")
    print(f"Redis memory: {build['memory_bytes_per_place']:,.0f} B/place (used_memory "
          f"+{(build['used_memory_after'] - build['used_memory_before']) / 2**20:,.0f} MiB)")
    for family, value in size["memory_breakdown"].items():
        print(f"    {family:32} {value['bytes'] / n:8,.0f} B/place  {value['keys']:>9,} keys")
    geo = size["geosearch_setup"]
    print(f"GEOSEARCH baseline key: {geo['memory_bytes_per_place']:,.0f} B/place; "
          f"PostGIS: {_postgis_text(size['postgis_setup'])}")
    widths = [28, 9, 9, 9, 10, 11, 34]
    print(_row(["route / method", "p50 ms", "p99 ms", "mean ms", "results", "read", "same answer"],
               widths))
    for length, block in size["search"].items():
        means = block["count_means"]
        print(f"-- {length} km routes (mean {means['route_km']:.1f} km; {means['cells']:.0f} "
              f"cells; {means['places_in_corridor']:.0f} places and "
              f"{means['offer_candidates']:.0f} live offers in the corridor)")
        read = {"along_route": means["place_records_read"],
                "along_route_ids": means["place_records_read"],
                "along_route_endpoint": means["place_records_read"],
                "along_route_all": means["place_records_read"],
                "geosearch": means.get("geosearch_hits"),
                "numpy": means.get("numpy_bbox_candidates")}
        for method, timing in block["timings"].items():
            s = timing["summary"]
            limited = min(means["places_in_corridor"], 1000)
            shown = (limited if method in LIMITED_METHODS else
                     means["places_in_corridor"] if method != "route_parse" else "")
            print(_row([method, f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['mean_ms']:.2f}",
                        f"{shown:.0f}" if shown != "" else "",
                        f"{read[method]:.0f}" if read.get(method) else "",
                        _check_text(block["checks"].get(method))], widths))
        stages, read = block["stages"]["p50_ms"], block["stages"]["mean_bytes"]
        print("   us per record read (median): " + ", ".join(
            f"{k} {v:.2f}" for k, v in block["us_per_record"].items()))
        print("   steps p50 ms: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
              + f"; records read: places {read['place_bytes'] / 1e6:.2f} MB, offers "
              f"{read['offer_bytes'] / 1e6:.2f} MB")
        recs = size["recommendations"]["by_length"][length]
        for method, timing in recs.items():
            s = timing["summary"]
            extra = f"{timing['mean_items']:.1f} items"
            if "same_offers_as_warm" in timing:
                extra = f"{timing['same_offers_as_warm']} same as warm, {extra}"
            if "connections_closed_by_server" in timing:
                extra = (f"{timing['same_offers_as_inprocess']} same, {extra}; "
                         f"{timing['connections_closed_by_server']} closed")
            print(_row([method, f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['mean_ms']:.2f}",
                        "", f"{means['offer_records_read']:.0f}", extra], widths))
    print_ratios(size)
    floors = size["recommendations"].get("floor")  # reports before v13 have none
    if floors:
        print(f"floor (p50): Redis PING {floors['redis_ping']['p50_ms']:.3f} ms; a "
              "recommendation with no candidate: " + ", ".join(
                  f"{name} {s['p50_ms']:.2f} ms" for name, s in floors.items()
                  if name != "redis_ping"))
    print_profile(size["search_profile"])
    print_profile(size["recommendations"]["profile"])


def _postgis_text(setup: dict) -> str:
    if "skipped" in setup:
        return f"skipped ({setup['skipped']})"
    return (f"table+GiST {setup['table_and_index_bytes'] / 2**20:,.0f} MiB, loaded and "
            f"indexed in {setup['load_and_index_s']:.0f} s")


def _p50(block: dict, method: str) -> float | None:
    timing = block["timings"].get(method)
    return timing["summary"]["p50_ms"] if timing else None


def print_ratios(size: dict) -> None:
    print("ratios of p50 latencies (baseline / ours; >1 means ours is faster):")
    for length, block in size["search"].items():
        parts = []
        for ours in ("along_route", "along_route_all"):
            for base in ("geosearch", "numpy", "postgis_dwithin", "postgis_pieces"):
                a, b = _p50(block, ours), _p50(block, base)
                if a and b:
                    parts.append(f"{base}/{ours.replace('along_route', 'ar')} {b / a:.1f}x")
        print(f"  {length} km: " + ", ".join(parts))


def print_profile(profiled: dict) -> None:
    print(f"cProfile of {profiled['call']}, {profiled['route_km']:g} km routes, "
          f"{profiled['requests']} calls (ms per call):")
    for title, key in (("top 10 by cumulative time", "cumulative"),
                       ("top 15 in api/ geo/ offers/ ranking/ by cumulative time",
                        "product_cumulative"),
                       ("top 15 by own time", "own")):
        print(f"  {title}:")
        for row in profiled[key]:
            print(f"    {row['cumulative_ms_per_request']:8.3f} cum "
                  f"{row['own_ms_per_request']:8.3f} own {row['calls']:>8} calls  "
                  f"{row['function'][-90:]}")


def print_scaling(sizes: list[dict]) -> None:
    if len(sizes) < 2:
        return
    small, large = sizes[0], sizes[-1]
    print(f"\n=== scaling {small['places']:,} -> {large['places']:,} places "
          f"(x{large['places'] / small['places']:.0f}) : p50 ratio large/small ===")
    for length in small["search"]:
        a, b = small["search"][length], large["search"][length]
        parts = [f"places in corridor x{_ratio(b, a, 'places_in_corridor'):.2f}",
                 f"records read x{_ratio(b, a, 'place_records_read'):.2f}"]
        for method in ("along_route", "along_route_ids", "along_route_all", "geosearch", "numpy",
                       "postgis_dwithin", "postgis_pieces"):
            pa, pb = _p50(a, method), _p50(b, method)
            if pa and pb:
                parts.append(f"{method} x{pb / pa:.2f}")
        for method in ("along_route_all", "numpy"):
            pa, pb = _p50(a, method), _p50(b, method)
            if pa and pb:
                parts.append(f"{method} us/place-in-corridor {1000 * pa / _mean(a):.2f} -> "
                             f"{1000 * pb / _mean(b):.2f}")
        ra = small["recommendations"]["by_length"][length]["recommend_inprocess"]["summary"]
        rb = large["recommendations"]["by_length"][length]["recommend_inprocess"]["summary"]
        parts.append(f"recommend_inprocess x{rb['p50_ms'] / ra['p50_ms']:.2f}")
        print(f"  {length} km: " + ", ".join(parts))


def _mean(block: dict) -> float:
    return max(block["count_means"]["places_in_corridor"], 1e-9)


def _ratio(b: dict, a: dict, count: str) -> float:
    return b["count_means"][count] / max(a["count_means"][count], 1e-9)


def all_identical(sizes: list[dict]) -> bool:
    """No search mismatch, and every HTTP answer the same offers as in-process."""
    searches = all(check["mismatched_queries"] == 0 for size in sizes
                   for block in size["search"].values() for check in block["checks"].values())
    answers = all(timing.get("same_offers_as_inprocess", timing["summary"]["n"])
                  == timing["summary"]["n"] for size in sizes
                  for block in size["recommendations"]["by_length"].values()
                  for timing in block.values())
    return searches and answers


def code_state(repo: Path, snapshot: Path | None = None) -> dict:
    """The git commit and uncommitted paths of `repo`, and a SHA-256 over the product's Python
    files as measured (in `snapshot` when there is one)."""
    root = snapshot or repo
    digest = hashlib.sha256()
    for name in PRODUCT_PACKAGES:
        for path in sorted((root / name).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return {"repo": str(repo), "git_commit": _command("git", "-C", str(repo), "rev-parse", "HEAD"),
            "git_uncommitted": _command("git", "-C", str(repo), "status",
                                        "--porcelain").splitlines(),
            "code_sha256": digest.hexdigest()}


def run_from_snapshot(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the benchmark on a copy of the code taken now, so that a long run (and the gunicorn
    it starts later) measures one version even if the code changes meanwhile."""
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        snapshot = Path(tmp)
        for name in (*PRODUCT_PACKAGES, "seed_data", "benchmarks"):
            shutil.copytree(REPO / name.strip("/"), snapshot / name.strip("/"),
                            ignore=shutil.ignore_patterns("__pycache__", "results"))
        state = {**code_state(REPO, snapshot), "snapshot": tmp,
                 "command": shlex.join([sys.executable, "-m", "benchmarks.along_route",
                                        *argv])}
        env = {**os.environ, SNAPSHOT_ENV: json.dumps(state), "PYTHONPATH": tmp}
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.along_route", *argv,
                                  "--out", str(args.out.resolve())], cwd=tmp, env=env)

        def forward(signum, _frame) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return child.wait()


def _exit_on_term(_signum, _frame) -> None:
    raise SystemExit(143)  # run the `finally` blocks: stop redis-server, drop the table


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report:
        report = json.loads(args.report.read_text())
        for size in report["sizes"]:
            print_size(size)
        print_scaling(report["sizes"])
        return 0
    if not os.environ.get(SNAPSHOT_ENV) and not args.live_code:
        return run_from_snapshot(args, argv)
    signal.signal(signal.SIGTERM, _exit_on_term)
    code = json.loads(os.environ[SNAPSHOT_ENV]) if os.environ.get(SNAPSHOT_ENV) else {
        **code_state(REPO), "command": shlex.join([sys.executable, "-m",
                                                   "benchmarks.along_route", *argv])}
    now = synthetic.now_utc()
    region = synthetic.make_region(args.seed, args.region_km)
    routes = synthetic.make_routes(args.seed, region, args.routes_km, args.queries,
                                   args.route_start)
    report = {"command": code.pop("command"), "started_at": now.isoformat(),
              "machine": machine_info(), "code": code,
              "settings": {k: (str(v) if isinstance(v, Path) else v)
                           for k, v in vars(args).items()},
              "sizes": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in args.places:
        for far_copies in args.far_copies:
            report["sizes"].append(run_size(args, n, far_copies, region, routes, now))
        args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2
                                          | orjson.OPT_SERIALIZE_NUMPY))
        print_size(report["sizes"][-1])
    print_scaling(report["sizes"])
    identical = all_identical(report["sizes"])
    report["all_results_identical_within_1m"] = identical
    report["git_commit_at_end"] = _command("git", "-C", code["repo"], "rev-parse", "HEAD")
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2
                                      | orjson.OPT_SERIALIZE_NUMPY))
    print(f"\nJSON: {args.out}")
    print(json.dumps({"all_results_identical_within_1m": identical}))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
