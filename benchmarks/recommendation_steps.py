"""Where a recommendation's time goes: the wall time of each main step, per request.

    .venv/bin/python -m benchmarks.recommendation_steps [--places 200000] [--km 10 50 200]
        [--model MODEL_DIR] [--rounds 3] [--exploration greedy]

Builds the benchmark's synthetic catalogue (`benchmarks.along_route`, same seed and routes)
in a throwaway Redis, then answers each route's recommendation (warm, in-process; greedy
unless `--exploration` names another policy) `--rounds` times with the steps below wrapped in
timers, and prints each step's median per request, then the same for a request that finds no
candidate (`along_route.NOTHING_NEARBY`).
Steps nest: `candidates` includes `corridor_cells`, `offers_by_cell` and the `locate` of the
candidates; `locate` also counts the car's own (inside `remaining_from`) and the cell
centres' (inside `corridor_cells`). Since cd97436 `offers_by_cell` also reads the driver and
the model (their round trip), and `driver_and_ranker` only decodes them: its figures before
and after are not alike. The timers add about a microsecond per call.
"""

from __future__ import annotations

import argparse
import functools
import gc
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import redis

import api.recommendations
import api.services
import geo.route
import offers.geo_index
import offers.registry
import offers.serving
import ranking.learned
import ranking.learning
from benchmarks import synthetic
from benchmarks.along_route import (
    NOTHING_NEARBY,
    build_catalogue,
    create_accounts,
    inprocess_client,
    next_wednesday_noon,
    recommendation_bodies,
    release_documents,
)
from offers.redis_server import RedisServer
from ranking.registry import ModelRegistry

# (owner, attribute): the calls timed, named by their attribute.
STEPS = [
    (offers.registry.Registry, "principal_for"), (geo.route, "route_from_points"),
    (geo.route.Route, "remaining_from"), (geo.route.Route, "locate"),
    (api.services.Services, "driver_and_ranker"), (offers.serving.OfferServing, "candidates"),
    (offers.serving, "corridor_cells"), (offers.geo_index.GeoIndex, "offers_by_cell"),
    (api.recommendations, "raw_of"), (api.recommendations, "raw_to_features"),
    (ranking.learned.LearnedRanker, "score_and_logits"),
    (ranking.learned.LearnedRanker, "draws"), (api.recommendations, "best_of_each"),
    (offers.serving.OfferServing, "servable"), (ranking.learning.LearningLoop, "record_served"),
    (api.recommendations, "json_response"),
]


def time_steps(spent: dict[str, float]) -> None:
    """Wrap every step so that its wall time adds to `spent[name]`."""
    for owner, name in STEPS:
        call = getattr(owner, name)

        @functools.wraps(call)
        def timed(*args, _call=call, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _call(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - start

        setattr(owner, name, timed)


def medians(call, bodies: list[bytes], rounds: int, spent: dict[str, float]) -> dict:
    """Each step's median ms per request, and the whole request's ("TOTAL")."""
    rows = []
    for _ in range(rounds):
        for body in bodies:
            spent.clear()
            start = time.perf_counter()
            status, _ = call(body)
            spent["TOTAL"] = time.perf_counter() - start
            if status != 200:
                raise RuntimeError(f"a recommendation failed with {status}")
            rows.append(dict(spent))
    names = [name for _, name in STEPS if any(name in row for row in rows)] + ["TOTAL"]
    return {name: 1000 * float(np.median([row.get(name, 0.0) for row in rows]))
            for name in names}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recommendation_steps")
    parser.add_argument("--places", type=int, default=200_000)
    parser.add_argument("--km", type=float, nargs="+", default=[10, 50, 200])
    parser.add_argument("--model", type=Path, help="ranking model directory (absolute path)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--exploration", default="greedy",
                        help="the serving policy, e.g. thompson:32 (the server's default)")
    args = parser.parse_args(argv)
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url)
        now = synthetic.now_utc()
        region = synthetic.make_region(args.seed, 300.0)
        places = synthetic.make_places(args.seed, region, args.places, 0)
        catalogue = synthetic.merged([places])
        offers_made = synthetic.make_offers(args.seed, places, now, 0)
        fleet_key = create_accounts(client)
        build_catalogue(client, catalogue, offers_made)
        release_documents(catalogue, offers_made)
        if args.model:
            registry = ModelRegistry(client)
            registry.activate(registry.publish(args.model))
        routes = synthetic.make_routes(args.seed, region, args.km, 60, "towns")
        at = next_wednesday_noon(now)
        bodies = {km: recommendation_bodies(routes[km], at, 1000.0, 10) for km in args.km}
        call = inprocess_client(server.url, fleet_key, args.exploration)
        for batch in bodies.values():  # warm: caches, compiled loops
            for body in batch:
                call(body)
        spent: dict[str, float] = defaultdict(float)
        time_steps(spent)
        gc.collect()
        gc.freeze()
        runs = {f"{km:g} km": medians(call, batch, args.rounds, spent)
                for km, batch in bodies.items()}
        runs["no candidate"] = medians(call, [NOTHING_NEARBY] * 60, args.rounds, spent)
    finally:
        server.stop()
    print(f"{args.places:,} places, {args.exploration}; median ms per request over "
          f"{args.rounds} rounds of 60")
    names = list(dict.fromkeys(name for run in runs.values() for name in run))
    print(f"{'step':20}" + "".join(f"{label:>14}" for label in runs))
    for name in names:
        print(f"{name:20}" + "".join(f"{run.get(name, 0.0):14.3f}" for run in runs.values()))


if __name__ == "__main__":
    main()
