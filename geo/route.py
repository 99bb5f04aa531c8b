"""Routes as cars report them, and exact distances from places to them.

A route is a sequence of WGS84 vertices joined by geodesics. `Route.locate` answers, for many
points at once, how far each is from the route (the geodesic distance to the nearest point of
the route, exact to well under a metre), how far along the route that nearest point lies, and on
which side of the direction of travel the point is. Pure functions and numpy; no Redis.

How it stays exact without a per-point loop: long segments are first split at true geodesic
points so no segment exceeds `MAX_SEGMENT_M`; then each point's foot on each nearby segment is
found on the sphere (closed form, vectorised) and the distance to that foot is measured on the
ellipsoid (`geo.earth`: the chord between Earth-centred points, corrected for curvature, which
equals the geodesic to millimetres at these ranges). Over segments this short the sphere's foot
is within centimetres of the ellipsoid's, and the distance is flat around its minimum, so the
error is negligible. Each point's search is bounded by its nearest route sample (`locate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polyline
from scipy.spatial import cKDTree

from .earth import CHORD_RANGE_M, WGS84, chord_distance_m, ecef_from_unit

MAX_ROUTE_POINTS = 20_000
MAX_ROUTE_LENGTH_M = 2_000_000.0
MAX_SEGMENT_M = 5_000.0
# The smallest radius of curvature of the WGS84 ellipsoid (meridional, at the equator): an
# angle on the unit sphere times this never overstates a geodesic distance, so reach computed
# with it is a safe upper bound.
MIN_RADIUS_M = 6_335_000.0
MAX_RADIUS_M = 6_400_000.0  # the largest (prime vertical, at the poles), rounded up
RADIUS_RATIO = MAX_RADIUS_M / MIN_RADIUS_M  # bounds how far an angle can misorder distances
SCREEN_STEP_M = 40.0
_HALF_STEP_M = SCREEN_STEP_M / 2 + 0.1  # and 10 cm for a great circle against a geodesic


class RouteError(ValueError):
    """A route that cannot be served; the message says why, for a 422."""


def unit_vectors(lat: np.ndarray, lng: np.ndarray) -> np.ndarray:
    phi, lam = np.radians(lat), np.radians(lng)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def _lat_lng(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


@dataclass(frozen=True)
class Located:
    """Per point: `offset_m` to the route, `along_m` from the route start to the nearest point,
    `side` +1 right / -1 left of travel (0 on the line). Points farther than the search
    distance get `offset_m = inf`."""

    offset_m: np.ndarray
    along_m: np.ndarray
    side: np.ndarray

    def take(self, rows: np.ndarray) -> Located:
        return Located(self.offset_m[rows], self.along_m[rows], self.side[rows])


class Route:
    """Vertices in order of travel (`lat`, `lng` arrays, degrees) and the geodesic distance from
    the start to each (`along_m`)."""

    def __init__(self, lat: np.ndarray, lng: np.ndarray, start_along_m: float = 0.0,
                 _along_m: np.ndarray | None = None):
        if _along_m is None:
            lat, lng, steps = _densified(np.asarray(lat, float), np.asarray(lng, float))
            _along_m = start_along_m + np.concatenate([[0.0], np.cumsum(steps)])
        self.lat, self.lng, self.along_m = lat, lng, _along_m
        self._xyz = unit_vectors(lat, lng)
        self._ecef = ecef_from_unit(self._xyz)
        a, b = self._xyz[:-1], self._xyz[1:]
        mid = a + b
        self._mid = mid / np.linalg.norm(mid, axis=1, keepdims=True)
        # A chord bound on how far any point of a segment is from its midpoint.
        self._half = np.maximum(np.linalg.norm(a - self._mid, axis=1),
                                np.linalg.norm(b - self._mid, axis=1))
        self._max_half = float(self._half.max())
        self._midpoints = cKDTree(self._mid)
        # Per segment, once: the great circle's unit normal (a x b points left of travel) and
        # the two planes that bound the arc, so a foot is on the arc iff both dots are >= 0.
        normal = np.cross(a, b)
        norm = np.linalg.norm(normal, axis=1)
        self._degenerate = norm < 1e-15
        self._normal = np.where(self._degenerate[:, None], 0.0,
                                normal / np.where(self._degenerate, 1.0, norm)[:, None])
        self._past_a = np.cross(self._normal, a)
        self._before_b = np.cross(b, self._normal)

    @property
    def length_m(self) -> float:
        return float(self.along_m[-1] - self.along_m[0])

    def point_at(self, along_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The route's points at distances `along_m` (clipped to the route), on each segment's
        great circle (no antimeridian or polar trouble from lat/lng arithmetic)."""
        along_m = np.clip(np.atleast_1d(np.asarray(along_m, float)), self.along_m[0],
                          self.along_m[-1])
        seg = np.clip(np.searchsorted(self.along_m, along_m, side="right") - 1, 0,
                      len(self.along_m) - 2)
        span = self.along_m[seg + 1] - self.along_m[seg]
        t = ((along_m - self.along_m[seg]) / np.where(span > 0, span, 1.0))[:, None]
        inner = (1 - t) * self._xyz[seg] + t * self._xyz[seg + 1]
        return _lat_lng(inner / np.linalg.norm(inner, axis=1, keepdims=True))

    def remaining_from(self, lat: float, lng: float, within_m: float = 50_000.0) -> Route:
        """The part of the route ahead of a car at (lat, lng): from the car's nearest point
        on the route onwards, keeping distances along measured from the original start."""
        # A car is nearly always on its route: look close first, far only if need be. (One
        # point: searched without the samples, which this full route would build for nothing.)
        car = unit_vectors(np.array([lat]), np.array([lng]))
        for reach in (min(2_000.0, within_m), within_m):
            located = self._locate(car, np.array([reach / MIN_RADIUS_M]), reach)
            if np.isfinite(located.offset_m[0]):
                break
        else:
            raise RouteError(f"position is more than {within_m / 1000:.0f} km from the route")
        start = float(located.along_m[0])
        if start >= self.along_m[-1] - 1.0:
            raise RouteError("position is at the end of the route: nothing is ahead")
        foot_lat, foot_lng = self.point_at(start)
        ahead = self.along_m > start
        # The vertices ahead keep their distances; only the first, partial segment is new.
        return Route(np.concatenate([foot_lat, self.lat[ahead]]),
                     np.concatenate([foot_lng, self.lng[ahead]]),
                     _along_m=np.concatenate([[start], self.along_m[ahead]]))

    def points_every(self, step_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Points along the route `step_m` apart from its start, and its end: on each
        segment's great circle (no antimeridian or polar trouble from lat/lng maths)."""
        lat, lng = self.point_at(np.arange(self.along_m[0], self.along_m[-1], step_m))
        return np.append(lat, self.lat[-1]), np.append(lng, self.lng[-1])

    @cached_property
    def _samples(self) -> tuple[np.ndarray, cKDTree]:
        """Points on the route every SCREEN_STEP_M, in a k-d tree on the unit sphere."""
        along = np.append(np.arange(self.along_m[0], self.along_m[-1], SCREEN_STEP_M),
                          self.along_m[-1])
        return along, cKDTree(unit_vectors(*self.point_at(along)))

    def distance_lower_bound(self, lat: np.ndarray, lng: np.ndarray,
                             within_m: float) -> np.ndarray:
        """A lower bound of each point's distance to the route (inf beyond `within_m`): every
        route point is within half a step of a sample, and an angle times MIN_RADIUS_M never
        overstates a distance."""
        angle = self._nearest_sample(unit_vectors(np.asarray(lat, float),
                                                  np.asarray(lng, float)), within_m)
        return np.maximum(angle * MIN_RADIUS_M - _HALF_STEP_M, 0.0)

    def _nearest_sample(self, units: np.ndarray, within_m: float) -> np.ndarray:
        """Angle on the unit sphere to the nearest route sample, inf when no sample is near
        enough for the point to be within `within_m`."""
        along_samples, tree = self._samples
        reach = (within_m + _HALF_STEP_M) / MIN_RADIUS_M * 1.001 + 1e-9
        chord, nearest = tree.query(units, distance_upper_bound=reach)
        found = nearest < len(along_samples)
        angle = 2 * np.arcsin(np.minimum(np.where(found, chord, 0.0) / 2, 1.0))
        return np.where(found, angle, np.inf)

    def locate(self, lat: np.ndarray, lng: np.ndarray, within_m: float) -> Located:
        """Offset, distance along and side of each point, for points within `within_m`
        (at most CHORD_RANGE_M, where distances are measured as chords).

        The nearest route sample (one k-d query) bounds each point's search: no point of the
        route is nearer than the sample less half a step, so points beyond that are skipped,
        and the sample is on the route, so only segments within its distance (times the
        radius ratio, for the ellipsoid) can hold the nearest point. Those few segments are
        then measured exactly."""
        units = unit_vectors(np.asarray(lat, float), np.asarray(lng, float))
        reach = np.minimum(self._nearest_sample(units, within_m) * RADIUS_RATIO,
                           within_m / MIN_RADIUS_M)
        return self._locate(units, reach, within_m)

    def _locate(self, units: np.ndarray, reach: np.ndarray, within_m: float) -> Located:
        """`locate` for points as unit vectors, each searched up to its `reach` (an angle on
        the unit sphere; inf: not at all)."""
        if within_m > CHORD_RANGE_M:
            raise ValueError(f"locate measures up to {CHORD_RANGE_M:.0f} m from the route")
        n = len(units)
        offset = np.full(n, np.inf)
        along = np.full(n, np.nan)
        side = np.zeros(n, dtype=np.int8)
        searched = np.nonzero(np.isfinite(reach))[0]
        if searched.size == 0:
            return Located(offset, along, side)
        point_idx, seg_idx = self._nearby_pairs(units[searched], reach[searched])
        if point_idx.size == 0:
            return Located(offset, along, side)
        point_idx = searched[point_idx]
        points = units[point_idx]
        foot, seg_side = self._feet(points, seg_idx)
        # Keep only pairs that can be a point's nearest: on the unit sphere a geodesic distance
        # is between R_min and R_max times the angle, so any pair whose angle exceeds the
        # point's smallest angle by more than that ratio cannot win (nor one beyond reach).
        gap = points - foot
        angle = 2 * np.arcsin(np.minimum(np.sqrt(_dot(gap, gap)) / 2, 1.0))
        smallest = np.full(n, np.inf)
        np.minimum.at(smallest, point_idx, angle)
        keep = ((angle <= smallest[point_idx] * RADIUS_RATIO + 1e-9)
                & (angle * MIN_RADIUS_M <= within_m + 1.0))
        point_idx, seg_idx, foot, seg_side = (point_idx[keep], seg_idx[keep], foot[keep],
                                              seg_side[keep])
        # Feet and points are a few kilometres apart at most, and every foot is within
        # MAX_SEGMENT_M of its segment's start: the chord formula is exact there.
        foot_ecef = ecef_from_unit(foot)
        dist = chord_distance_m(ecef_from_unit(units)[point_idx], foot_ecef)
        # For each point keep its nearest pair; ties (a route passing twice) go to the earliest
        # along the route, ordered by segment start and then the foot's place on the segment.
        from_a = _dot(self._xyz[seg_idx], foot)
        order = np.lexsort((-from_a, seg_idx, dist, point_idx))
        best = order[np.unique(point_idx[order], return_index=True)[1]]
        chosen, seg = point_idx[best], seg_idx[best]
        from_start = chord_distance_m(self._ecef[seg], foot_ecef[best])
        offset[chosen] = dist[best]
        along[chosen] = self.along_m[seg] + from_start
        side[chosen] = seg_side[best]
        return Located(offset, along, side)

    def _nearby_pairs(self, units: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate (point, segment) pairs: segments with a point within each point's reach,
        found with k-d trees of segment midpoints and of the points on the unit sphere.
        Conservative: a chord is shorter than its arc, and the reach has a margin."""
        reach = reach * 1.001 + 1e-9
        pairs = self._midpoints.sparse_distance_matrix(
            cKDTree(units), self._max_half + float(reach.max()), output_type="ndarray")
        near = pairs["v"] <= self._half[pairs["i"]] + reach[pairs["j"]]
        return pairs["j"][near].astype(np.intp), pairs["i"][near].astype(np.intp)

    def _feet(self, points: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The nearest point of each segment's great-circle arc to each point, and the side."""
        normal = self._normal[seg]
        height = _dot(points, normal)
        foot = points - height[:, None] * normal
        foot_norm = np.sqrt(_dot(foot, foot))
        foot /= np.where(foot_norm == 0, 1.0, foot_norm)[:, None]
        inside = ((_dot(foot, self._past_a[seg]) >= 0) & (_dot(foot, self._before_b[seg]) >= 0)
                  & ~self._degenerate[seg])
        a, b = self._xyz[seg], self._xyz[seg + 1]
        # For unit vectors |p - a|^2 = 2 - 2 p.a: the nearer end has the larger dot.
        endpoint = np.where((_dot(points, a) >= _dot(points, b))[:, None], a, b)
        foot = np.where(inside[:, None], foot, endpoint)
        side = -np.sign(height).astype(np.int8)
        return foot, side


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _densified(lat: np.ndarray, lng: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split segments longer than MAX_SEGMENT_M at intermediate geodesic points; returns the
    vertices and the length of each segment."""
    _, _, steps = WGS84.inv(lng[:-1], lat[:-1], lng[1:], lat[1:])
    long_segments = np.nonzero(steps > MAX_SEGMENT_M)[0]
    if long_segments.size == 0:
        return lat, lng, steps
    out_lat, out_lng, last = [], [], 0
    for i in long_segments:  # a loop over long segments only, which real routes rarely have
        out_lat.append(lat[last:i + 1])
        out_lng.append(lng[last:i + 1])
        extra = int(np.ceil(steps[i] / MAX_SEGMENT_M)) - 1
        inner = np.array(WGS84.npts(lng[i], lat[i], lng[i + 1], lat[i + 1], extra))
        out_lng.append(inner[:, 0])
        out_lat.append(inner[:, 1])
        last = i + 1
    out_lat.append(lat[last:])
    out_lng.append(lng[last:])
    lat, lng = np.concatenate(out_lat), np.concatenate(out_lng)
    return lat, lng, WGS84.inv(lng[:-1], lat[:-1], lng[1:], lat[1:])[2]


def route_from_points(lat, lng) -> Route:
    """A Route from vertices, after the checks that make it servable (422 otherwise)."""
    lat, lng = np.asarray(lat, float), np.asarray(lng, float)
    if lat.size > MAX_ROUTE_POINTS:
        raise RouteError(f"a route has at most {MAX_ROUTE_POINTS} points")
    if not (np.isfinite(lat).all() and np.isfinite(lng).all()):
        raise RouteError("route coordinates must be finite numbers")
    if (np.abs(lat) > 90).any() or (np.abs(lng) > 180).any():
        raise RouteError("route coordinates must be [lng, lat] with |lng| <= 180, |lat| <= 90")
    if lat.size:
        keep = np.concatenate([[True], (np.diff(lat) != 0) | (np.diff(lng) != 0)])
        lat, lng = lat[keep], lng[keep]
    if lat.size < 2:
        raise RouteError("a route needs at least 2 distinct points")
    route = Route(lat, lng)
    if route.length_m > MAX_ROUTE_LENGTH_M:
        raise RouteError(f"a route is at most {MAX_ROUTE_LENGTH_M / 1000:.0f} km long")
    return route


def route_from_geojson(line: dict) -> Route:
    """A GeoJSON LineString, coordinates in [lng, lat] order."""
    if not isinstance(line, dict) or line.get("type") != "LineString":
        raise RouteError("route must be a GeoJSON LineString")
    coords = line.get("coordinates")
    if (not isinstance(coords, list) or len(coords) > MAX_ROUTE_POINTS
            or not all(isinstance(c, list) and len(c) in (2, 3) for c in coords)
            or not all(isinstance(v, int | float) and not isinstance(v, bool)
                       for c in coords for v in c)):
        raise RouteError("route coordinates must be a list of [lng, lat] number pairs")
    array = np.array([c[:2] for c in coords], dtype=float).reshape(-1, 2)
    return route_from_points(array[:, 1], array[:, 0])


def route_from_polyline(encoded: str) -> Route:
    """A Google encoded polyline of precision 5 (pairs decode as (lat, lng))."""
    try:
        pairs = polyline.decode(encoded, 5)
    except (ValueError, IndexError, TypeError) as error:
        raise RouteError("polyline is not a valid encoded polyline") from error
    array = np.array(pairs, dtype=float).reshape(-1, 2)
    return route_from_points(array[:, 0], array[:, 1])
