"""The full recommendation of two commits, interleaved request by request.

On a shared machine the speed of the CPU drifts by tens of percent within minutes, so two
benchmark runs minutes apart cannot tell a 15% change. Here both versions run at once, each in
its own process on its own catalogue (built by its own code, in its own database of one
throwaway Redis), and answer the same requests alternately (the order swapping every request):
the drift hits both alike. Reported: per version, the median over routes of each route's fastest
of `--reps` answers (wall and process CPU time), the median ratio new / old, and how many
requests both answered with the same items.

    .venv/bin/python -m benchmarks.compare_commits BASE [--head HEAD] [--km 10 50 200] \\
        [--places 200000] [--reps 5] [--model MODEL_DIR] [--exploration greedy]

BASE and HEAD are git revisions (HEAD defaults to the working tree); each is checked out with
`git worktree` into a temporary directory. Greedy serving, as in `benchmarks.along_route`,
unless `--exploration` names another policy; both versions then draw from the same seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.along_route import code_state
from offers.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent

# Runs inside each version's checkout (its own code on sys.path): build, then answer requests.
_WORKER = r"""
import gc, json, os, sys, time
import redis
from benchmarks import synthetic
from benchmarks.along_route import (build_catalogue, create_accounts, inprocess_client,
                                    next_wednesday_noon, recommendation_bodies, release_documents)
from ranking.registry import ModelRegistry
url, places, model, lengths = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
client = redis.Redis.from_url(url)
now = synthetic.now_utc()
region = synthetic.make_region(20240601, 300.0)
part = synthetic.make_places(20240601, region, places, 0)
offers = synthetic.make_offers(20240601, part, now, 0)
catalogue = synthetic.merged([part])
fleet_key = create_accounts(client)
build_catalogue(client, catalogue, offers)
release_documents(catalogue, offers)
if model:
    registry = ModelRegistry(client)
    registry.activate(registry.publish(model))
at = next_wednesday_noon(now)
routes = synthetic.make_routes(20240601, region, [float(km) for km in lengths], 60, "towns")
bodies = {km: recommendation_bodies(routes[float(km)], at, 1000.0, 10) for km in lengths}
exploration = os.environ["COMPARE_EXPLORATION"]
# (commits before --exploration's time take no policy: they serve greedily)
call = inprocess_client(url, fleet_key, *([exploration] if exploration != "greedy" else []))
for batch in bodies.values():
    for body in batch[:5]:
        call(body)
gc.collect()
gc.freeze()
print("ready", flush=True)
for line in sys.stdin:
    km, i = line.split()
    wall, cpu = time.perf_counter(), time.process_time()
    status, data = call(bodies[km][int(i)])
    out = [1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu), status,
           # ids are random in each catalogue: an item is its offer's title and its place
           [[item["title"], item["place_name"], item["lat"], item["lng"]]
            for item in json.loads(data)["items"]] if status == 200 else None]
    print(json.dumps(out), flush=True)
"""


def checkout(revision: str | None, into: Path) -> Path:
    """A worktree of `revision`, or the working tree itself for None."""
    if revision is None:
        return REPO
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force",
                    str(into), revision], check=True, capture_output=True)
    return into


def start(code: Path, url: str, args: argparse.Namespace) -> subprocess.Popen:
    # Both versions explore alike: the same policy, from the same seed, over the same requests.
    env = {**os.environ, "PYTHONPATH": str(code), "COMPARE_EXPLORATION": args.exploration,
           "OFFERS_EXPLORATION_SEED": "20240601"}
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, url, str(args.places), str(args.model or ""),
         *map(str, args.km)], cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    return worker


def ask(worker: subprocess.Popen, km: str, i: int) -> tuple[float, float, list]:
    """One answer's wall and CPU milliseconds and its items, best first."""
    worker.stdin.write(f"{km} {i}\n")
    worker.stdin.flush()
    wall, cpu, status, offers = json.loads(worker.stdout.readline())
    if status != 200:
        raise RuntimeError(f"a recommendation failed with {status}")
    return wall, cpu, offers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="git revision measured as 'old'")
    parser.add_argument("--head", help="git revision measured as 'new' (default: working tree)")
    parser.add_argument("--km", type=float, nargs="+", default=[10, 50, 200])
    parser.add_argument("--places", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--model", type=Path, help="ranking model directory (absolute path)")
    parser.add_argument("--exploration", default="greedy",
                        help="the policy both serve with (seeded alike), e.g. thompson:32")
    args = parser.parse_args()
    args.km = [f"{km:g}" for km in args.km]
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        server = RedisServer().start()
        trees = {"old": checkout(args.base, Path(tmp) / "old"),
                 "new": checkout(args.head, Path(tmp) / "new")}
        workers: dict[str, subprocess.Popen] = {}
        try:
            base_url = server.url.rsplit("/", 1)[0]
            workers = {name: start(code, f"{base_url}/{db}", args)
                       for db, (name, code) in enumerate(trees.items(), start=1)}
            for name, worker in workers.items():
                if worker.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"the {name} version did not start")
            results = {}
            for km in args.km:
                times = {name: np.full((args.reps, 60, 2), np.inf) for name in workers}
                same = 0  # requests both versions answered with the same offers, in order
                for rep in range(args.reps):
                    for i in range(60):
                        order = ("old", "new") if (rep + i) % 2 == 0 else ("new", "old")
                        offers = {}
                        for name in order:
                            *times[name][rep, i], offers[name] = ask(workers[name], km, i)
                        same += offers["old"] == offers["new"]
                best = {name: t.min(axis=0) for name, t in times.items()}  # per route
                ratio = best["new"][:, 0] / best["old"][:, 0]
                results[km] = {
                    **{name: {"wall_ms": float(np.median(b[:, 0])),
                              "cpu_ms": float(np.median(b[:, 1]))} for name, b in best.items()},
                    "new_over_old": float(np.median(ratio)),
                    "new_over_old_iqr": [float(np.percentile(ratio, 25)),
                                         float(np.percentile(ratio, 75))],
                    "same_answers": f"{same}/{args.reps * 60}"}
                print(f"{km} km: old {results[km]['old']['wall_ms']:.2f} ms "
                      f"(cpu {results[km]['old']['cpu_ms']:.2f}), new "
                      f"{results[km]['new']['wall_ms']:.2f} ms (cpu "
                      f"{results[km]['new']['cpu_ms']:.2f}); new/old {ratio.size} routes: median "
                      f"{results[km]['new_over_old']:.3f} (IQR "
                      f"{results[km]['new_over_old_iqr'][0]:.3f}-"
                      f"{results[km]['new_over_old_iqr'][1]:.3f}); same answers "
                      f"{results[km]['same_answers']}", flush=True)
            print(json.dumps({"base": args.base, "head": args.head or "working tree",
                              "commits": {name: code_state(code) for name, code in
                                          trees.items()},
                              "places": args.places, "reps": args.reps,
                              "exploration": args.exploration, "results": results}))
        finally:
            for worker in workers.values():
                worker.kill()
            server.stop()
            for code in trees.values():
                if code != REPO:
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                    str(code)], capture_output=True)


if __name__ == "__main__":
    main()
