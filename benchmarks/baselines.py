"""The baselines the geo index is measured against, each answering the same question as
`PlaceSearch.along_route`: which places lie within `corridor_m` of a route, in order along it.

- `GeoSearchBaseline`: Redis's own geo set. Every place is GEOADDed to one key; a query samples
  the route every `corridor_m` metres, runs one GEOSEARCH BYRADIUS per sample (pipelined, one
  round trip) wide enough that the circles cover the corridor, unions the hits and filters them
  exactly with `Route.locate` on the coordinates GEOSEARCH returns (WITHCOORD).
- `NumpyBaseline`: every place's coordinates in memory as numpy arrays; a query keeps the points
  in the route's bounding box (grown by the corridor) and filters them with `Route.locate`.
- `PostgisBaseline`: a table of `geography(Point)` with a GiST index, queried with
  `ST_DWithin(geog, route, corridor)` for the whole route, and with the route cut into short
  pieces (one index probe per piece, like a subdivided buffer).

Each returns place ids sorted by (distance along, id) where it knows the distance along, and a
dict of counts (how much it read) for the report.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
from redis import Redis

from geo.route import Route

GEO_KEY = "bench:geo"
# Redis measures on a sphere of radius 6,372,797.56 m; at these latitudes that differs from
# the ellipsoid's geodesic by under 0.25%, and GEOSEARCH's 52-bit cells move points by < 1 m.
SPHERE_MARGIN = 1.005
GEOHASH_ERROR_M = 1.0
PG_TABLE = "bench_along_route_places_"  # + the process id: concurrent runs do not collide
PG_PIECE_VERTICES = 16


def _sorted_inside(ids: np.ndarray, route: Route, lat: np.ndarray, lng: np.ndarray,
                   corridor_m: float) -> np.ndarray:
    """The ids within the corridor, ordered by (distance along the route, id)."""
    located = route.locate(lat, lng, corridor_m)
    inside = located.offset_m <= corridor_m
    ids, along = ids[inside], located.along_m[inside]
    return ids[np.lexsort((ids, along))]


class GeoSearchBaseline:
    def __init__(self, redis: Redis):
        self.redis = redis

    def load(self, place_id: np.ndarray, lat: np.ndarray, lng: np.ndarray,
             chunk: int = 10_000) -> None:
        self.redis.delete(GEO_KEY)
        for start in range(0, len(place_id), chunk):
            values = []
            for pid, a, b in zip(place_id[start:start + chunk], lat[start:start + chunk],
                                 lng[start:start + chunk], strict=True):
                values += [float(b), float(a), str(pid)]
            self.redis.geoadd(GEO_KEY, values)

    def along(self, route: Route, corridor_m: float) -> tuple[np.ndarray, dict]:
        spacing = corridor_m
        lat, lng = route.points_every(spacing)
        radius = (corridor_m + spacing / 2) * SPHERE_MARGIN + GEOHASH_ERROR_M
        with self.redis.pipeline(transaction=False) as pipe:
            for a, b in zip(lat.tolist(), lng.tolist(), strict=True):
                pipe.geosearch(GEO_KEY, longitude=b, latitude=a, radius=radius, unit="m",
                               withcoord=True)
            replies = pipe.execute()
        found = {}
        hits = 0
        for reply in replies:
            hits += len(reply)
            for member, (x, y) in reply:
                found[member] = (y, x)
        ids = np.array([m.decode() for m in found], dtype=str)
        coords = np.array(list(found.values()), dtype=float).reshape(-1, 2)
        result = _sorted_inside(ids, route, coords[:, 0], coords[:, 1], corridor_m)
        return result, {"samples": len(lat), "hits": hits, "candidates": len(found)}


class NumpyBaseline:
    def __init__(self, place_id: np.ndarray, lat: np.ndarray, lng: np.ndarray):
        self.place_id, self.lat, self.lng = place_id.astype(str), lat, lng

    def along(self, route: Route, corridor_m: float) -> tuple[np.ndarray, dict]:
        # A geodesic between vertices at most 5 km apart strays from their lat/lng box by
        # well under 10 m at these latitudes; the margin covers it.
        pad_lat = (corridor_m + 10.0) / 110_000.0
        widest = min(89.0, float(np.abs(route.lat).max()) + pad_lat)
        pad_lng = (corridor_m + 10.0) / (111_000.0 * math.cos(math.radians(widest)))
        inside = ((self.lat >= route.lat.min() - pad_lat) & (self.lat <= route.lat.max() + pad_lat)
                  & (self.lng >= route.lng.min() - pad_lng)
                  & (self.lng <= route.lng.max() + pad_lng))
        rows = np.nonzero(inside)[0]
        result = _sorted_inside(self.place_id[rows], route, self.lat[rows], self.lng[rows],
                                corridor_m)
        return result, {"candidates": len(rows)}


def _linestring(lat: np.ndarray, lng: np.ndarray) -> str:
    return "SRID=4326;LINESTRING(" + ",".join(
        f"{b!r} {a!r}" for a, b in zip(lat.tolist(), lng.tolist(), strict=True)) + ")"


class PostgisBaseline:
    """Owns one table (`PG_TABLE` + pid), created on `load` and dropped on `close`."""

    def __init__(self, dsn: str):
        import psycopg  # only needed when PostgreSQL is reachable

        self.table = f"{PG_TABLE}{os.getpid()}"
        self.connection = psycopg.connect(dsn, autocommit=True)
        with self.connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            cursor.execute("SELECT postgis_full_version(), version()")
            self.versions = cursor.fetchone()

    def load(self, place_id: np.ndarray, lat: np.ndarray, lng: np.ndarray) -> dict:
        with self.connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
            cursor.execute(f"CREATE TABLE {self.table} (id text PRIMARY KEY, "
                           "geog geography(Point, 4326) NOT NULL)")
            buffer = io.StringIO()
            for pid, a, b in zip(place_id.tolist(), lat.tolist(), lng.tolist(), strict=True):
                buffer.write(f"{pid}\tSRID=4326;POINT({b!r} {a!r})\n")
            with cursor.copy(f"COPY {self.table} (id, geog) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
            cursor.execute(f"CREATE INDEX {self.table}_geog ON {self.table} USING gist (geog)")
            cursor.execute(f"ANALYZE {self.table}")
            cursor.execute(f"SELECT pg_total_relation_size('{self.table}'), "
                           f"pg_relation_size('{self.table}_geog')")
            total, index = cursor.fetchone()
        return {"table_and_index_bytes": total, "gist_index_bytes": index}

    def along(self, lat: np.ndarray, lng: np.ndarray,
              corridor_m: float) -> tuple[np.ndarray, dict]:
        """ST_DWithin against the whole route: the GiST probe uses the route's bounding box.
        PostGIS needs no `Route`: it is given the route's vertices as they came."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {self.table} WHERE ST_DWithin(geog, "
                           "%s::geography, %s)", (_linestring(lat, lng), corridor_m))
            ids = np.array([row[0] for row in cursor.fetchall()], dtype=str)
        return np.sort(ids), {"results": len(ids)}

    def along_pieces(self, lat: np.ndarray, lng: np.ndarray,
                     corridor_m: float) -> tuple[np.ndarray, dict]:
        """The route cut into pieces of PG_PIECE_VERTICES vertices (sharing their ends): each
        piece's index probe reads a small box, as with an ST_Subdivide'd buffer, and the union
        of the pieces' ST_DWithin is exactly ST_DWithin of the whole route."""
        step = PG_PIECE_VERTICES - 1
        pieces = [_linestring(lat[i:i + PG_PIECE_VERTICES], lng[i:i + PG_PIECE_VERTICES])
                  for i in range(0, max(1, len(lat) - 1), step)]
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT p.id FROM unnest(%s::text[]) AS s(piece) "
                f"CROSS JOIN LATERAL (SELECT id FROM {self.table} "
                f"WHERE ST_DWithin(geog, s.piece::geography, %s)) AS p",
                (pieces, corridor_m))
            ids = np.array([row[0] for row in cursor.fetchall()], dtype=str)
        return np.sort(ids), {"pieces": len(pieces), "results": len(ids)}

    def explain(self, lat: np.ndarray, lng: np.ndarray, corridor_m: float) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN ANALYZE SELECT id FROM {self.table} WHERE ST_DWithin(geog, "
                           "%s::geography, %s)", (_linestring(lat, lng), corridor_m))
            return "\n".join(row[0] for row in cursor.fetchall())

    def close(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.connection.close()
