"""The geo steps of a recommendation on their own: choosing a corridor's cells (the disks
around the route's samples already drawn, and not), and locating the places of those cells
along the route (grouped by cell, as the index files them) with the car's distance to each.
On the benchmark's synthetic places and routes (`benchmarks.synthetic`, same seed).

    .venv/bin/python -m benchmarks.geo_steps [--code DIR] [--km 50] [--places 200000]

`--code DIR` times the `geo` package of another checkout (a `git worktree` of an older
commit, say) instead of this one's: run both, alternately, to compare. Medians over the
routes of `--rounds` rounds, in ms.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.geo_steps")
    parser.add_argument("--code", type=Path, help="a checkout whose geo package to time")
    parser.add_argument("--km", type=float, default=50.0)
    parser.add_argument("--places", type=int, default=200_000)
    parser.add_argument("--routes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    if args.code:
        sys.path.insert(0, str(args.code.resolve()))
    # Imported after the path is set: the code timed is --code's.
    import h3.api.basic_int as h3
    import numpy as np

    import geo.cells
    from benchmarks import synthetic
    from geo.earth import distance_m
    from geo.route import route_from_geojson

    region = synthetic.make_region(args.seed, 300.0)
    places = synthetic.make_places(args.seed, region, args.places, 0)
    cell = np.array([h3.latlng_to_cell(a, b, geo.cells.INDEX_RES)
                     for a, b in zip(places.lat.tolist(), places.lng.tolist(), strict=True)],
                    np.uint64)
    order = np.argsort(cell, kind="stable")  # filed cell by cell, as the index reads them
    cell, lat, lng = cell[order], places.lat[order], places.lng[order]
    routes = [route_from_geojson(line) for line in
              synthetic.make_routes(args.seed, region, [args.km], args.routes, "towns")[args.km]]
    spent: dict[str, list[float]] = {"cells, disks drawn before": [],
                                     "cells, no disk drawn before": [], "locate": [],
                                     "distance from the car": []}
    found = []
    for _ in range(args.rounds):
        for route in routes:
            geo.cells.corridor_cells(route, 1000.0)
            start = time.perf_counter()
            cells = geo.cells.corridor_cells(route, 1000.0)
            spent["cells, disks drawn before"].append(time.perf_counter() - start)
            with geo.cells._disk_lock:
                geo.cells._disk_cache.clear()
                geo.cells._disk_cache_cells = 0
            start = time.perf_counter()
            geo.cells.corridor_cells(route, 1000.0)
            spent["cells, no disk drawn before"].append(time.perf_counter() - start)
            rows = np.flatnonzero(np.isin(cell, np.array(cells, np.uint64)))
            filed, counts = np.unique(cell[rows], return_counts=True)
            groups = geo.cells.cell_groups(filed.tolist(), counts)
            start = time.perf_counter()
            located = route.locate(lat[rows], lng[rows], 1000.0, groups)
            spent["locate"].append(time.perf_counter() - start)
            car_lat, car_lng = route.lat[0], route.lng[0]
            start = time.perf_counter()
            if hasattr(located, "ecef"):  # the Earth-centred points, where locate gives them
                distance = distance_m(car_lat, car_lng, lat[rows], lng[rows], located.ecef)
            else:
                distance = distance_m(car_lat, car_lng, lat[rows], lng[rows])
            spent["distance from the car"].append(time.perf_counter() - start)
            offset = located.offset_m
            found.append((len(rows), float(offset[np.isfinite(offset)].sum()),
                          float(distance.sum())))
    print(f"{args.code or 'this checkout'}: {args.places:,} places, {len(routes)} routes of "
          f"{args.km:g} km, 1 km corridor; median of {args.rounds} rounds, ms "
          f"({np.median([n for n, _, _ in found]):,.0f} places read a route; checksum "
          f"{sum(o for _, o, _ in found):.3f} m offsets, {sum(d for _, _, d in found):.1f} m "
          f"distances)")
    for name, times in spent.items():
        print(f"  {name:30} {1000 * np.median(times):.3f}")


if __name__ == "__main__":
    main()
