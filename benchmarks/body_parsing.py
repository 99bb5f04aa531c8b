"""Reading recommendation bodies: Python's parser (what webargs uses) against the engine's
(`api.parsing.load_json`: orjson, with Python's parser for what orjson would read otherwise),
on the benchmark's recommendation bodies for 50 and 200 km routes; then turning their GeoJSON
routes into `geo.route.Route`s (`route_from_geojson`: the checks, the arrays, the route's
geometry). Best of 5 runs, ms a body.

    .venv/bin/python -m benchmarks.body_parsing
"""

from __future__ import annotations

import json
import timeit

from api.parsing import load_json
from benchmarks import synthetic
from benchmarks.along_route import next_wednesday_noon, recommendation_bodies
from geo.route import route_from_geojson


def main() -> None:
    seed = 20240601
    region = synthetic.make_region(seed, 300.0)
    at = next_wednesday_noon(synthetic.now_utc())
    for km in (50.0, 200.0):
        lines = synthetic.make_routes(seed, region, [km], 20, "towns")[km]
        bodies = recommendation_bodies(lines, at, 1000.0, 10)
        size = sum(map(len, bodies)) / len(bodies) / 1000
        for name, parse in (("json.loads", json.loads), ("load_json", load_json)):
            assert all(parse(body) == json.loads(body) for body in bodies)
            best = min(timeit.repeat(lambda parse=parse, bodies=bodies: [parse(b) for b in bodies],
                                     number=20, repeat=5))
            print(f"{km:g} km bodies ({size:.1f} kB): {name:10} "
                  f"{1000 * best / 20 / len(bodies):.3f} ms")
        routes = [json.loads(body)["route"] for body in bodies]
        points = sum(len(route["coordinates"]) for route in routes) / len(routes)
        best = min(timeit.repeat(lambda routes=routes: [route_from_geojson(r) for r in routes],
                                 number=20, repeat=5))
        print(f"{km:g} km routes ({points:.0f} points): route_from_geojson "
              f"{1000 * best / 20 / len(routes):.3f} ms")


if __name__ == "__main__":
    main()
