"""Routes as cars report them, and exact distances from places to them.

A route is a sequence of WGS84 vertices joined by geodesics. `Route.locate` answers, for many
points at once, how far each is from the route (the geodesic distance to the nearest point of
the route, exact to well under a metre), how far along the route that nearest point lies, and on
which side of the direction of travel the point is. Pure functions, numpy and compiled loops;
no Redis.

How it stays exact and fast: long segments are first split at true geodesic points so no
segment exceeds `MAX_SEGMENT_M`; each point's foot on a segment is found on the sphere (closed
form) and the distance to that foot is measured on the ellipsoid (`geo.earth`: the chord
between Earth-centred points, corrected for curvature, which equals the geodesic to
millimetres at these ranges). The sphere's foot lies off the ellipsoid's by up to the
eccentricity squared (0.0067) times the point's distance from the route, along the route: how
far along a place is can be off by metres at a corridor's edge (up to 5.4 m at 800 m off the
route, 34 m at 5 km; tests/test_geo_route.py). The distance is flat around its minimum, so its own
error stays within centimetres (under 15 cm at 5 km, tested too).

Which segments a point is measured against is decided by a bounding-sphere tree over the
segments in route order (consecutive segments are close, so each node's sphere is tight): a
compiled branch-and-bound visits the nearer child first and skips every node that provably
cannot hold a point nearer than the best found (or within the search distance). The compiled
loop costs a quarter of a microsecond a point or less on a 50 km route; the same search in
numpy (k-d trees and pair arrays) cost over a microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polyline
from numba import njit

from .earth import (
    CHORD_RANGE_M,
    MEAN_RADIUS_M,
    WGS84,
    chord_m,
    distance_m,
    ecef_from_unit,
    ecef_of_unit,
)

MAX_ROUTE_POINTS = 20_000
MAX_ROUTE_LENGTH_M = 2_000_000.0
MAX_SEGMENT_M = 5_000.0
DISTINCT_M = 0.001  # a route whose every point is nearer than this to the next is a point
# The smallest radius of curvature of the WGS84 ellipsoid (meridional, at the equator): an
# angle on the unit sphere times this never overstates a geodesic distance, so a bound
# computed with it never skips a segment that could be nearest.
MIN_RADIUS_M = 6_335_000.0
_LEAF_SEGMENTS = 4  # segments per leaf of the bounding-sphere tree
# Two parts of a route this close in distance to a point count as equally near it, and the
# earlier one along the route is its nearest: far above rounding (nanometres), far below
# anything a corridor can tell (a metre).
TIE_M = 1e-3
# A car's heading picks among the passes of a route within this of the nearest (the two sides
# of a road a route drives out and back: a lane or a carriageway apart).
PASS_TOLERANCE_M = 50.0
_PASS_STEP_M = 10.0  # how finely a route is walked to tell its passes apart (when it must be)
_CLEARLY_DEG = 1.0  # above the bearings' spherical error (0.2 degrees)
_LAP_M = 5.0  # passes this much farther than the nearest count as near (a GPS fix's error)
_NEAR_TIES = 16  # near-equal passes kept per point (a route passing a point 16 times)
_FRONTIER_NODES = 64  # tree nodes a group of points starts its searches from, at most


class RouteError(ValueError):
    """A route that cannot be served; the message says why, for a 422."""


class NothingAhead(Exception):
    """The car is at the end of its route (within a metre): no part of it is ahead, so
    nothing along it is either; an answer, not an error (a car that has arrived still asks)."""


def unit_vectors(lat: np.ndarray, lng: np.ndarray) -> np.ndarray:
    """Unit vectors (x, y, z on the last axis) at latitudes and longitudes in degrees: by the
    compiled loops' own formula (`_unit_of`), so that a point and a vertex at the same
    coordinates are the same vector to the last bit."""
    lat, lng = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lng, float))
    return _units(np.ascontiguousarray(lat).ravel(), np.ascontiguousarray(lng).ravel()
                  ).reshape(*lat.shape, 3)


@njit(cache=True)
def _units(lat, lng):
    out = np.empty((len(lat), 3))
    for i in range(len(lat)):
        out[i, 0], out[i, 1], out[i, 2] = _unit_of(lat[i], lng[i])
    return out


def _lat_lng(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


@dataclass(frozen=True)
class Located:
    """Per point: `offset_m` to the route, `along_m` from the route start to the nearest point,
    `side` +1 right / -1 left of travel (0 on the line), and the point itself Earth-centred
    (`ecef`, n x 3 metres: what other distances from it start from). Points farther than the
    search distance get `offset_m = inf`."""

    offset_m: np.ndarray
    along_m: np.ndarray
    side: np.ndarray
    ecef: np.ndarray

    def take(self, rows: np.ndarray) -> Located:
        return Located(self.offset_m[rows], self.along_m[rows], self.side[rows],
                       self.ecef[rows])


@dataclass(frozen=True)
class PointGroups:
    """Consecutive runs of points (`counts[g]` points each), every point of run g within
    `radius_m` of (`lat[g]`, `lng[g]`); a point found farther is simply searched alone."""

    counts: np.ndarray
    lat: np.ndarray
    lng: np.ndarray
    radius_m: float

    def keep(self, mask: np.ndarray) -> PointGroups:
        """The same groups over the points where `mask` is true."""
        kept = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
        ends = np.cumsum(self.counts)
        return PointGroups(kept[ends] - kept[ends - self.counts], self.lat, self.lng,
                           self.radius_m)


class Route:
    """Vertices in order of travel (`lat`, `lng` arrays, degrees) and the geodesic distance from
    the start to each (`along_m`)."""

    def __init__(self, lat: np.ndarray, lng: np.ndarray, start_along_m: float = 0.0,
                 _along_m: np.ndarray | None = None, _steps: np.ndarray | None = None):
        if _along_m is None:
            lat, lng, steps = _densified(np.asarray(lat, float), np.asarray(lng, float),
                                         _steps)
            _along_m = start_along_m + np.concatenate([[0.0], np.cumsum(steps)])
        self.lat, self.lng, self.along_m = lat, lng, _along_m
        self._xyz = unit_vectors(lat, lng)
        self._ecef = ecef_from_unit(self._xyz)
        (self._normal, self._degenerate, self._past_a, self._before_b, mid,
         half) = _segment_geometry(self._xyz)
        self._tree = _sphere_tree(mid, half, _LEAF_SEGMENTS)

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
        return _lat_lng(self._units_at(along_m, seg))

    def _units_at(self, along_m: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """Unit vectors of the points `along_m` along, each on its segment `seg`'s great
        circle."""
        span = self.along_m[seg + 1] - self.along_m[seg]
        t = ((along_m - self.along_m[seg]) / np.where(span > 0, span, 1.0))[:, None]
        inner = (1 - t) * self._xyz[seg] + t * self._xyz[seg + 1]
        return inner / np.linalg.norm(inner, axis=1, keepdims=True)

    def remaining_from(self, lat: float, lng: float, within_m: float = 50_000.0,
                       heading_deg: float | None = None) -> Route:
        """The part of the route ahead of a car at (lat, lng): from the car's nearest point
        on the route onwards, keeping distances along measured from the original start. Where
        the route passes the car more than once (an out-and-back, a loop), the earliest pass,
        unless the route there runs against `heading_deg` (more than 90 degrees off): then the
        pass that runs with it (`_pass_along`), if any."""
        located = self.locate(np.array([lat]), np.array([lng]), within_m)
        # locate searches a little beyond `within_m` (its reach is in angles on the smallest
        # radius of the earth): what it finds there is still too far.
        if not located.offset_m[0] <= within_m:
            raise RouteError(f"position is more than {within_m / 1000:.0f} km from the route")
        start = float(located.along_m[0])
        if heading_deg is not None:
            start = self._pass_along(lat, lng, heading_deg, start, float(located.offset_m[0]))
        if start >= self.along_m[-1] - 1.0:
            raise NothingAhead
        foot_lat, foot_lng = self.point_at(start)
        # A vertex the car is at (to rounding) would start the route ahead with a segment of
        # nanometres, whose direction is noise: places nearest the car took their side from it.
        ahead = self.along_m > start + TIE_M
        # The vertices ahead keep their distances; only the first, partial segment is new.
        return Route(np.concatenate([foot_lat, self.lat[ahead]]),
                     np.concatenate([foot_lng, self.lng[ahead]]),
                     _along_m=np.concatenate([[start], self.along_m[ahead]]))

    def _pass_along(self, lat: float, lng: float, heading_deg: float, start: float,
                    offset_m: float) -> float:
        """How far along the pass the car drives (`remaining_from`): `start` (the nearest
        point) if the route there runs with the heading (either segment, at a vertex); else
        the nearest point of the nearest stretch of the route that runs with it (clearly more
        than the car's own pass does; the earliest of those within _LAP_M of it), of those
        within PASS_TOLERANCE_M of the nearest distance, found on points every _PASS_STEP_M
        (on the sphere: centimetres off at a car's distance from its route); else `start`."""
        point = unit_vectors(np.array([lat]), np.array([lng]))[0]
        here = np.flatnonzero((self.along_m[:-1] <= start) & (start <= self.along_m[1:])
                              & ~self._degenerate)
        own = _turns(*self._feet(point, here), heading_deg).min(initial=180.0)
        if own <= 90.0:
            return start
        # Only segments that may come within reach (a point of a segment is within half its
        # length of an end; lengths on the sphere, with 2% to spare), from each one's start
        # every _PASS_STEP_M, so that a stretch shorter than the step shows too.
        reach = (offset_m + PASS_TOLERANCE_M) / MEAN_RADIUS_M
        ends = _angles(self._xyz, point)
        half = 0.51 * np.diff(self.along_m) / MEAN_RADIUS_M
        reachable = np.flatnonzero(np.minimum(ends[:-1], ends[1:]) - half <= reach)
        pieces = [np.arange(self.along_m[k], self.along_m[k + 1], _PASS_STEP_M)
                  for k in reachable]
        if not pieces:
            return start
        along = np.concatenate(pieces)
        segment = np.repeat(reachable, [len(piece) for piece in pieces])
        samples = self._units_at(along, segment)
        away = _angles(samples, point)
        near = np.flatnonzero((away * MEAN_RADIUS_M <= offset_m + PASS_TOLERANCE_M)
                              & ~self._degenerate[segment])
        turns = _turns(samples[near], np.cross(self._normal[segment[near]], samples[near]),
                       heading_deg)
        # Clearly more with the heading than the car's own pass: a heading square to the road
        # (90 degrees off both ways) must not swap passes on rounding.
        near = near[(turns <= 90.0) & (turns < own - _CLEARLY_DEG)]
        found: list[tuple[float, float]] = []  # per stretch: its distance, its foot's along
        # Stretches: runs of samples with no gap longer than the step between them.
        for run in np.split(near, np.flatnonzero(np.diff(along[near]) > _PASS_STEP_M + 1e-6)
                            + 1):
            if run.size == 0:
                continue
            # The stretch's segments (its foot may lie across a vertex from its nearest
            # sample), not one of another pass along the same line.
            low, high = along[run[0]] - _PASS_STEP_M, along[run[-1]] + _PASS_STEP_M
            around = np.flatnonzero((self.along_m[:-1] <= high) & (self.along_m[1:] >= low)
                                    & ~self._degenerate)
            around = around[~np.isin(around, here)]
            if around.size == 0:
                continue
            feet, tangents = self._feet(point, around)
            with_heading = _turns(feet, tangents, heading_deg) <= 90.0
            if not with_heading.any():
                continue
            distance = np.where(with_heading, np.linalg.norm(feet - point, axis=1), np.inf)
            k = int(np.argmin(distance))
            s, foot = around[k], feet[k]
            whole, part = _angles(self._xyz[s], np.stack([self._xyz[s + 1], foot]))
            found.append((float(distance[k]) * MEAN_RADIUS_M, float(
                self.along_m[s] + (self.along_m[s + 1] - self.along_m[s])
                * (min(part / whole, 1.0) if whole > 0 else 0.0))))
        if not found:
            return start
        # The nearest stretch, the earliest of those as near to a few metres (a loop's laps).
        nearest = min(distance for distance, _ in found)
        return next(along for distance, along in found if distance <= nearest + _LAP_M)

    def _feet(self, point: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The nearest point of each of `segments` to `point` (unit vectors, on the sphere)
        and the direction of travel there."""
        normal = self._normal[segments]
        a, b = self._xyz[segments], self._xyz[segments + 1]
        feet = point - (normal @ point)[:, None] * normal
        feet /= np.maximum(np.linalg.norm(feet, axis=1), 1e-300)[:, None]
        inside = (~self._degenerate[segments]
                  & (np.einsum("ij,ij->i", feet, self._past_a[segments]) >= 0)
                  & (np.einsum("ij,ij->i", feet, self._before_b[segments]) >= 0))
        ends = np.where(((a @ point) >= (b @ point))[:, None], a, b)
        feet = np.where(inside[:, None], feet, ends)
        return feet, np.cross(normal, feet)

    def points_every(self, step_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Points along the route `step_m` apart from its start, and its end: on each
        segment's great circle (no antimeridian or polar trouble from lat/lng maths)."""
        lat, lng = self.point_at(np.arange(self.along_m[0], self.along_m[-1], step_m))
        return np.append(lat, self.lat[-1]), np.append(lng, self.lng[-1])

    def locate(self, lat: np.ndarray, lng: np.ndarray, within_m: float,
               groups: PointGroups | None = None) -> Located:
        """Offset, distance along and side of each point, for points within `within_m`
        (at most CHORD_RANGE_M, where distances are measured as chords). Where a point is
        as near two parts of the route (within TIE_M: a loop, an out-and-back), the earlier
        one along the route is its nearest. With `groups` (runs of nearby points, such as an
        index cell's records), each group first finds the few parts of the route its points
        may be near, and each point searches only those: the same answers, with no descent
        from the tree's root per point."""
        if within_m > CHORD_RANGE_M:
            raise ValueError(f"locate measures up to {CHORD_RANGE_M:.0f} m from the route")
        lat, lng = np.asarray(lat, float).ravel(), np.asarray(lng, float).ravel()
        if groups is None:  # one group of radius 0: every point searches from the root
            groups = PointGroups(np.array([len(lat)]), np.zeros(1), np.zeros(1), 0.0)
        if groups.counts.sum() != len(lat):
            raise ValueError("the groups must cover the points exactly")
        offset, along, side, points = _nearest_on_route(
            lat, lng, float(within_m), self._xyz, self._ecef, self.along_m, self._normal,
            self._past_a, self._before_b, self._degenerate, *self._tree,
            np.asarray(groups.counts, np.int64), unit_vectors(groups.lat, groups.lng),
            # The chord of the groups' radius, over-stated (MIN_RADIUS_M) and with a metre
            # to spare: a point outside it is searched from the root.
            2.0 * np.sin(min((groups.radius_m + 1.0) / MIN_RADIUS_M, np.pi) / 2.0))
        return Located(offset, along, side, points)


def _angles(vectors: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The angle between unit vectors, row by row (one side may be a single vector): from the
    cross and dot products, exact for tiny angles, where the arccosine of the dot is not."""
    vectors, other = np.broadcast_arrays(vectors, other)
    return np.arctan2(np.linalg.norm(np.cross(vectors, other), axis=-1),
                      np.einsum("...j,...j->...", vectors, other))


def _turns(feet: np.ndarray, tangents: np.ndarray, heading_deg: float) -> np.ndarray:
    """How many degrees each direction of travel (`tangents` at `feet`) is off the heading."""
    lat, lng = np.radians(_lat_lng(feet))
    east = np.stack([-np.sin(lng), np.cos(lng), np.zeros_like(lng)], axis=1)
    north = np.stack([-np.sin(lat) * np.cos(lng), -np.sin(lat) * np.sin(lng), np.cos(lat)],
                     axis=1)
    bearing = np.degrees(np.arctan2(np.einsum("ij,ij->i", tangents, east),
                                    np.einsum("ij,ij->i", tangents, north)))
    return np.abs((bearing - heading_deg + 180.0) % 360.0 - 180.0)


@njit(cache=True)
def _segment_geometry(xyz):
    """Per segment, once: the great circle's unit normal (a x b points left of travel; zero
    for a segment too short to have one), the two planes that bound the arc (a foot is on the
    arc iff both dots are >= 0), and the segment's bounding sphere in chord space: the arc's
    midpoint and the farthest any point of the arc is from it (an end)."""
    m = len(xyz) - 1
    normal = np.zeros((m, 3))
    degenerate = np.zeros(m, np.bool_)
    past_a = np.zeros((m, 3))
    before_b = np.zeros((m, 3))
    mid = np.zeros((m, 3))
    half = np.zeros(m)
    for s in range(m):
        ax, ay, az = xyz[s, 0], xyz[s, 1], xyz[s, 2]
        bx, by, bz = xyz[s + 1, 0], xyz[s + 1, 1], xyz[s + 1, 2]
        # a x (b - a), the same direction as a x b, but not lost to rounding on segments of
        # micrometres (near-duplicate vertices, or a car just before one).
        ux, uy, uz = bx - ax, by - ay, bz - az
        nx, ny, nz = ay * uz - az * uy, az * ux - ax * uz, ax * uy - ay * ux
        norm = np.sqrt(nx * nx + ny * ny + nz * nz)
        degenerate[s] = norm < 1e-15
        if degenerate[s]:
            nx = ny = nz = 0.0
        else:
            nx, ny, nz = nx / norm, ny / norm, nz / norm
        normal[s, 0], normal[s, 1], normal[s, 2] = nx, ny, nz
        past_a[s, 0], past_a[s, 1], past_a[s, 2] = (ny * az - nz * ay, nz * ax - nx * az,
                                                    nx * ay - ny * ax)
        before_b[s, 0], before_b[s, 1], before_b[s, 2] = (by * nz - bz * ny, bz * nx - bx * nz,
                                                          bx * ny - by * nx)
        cx, cy, cz = ax + bx, ay + by, az + bz
        c = np.sqrt(cx * cx + cy * cy + cz * cz)
        cx, cy, cz = cx / c, cy / c, cz / c
        mid[s, 0], mid[s, 1], mid[s, 2] = cx, cy, cz
        half[s] = max(np.sqrt((ax - cx) ** 2 + (ay - cy) ** 2 + (az - cz) ** 2),
                      np.sqrt((bx - cx) ** 2 + (by - cy) ** 2 + (bz - cz) ** 2))
    return normal, degenerate, past_a, before_b, mid, half


@njit(cache=True)
def _sphere_tree(mid, half, leaf):
    """A binary tree over the segments in route order: node k covers segments
    [first[k], last[k]) and every point of them lies within `radius[k]` (chord) of
    `centre[k]`; children[k] are -1 for a leaf. Built top-down, halving the range."""
    n = len(mid)
    capacity = 2 * n + 1  # a binary tree with at most n leaves
    first = np.zeros(capacity, np.int64)
    last = np.zeros(capacity, np.int64)
    children = np.full((capacity, 2), -1, np.int64)
    last[0] = n
    count = 1
    for k in range(capacity):  # nodes are numbered as they are made, parents first
        if k == count:
            break
        if last[k] - first[k] > leaf:
            split = (first[k] + last[k]) // 2
            first[count], last[count] = first[k], split
            first[count + 1], last[count + 1] = split, last[k]
            children[k, 0], children[k, 1] = count, count + 1
            count += 2
    first, last, children = first[:count], last[:count], children[:count]
    centre, radius = _node_spheres(mid, half, first, last)
    return first, last, children, centre, radius


@njit(cache=True)
def _node_spheres(mid, half, first, last):
    """Each node's centre (its segments' mean midpoint, on the sphere) and the radius that
    holds every segment's own sphere."""
    nodes = len(first)
    centre = np.zeros((nodes, 3))
    radius = np.zeros(nodes)
    for k in range(nodes):
        cx = cy = cz = 0.0
        for s in range(first[k], last[k]):
            cx, cy, cz = cx + mid[s, 0], cy + mid[s, 1], cz + mid[s, 2]
        norm = np.sqrt(cx * cx + cy * cy + cz * cz)
        cx, cy, cz = cx / norm, cy / norm, cz / norm
        r = 0.0
        for s in range(first[k], last[k]):
            r = max(r, np.sqrt((mid[s, 0] - cx) ** 2 + (mid[s, 1] - cy) ** 2
                               + (mid[s, 2] - cz) ** 2) + half[s])
        centre[k, 0], centre[k, 1], centre[k, 2] = cx, cy, cz
        radius[k] = r
    return centre, radius


@njit(cache=True)
def _frontier(cx, cy, cz, limit, own_radius, children, centre, radius, frontier, distance):
    """The tree nodes a search from any point within `own_radius` (chord) of c may visit:
    every node not farther than `limit` from c, expanded from the root while a node is larger
    than the group (so each point descends only its own corner of the route) and the frontier
    has room. Sorted farthest first, the order they are pushed. Returns their count."""
    count = 0
    pending = np.empty(len(frontier) + 2, np.int64)
    pending[0], top = 0, 1
    while top > 0:
        top -= 1
        k = pending[top]
        dx, dy, dz = cx - centre[k, 0], cy - centre[k, 1], cz - centre[k, 2]
        d = np.sqrt(dx * dx + dy * dy + dz * dz)
        if d - radius[k] > limit:
            continue
        if (children[k, 0] >= 0 and radius[k] > own_radius
                and count + top + 2 <= len(frontier)):
            pending[top], pending[top + 1] = children[k, 0], children[k, 1]
            top += 2
        else:
            frontier[count], distance[count] = k, d
            count += 1
    for i in range(1, count):  # insertion sort, farthest first: a handful of nodes
        k, d = frontier[i], distance[i]
        j = i - 1
        while j >= 0 and distance[j] < d:
            frontier[j + 1], distance[j + 1] = frontier[j], distance[j]
            j -= 1
        frontier[j + 1], distance[j + 1] = k, d
    return count


@njit(cache=True)
def _nearest_on_route(lat, lng, within_m, xyz, ecef, along_m, normal, past_a, before_b,
                      degenerate, first, last, children, centre, radius, group_counts,
                      group_xyz, group_chord):
    n = len(lat)
    offset = np.full(n, np.inf)
    along = np.full(n, np.nan)
    side = np.zeros(n, np.int8)
    points = np.empty((n, 3))
    # Searched: feet whose angle times MIN_RADIUS_M is within the distance (plus a metre).
    reach_angle = (within_m + 1.0) / MIN_RADIUS_M
    reach_chord = 2.0 * np.sin(min(reach_angle, np.pi) / 2.0)
    # Depth-first: the stack never holds more than the frontier and the tree's depth plus one
    # (a route of 2**100 segments would still fit).
    frontier = np.empty(_FRONTIER_NODES, np.int64)
    frontier_distance = np.empty(_FRONTIER_NODES)
    stack = np.empty(_FRONTIER_NODES + 128, np.int64)
    group, group_end, seeds = -1, 0, 0
    # The segments found within TIE_M of the nearest so far: a route that passes a point twice
    # (a loop, an out-and-back) is as near on both passes up to rounding, and the earlier
    # pass must win whatever order the tree is searched in.
    near_seg = np.empty(_NEAR_TIES, np.int64)
    near_dist = np.empty(_NEAR_TIES)
    near_foot = np.empty((_NEAR_TIES, 3))
    near_side = np.empty(_NEAR_TIES, np.int8)
    for i in range(n):
        while i == group_end:  # the next group's points start here: its frontier, once
            group += 1
            group_end += group_counts[group]
            seeds = _frontier(group_xyz[group, 0], group_xyz[group, 1], group_xyz[group, 2],
                              reach_chord + group_chord, group_chord, children, centre,
                              radius, frontier, frontier_distance)
        if i > 0 and lat[i] == lat[i - 1] and lng[i] == lng[i - 1]:
            # The same position as the point before (a place's offers, filed side by side):
            # the same answer.
            offset[i], along[i], side[i] = offset[i - 1], along[i - 1], side[i - 1]
            points[i] = points[i - 1]
            continue
        px, py, pz = _unit_of(lat[i], lng[i])
        pex, pey, pez = ecef_of_unit(px, py, pz)
        points[i, 0], points[i, 1], points[i, 2] = pex, pey, pez
        best, count = np.inf, 0
        # Prune chord: nodes whose nearest possible point is farther than this (on the unit
        # sphere) cannot hold a foot within reach, nor one within TIE_M of the best.
        prune = reach_chord
        gx, gy, gz = (px - group_xyz[group, 0], py - group_xyz[group, 1],
                      pz - group_xyz[group, 2])
        if gx * gx + gy * gy + gz * gz <= group_chord * group_chord:
            stack[:seeds] = frontier[:seeds]
            top = seeds
        else:  # not within its group's radius after all: search from the root
            stack[0], top = 0, 1
        while top > 0:
            top -= 1
            k = stack[top]
            # |p - centre| - radius > prune, compared squared: no square root per node.
            dx, dy, dz = px - centre[k, 0], py - centre[k, 1], pz - centre[k, 2]
            limit = radius[k] + prune
            if dx * dx + dy * dy + dz * dz > limit * limit:
                continue
            left, right = children[k, 0], children[k, 1]
            if left >= 0:
                # Push the farther child first, so the nearer is searched first.
                lx, ly, lz = px - centre[left, 0], py - centre[left, 1], pz - centre[left, 2]
                rx, ry, rz = px - centre[right, 0], py - centre[right, 1], pz - centre[right, 2]
                if lx * lx + ly * ly + lz * lz <= rx * rx + ry * ry + rz * rz:
                    stack[top], stack[top + 1] = right, left
                else:
                    stack[top], stack[top + 1] = left, right
                top += 2
                continue
            for s in range(first[k], last[k]):
                ax, ay, az = xyz[s, 0], xyz[s, 1], xyz[s, 2]
                bx, by, bz = xyz[s + 1, 0], xyz[s + 1, 1], xyz[s + 1, 2]
                nx, ny, nz = normal[s, 0], normal[s, 1], normal[s, 2]
                height = px * nx + py * ny + pz * nz
                fx, fy, fz = px - height * nx, py - height * ny, pz - height * nz
                norm = np.sqrt(fx * fx + fy * fy + fz * fz)
                if norm > 0.0:
                    fx, fy, fz = fx / norm, fy / norm, fz / norm
                inside = (not degenerate[s]
                          and fx * past_a[s, 0] + fy * past_a[s, 1] + fz * past_a[s, 2] >= 0
                          and fx * before_b[s, 0] + fy * before_b[s, 1]
                          + fz * before_b[s, 2] >= 0)
                if not inside:
                    # For unit vectors |p - a|^2 = 2 - 2 p.a: the nearer end has the larger dot.
                    if px * ax + py * ay + pz * az >= px * bx + py * by + pz * bz:
                        fx, fy, fz = ax, ay, az
                    else:
                        fx, fy, fz = bx, by, bz
                gx, gy, gz = px - fx, py - fy, pz - fz
                chord = np.sqrt(gx * gx + gy * gy + gz * gz)
                # Beyond reach, or surely farther than the best (a chord is shorter than its
                # arc, and an angle times MIN_RADIUS_M never overstates a distance): skip
                # the ellipsoid.
                if chord > reach_chord or chord * MIN_RADIUS_M > (best + TIE_M) * (1.0 + 1e-6):
                    continue
                fex, fey, fez = ecef_of_unit(fx, fy, fz)
                dist = chord_m(pex, pey, pez, fex, fey, fez)
                if dist > best + TIE_M:
                    continue
                if dist < best:
                    best = dist
                    # Nothing farther than the best (as an angle, with the smallest radius)
                    # can be near it.
                    angle = min((best + TIE_M) * (1.0 + 1e-6) / MIN_RADIUS_M, reach_angle)
                    prune = min(prune, 2.0 * np.sin(angle / 2.0))
                    kept = 0
                    for j in range(count):
                        if near_dist[j] <= best + TIE_M:
                            near_seg[kept], near_dist[kept] = near_seg[j], near_dist[j]
                            near_foot[kept], near_side[kept] = near_foot[j], near_side[j]
                            kept += 1
                    count = kept
                j = count
                if count == _NEAR_TIES:  # more passes within a millimetre than kept: keep
                    j = np.argmax(near_seg)  # the earliest ones
                    if near_seg[j] < s:
                        continue
                else:
                    count += 1
                near_seg[j], near_dist[j] = s, dist
                near_foot[j, 0], near_foot[j, 1], near_foot[j, 2] = fex, fey, fez
                near_side[j] = -1 if height > 0 else (1 if height < 0 else 0)
        if count > 0:
            j = np.argmin(near_seg[:count])
            seg = near_seg[j]
            offset[i] = near_dist[j]
            along[i] = along_m[seg] + chord_m(ecef[seg, 0], ecef[seg, 1], ecef[seg, 2],
                                               near_foot[j, 0], near_foot[j, 1],
                                               near_foot[j, 2])
            side[i] = near_side[j]
    return offset, along, side, points


# A point's sines and cosines from a table at every _TABLE_STEP radians and the series of the
# small rest (|d| <= _TABLE_STEP / 2: the first term left out is below 1e-22), by the
# angle-sum formulas: a few multiplications for four libm calls a point. A function of the
# point alone, so that grouping points never changes an answer.
_TABLE_STEP = 0.01
_TABLE_ANGLES = np.arange(-np.ceil(np.pi / _TABLE_STEP) - 1, np.ceil(np.pi / _TABLE_STEP) + 2
                          ) * _TABLE_STEP
_TABLE_COS, _TABLE_SIN = np.cos(_TABLE_ANGLES), np.sin(_TABLE_ANGLES)
_TABLE_ZERO = int(np.ceil(np.pi / _TABLE_STEP)) + 1  # the row of angle 0


@njit(cache=True, inline="always")
def _unit_of(lat, lng):
    """The unit vector at (lat, lng) degrees: libm's sines and cosines within 1e-15."""
    cos_phi, sin_phi = _cos_sin(np.radians(lat))
    cos_lam, sin_lam = _cos_sin(np.radians(lng))
    return cos_phi * cos_lam, cos_phi * sin_lam, sin_phi


@njit(cache=True, inline="always")
def _cos_sin(angle):
    if not abs(angle) <= np.pi:  # beyond the table (or nan): libm, not a read out of bounds
        return np.cos(angle), np.sin(angle)
    k = int(np.rint(angle / _TABLE_STEP))
    d = angle - k * _TABLE_STEP
    d2 = d * d
    c = 1.0 - d2 / 2.0 * (1.0 - d2 / 12.0 * (1.0 - d2 / 30.0))
    s = d * (1.0 - d2 / 6.0 * (1.0 - d2 / 20.0 * (1.0 - d2 / 42.0)))
    row = k + _TABLE_ZERO
    return (_TABLE_COS[row] * c - _TABLE_SIN[row] * s, _TABLE_SIN[row] * c + _TABLE_COS[row] * s)


def _densified(lat: np.ndarray, lng: np.ndarray, steps: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split segments longer than MAX_SEGMENT_M at intermediate geodesic points; returns the
    vertices and the length of each segment (`distance_m`: pyproj's geodesic per pair cost
    more than the rest of parsing a route), given or measured."""
    if steps is None:
        steps = distance_m(lat[:-1], lng[:-1], lat[1:], lng[1:])
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
    return lat, lng, distance_m(lat[:-1], lng[:-1], lat[1:], lng[1:])


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
    steps = distance_m(lat[:-1], lng[:-1], lat[1:], lng[1:])
    # Points written apart may be one place on the earth: longitude 180 and -180, a pole at
    # two longitudes, coordinates a rounding apart.
    if steps.max() < DISTINCT_M:
        raise RouteError("a route needs at least 2 distinct points")
    # Before the long segments are split (MAX_SEGMENT_M): a route of jumps across the globe
    # would become millions of points first, and take minutes and gigabytes to refuse.
    if steps.sum() > MAX_ROUTE_LENGTH_M:
        raise RouteError(f"a route is at most {MAX_ROUTE_LENGTH_M / 1000:.0f} km long")
    return Route(lat, lng, _steps=steps)


def route_from_geojson(line: dict) -> Route:
    """A GeoJSON LineString, coordinates in [lng, lat] order."""
    if not isinstance(line, dict) or line.get("type") != "LineString":
        raise RouteError("route must be a GeoJSON LineString")
    coords = line.get("coordinates")
    if isinstance(coords, list) and len(coords) > MAX_ROUTE_POINTS:
        raise RouteError(f"a route has at most {MAX_ROUTE_POINTS} points")
    # Parsed JSON holds only list, dict, str, int, float, bool and None, so comparing exact
    # types (a set per check, not a generator per value) rejects bools and strings too.
    if (not isinstance(coords, list)
            or not {type(c) for c in coords} <= {list}
            or not (sizes := {len(c) for c in coords}) <= {2, 3}
            or not {type(v) for c in coords for v in c} <= {int, float}):
        raise RouteError("route coordinates must be a list of [lng, lat] number pairs")
    try:
        # Pairs as they are (half the time of copying each); altitudes cut off when present.
        pairs = coords if sizes == {2} else [c[:2] for c in coords]
        array = np.array(pairs, dtype=float).reshape(-1, 2)
    except OverflowError:  # an integer of hundreds of digits is valid JSON
        raise RouteError("route coordinates must be [lng, lat] with |lng| <= 180, "
                         "|lat| <= 90") from None
    return route_from_points(array[:, 1], array[:, 0])


def route_from_polyline(encoded: str) -> Route:
    """A Google encoded polyline of precision 5 (pairs decode as (lat, lng))."""
    try:
        pairs = polyline.decode(encoded, 5)
    except (ValueError, IndexError, TypeError, OverflowError) as error:  # Overflow: a number
        # of hundreds of digits, too large for a float once divided by 1e5
        raise RouteError("polyline is not a valid encoded polyline") from error
    array = np.array(pairs, dtype=float).reshape(-1, 2)
    return route_from_points(array[:, 0], array[:, 1])


def warm_up() -> None:
    """Compile the route search and the long-distance measure (or load them from numba's
    cache), so that a server's first request does not wait seconds for them."""
    route_from_points([0.0, 0.0], [0.0, 0.001]).locate([0.0], [0.0005], 10.0)
    distance_m(0.0, 0.0, np.zeros(1), np.ones(1))
    distance_m(0.0, 0.0, np.zeros(2), np.zeros(2), ecef_from_unit(unit_vectors(np.zeros(2),
                                                                             np.zeros(2))))
