"""Exact distances from places to a route, checked against a brute-force geodesic search."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.cells import cell_groups, cell_of
from geo.earth import CHORD_RANGE_M, chord_distance_m, ecef_from_unit
from geo.route import (
    MIN_RADIUS_M,
    TIE_M,
    WGS84,
    PointGroups,
    RouteError,
    route_from_geojson,
    route_from_points,
    route_from_polyline,
    unit_vectors,
)

from .conftest import SHARED_DATA, drawn_route


def brute_force(route_lat, route_lng, lat, lng) -> float:
    """Geodesic distance from a point to the route, by sampling each geodesic segment densely
    and then again around the best sample (resolution far below a centimetre)."""
    best = np.inf
    for i in range(len(route_lat) - 1):
        lo_lng, lo_lat = route_lng[i], route_lat[i]
        hi_lng, hi_lat = route_lng[i + 1], route_lat[i + 1]
        for _ in range(3):
            pts = np.array([(lo_lng, lo_lat), *WGS84.npts(lo_lng, lo_lat, hi_lng, hi_lat, 400),
                            (hi_lng, hi_lat)])
            _, _, d = WGS84.inv(np.full(len(pts), lng), np.full(len(pts), lat),
                                pts[:, 0], pts[:, 1])
            k = int(np.argmin(d))
            lo, hi = pts[max(k - 1, 0)], pts[min(k + 1, len(pts) - 1)]
            lo_lng, lo_lat, hi_lng, hi_lat = lo[0], lo[1], hi[0], hi[1]
            segment_best = d[k]
        best = min(best, segment_best)
    return float(best)


@st.composite
def route_and_places(draw):
    lat0 = draw(st.floats(-84, 84))
    lng0 = draw(st.floats(-180, 180))
    span = draw(st.sampled_from([0.005, 0.05, 0.3]))
    n = draw(st.integers(2, 6))
    dlat = np.array(draw(st.lists(st.floats(-span, span), min_size=n, max_size=n)))
    dlng = np.array(draw(st.lists(st.floats(-span, span), min_size=n, max_size=n)))
    scale = 1 / max(np.cos(np.radians(lat0)), 0.1)
    route_lat = np.clip(lat0 + dlat, -89, 89)
    route_lng = (lng0 + dlng * scale + 180) % 360 - 180  # may cross the antimeridian
    k = draw(st.integers(1, 8))
    plat = np.clip(lat0 + np.array(draw(st.lists(st.floats(-span, span), min_size=k,
                                                  max_size=k))), -89, 89)
    plng = (lng0 + np.array(draw(st.lists(st.floats(-span, span), min_size=k, max_size=k)))
            * scale + 180) % 360 - 180
    corridor = draw(st.floats(10, 5000))
    return route_lat, route_lng, plat, plng, corridor


@settings(max_examples=80, deadline=None)
@given(route_and_places())
def test_corridor_membership_and_offset_match_brute_force(case):
    route_lat, route_lng, plat, plng, corridor = case
    keep = np.concatenate([[True], (np.diff(route_lat) != 0) | (np.diff(route_lng) != 0)])
    route = drawn_route(route_lat, route_lng)
    if route is None:
        return
    located = route.locate(plat, plng, corridor)
    for i in range(len(plat)):
        truth = brute_force(route_lat[keep], route_lng[keep], plat[i], plng[i])
        if truth <= corridor - 1:
            assert located.offset_m[i] == pytest.approx(truth, abs=1.0)
        elif truth > corridor + 1:
            assert located.offset_m[i] > corridor


def test_side_is_right_or_left_of_travel():
    # Driving north along a meridian: east is on the right.
    route = route_from_points([60.0, 60.1], [25.0, 25.0])
    located = route.locate([60.05, 60.05], [25.01, 24.99], 2000)
    assert list(located.side) == [1, -1]


@pytest.mark.parametrize("at_lng", [-104.99, -104.98])
def test_a_car_at_a_vertex_sees_places_on_their_side(at_lng):
    """The route ahead of a car at a vertex started with a segment of nanometres (rounding),
    whose direction is noise: places nearest the car took their side from it."""
    route = route_from_points([39.745] * 4, [-105.0, -104.99, -104.98, -104.97])
    ahead = route.remaining_from(39.745, at_lng)
    located = ahead.locate([39.750, 39.740], [at_lng - 0.0005, at_lng - 0.0005], 1000)
    assert list(located.side) == [-1, 1]  # driving east: north is on the left
    assert np.diff(ahead.along_m).min() > 1.0


@pytest.mark.parametrize("lat, azimuth", [(0.0, 45.0), (45.0, 45.0), (45.0, 0.0),
                                          (60.0, 120.0), (-30.0, 300.0)])
@pytest.mark.parametrize("offset", [100.0, 800.0, 4990.0])
@pytest.mark.parametrize("turn", [-90.0, 90.0])
def test_distance_along_is_within_seven_thousandths_of_the_offset(lat, azimuth, offset, turn):
    """The foot is found on the sphere, so how far along it lies is off by up to the
    ellipsoid's eccentricity squared (0.0067) times the place's distance from the route (5 m
    at a 1 km corridor's edge, 34 m at 5 km); the offset, flat around its minimum, stays
    within centimetres."""
    end_lng, end_lat, _ = WGS84.fwd(10.0, lat, azimuth, 4000.0)
    route = route_from_points([lat, end_lat], [10.0, end_lng])
    foot_lng, foot_lat, _ = WGS84.fwd(10.0, lat, azimuth, 2000.0)
    back, _, _ = WGS84.inv(foot_lng, foot_lat, 10.0, lat)  # the azimuth at the foot
    place_lng, place_lat, _ = WGS84.fwd(foot_lng, foot_lat, back + turn, offset)
    located = route.locate([place_lat], [place_lng], CHORD_RANGE_M)
    # The geodesic at right angles to the route meets it at the true foot, 2,000 m along.
    assert located.offset_m[0] == pytest.approx(offset, abs=0.15)  # the corridor: 1 m
    assert abs(located.along_m[0] - 2000.0) <= 0.0068 * offset + 0.05


OUT_AND_BACK = ([39.745, 39.745, 39.745], [-105.0, -104.97, -105.0])


@pytest.mark.parametrize("heading, leg", [(None, "out"), (90.0, "out"), (60.0, "out"),
                                          (270.0, "back"), (200.0, "back")])
def test_on_a_route_passing_twice_the_heading_picks_the_pass(heading, leg):
    """Out along a street and back: a car on it is on the way out unless its heading says it
    drives back (within 90 degrees of the return leg's direction)."""
    route = route_from_points(*OUT_AND_BACK)
    turn = route.along_m[1]  # the far end, about 2.6 km out
    ahead = route.remaining_from(39.745, -104.98, heading_deg=heading)
    car_to_turn = WGS84.inv(-104.98, 39.745, -104.97, 39.745)[2]
    expected = turn - car_to_turn if leg == "out" else turn + car_to_turn
    assert ahead.along_m[0] == pytest.approx(expected, abs=0.5)


def test_the_heading_finds_the_pass_itself_not_a_segment_near_the_car():
    """Passes of many short segments, a corner just behind the car, a segment of centimetres
    and a heading square to the road: each found by review of the first version."""
    def along(lats, lngs, lat, lng, heading):
        return route_from_points(lats, lngs).remaining_from(lat, lng,
                                                            heading_deg=heading).along_m[0]

    # Out along lat 48 and back 5 m north of it, a vertex every 10 m or so: a car on the way
    # back starts where it is on that pass, not 50 m behind it.
    out = np.linspace(2.0, 2.01, 75)
    back_lat = WGS84.fwd(2.005, 48.0, 0.0, 5.0)[1]
    lats, lngs = [48.0] * 75 + [back_lat] * 75, [*out, *out[::-1]]
    car_lat = WGS84.fwd(2.005, 48.0, 0.0, 1.0)[1]
    truth = route_from_points(lats, lngs).along_m[75] + WGS84.inv(2.01, back_lat, 2.005,
                                                                  back_lat)[2]
    assert along(lats, lngs, car_lat, 2.005, 270.0) == pytest.approx(truth, abs=1.0)
    # North to a corner, east, then back west past the corner: heading west, the way back.
    lats, lngs = [47.99, 48.0, 48.0, 48.0], [2.0, 2.0, 2.01, 1.99]
    route = route_from_points(lats, lngs)
    truth = route.along_m[2] + WGS84.inv(2.0004, 48.0, 2.01, 48.0)[2]
    assert along(lats, lngs, 48.0, 2.0004, 280.0) == pytest.approx(truth, abs=1.0)
    # A U-turn within reach of the car, by a segment of centimetres (0/0 gave a NaN start and
    # a 500): heading back, the way back.
    lats, lngs = [48.0] * 4, [2.0, 2.01, 2.009999, 2.0]
    truth = route_from_points(lats, lngs).along_m[2] + WGS84.inv(2.009999, 48.0, 2.0097,
                                                                 48.0)[2]
    assert along(lats, lngs, 48.0, 2.0097, 270.0) == pytest.approx(truth, abs=1.0)
    # A way back shorter than the 10 m walk step, and a pass of 1 m segments.
    lats, lngs = [48.0, 48.0, 48.0], [2.0, WGS84.fwd(2.0, 48.0, 90.0, 4.0)[0], 2.0]
    car_lng = WGS84.fwd(2.0, 48.0, 90.0, 3.0)[0]
    assert along(lats, lngs, 48.0, car_lng, 270.0) == pytest.approx(5.0, abs=0.01)
    out = [WGS84.fwd(2.0, 48.0, 90.0, metres)[0] for metres in range(0, 501)]
    lats, lngs = [48.0] * 501 + [back_lat] * 501, [*out, *out[::-1]]
    route = route_from_points(lats, lngs)
    for metres in (137.3, 250.0, 411.8):
        car_lng = WGS84.fwd(2.0, 48.0, 90.0, metres)[0]
        truth = route.along_m[501] + (500.0 - metres)
        assert along(lats, lngs, car_lat, car_lng, 270.0) == pytest.approx(truth, abs=0.05)
    # Square to an out-and-back road: no pass runs more with it, the earliest stays.
    lats, lngs = [48.0, 48.01, 48.0], [2.0, 2.0, 2.0]
    for heading in (90.0, 270.0):
        assert along(lats, lngs, 48.005, 2.0, heading) == pytest.approx(
            along(lats, lngs, 48.005, 2.0, None))


def test_a_heading_no_pass_runs_with_keeps_the_earliest_pass():
    route = route_from_points([39.745, 39.745], [-105.0, -104.97])  # one way, eastward
    ahead = route.remaining_from(39.745, -104.98, heading_deg=270.0)
    assert ahead.along_m[0] == pytest.approx(route.remaining_from(39.745, -104.98).along_m[0])


def test_along_is_measured_from_the_route_start():
    route = route_from_points([0.0, 0.0, 0.0], [0.0, 0.01, 0.02])
    located = route.locate([0.001], [0.015], 500)
    _, _, expected = WGS84.inv(0.0, 0.0, 0.015, 0.0)
    assert located.along_m[0] == pytest.approx(expected, abs=0.5)
    assert located.offset_m[0] == pytest.approx(WGS84.inv(0.015, 0.0, 0.015, 0.001)[2], abs=0.5)


def test_points_beyond_the_search_distance_are_infinitely_far():
    route = route_from_points([0.0, 0.0], [0.0, 0.01])
    assert np.isinf(route.locate([0.5], [0.005], 1000).offset_m[0])


def test_route_across_the_antimeridian_is_short_and_works():
    route = route_from_points([-17.0, -17.0], [179.99, -179.99])
    assert route.length_m == pytest.approx(WGS84.inv(179.99, -17, -179.99, -17)[2], abs=0.1)
    assert route.locate([-17.001], [180.0], 500).offset_m[0] < 120


def test_route_at_high_latitude_works():
    route = route_from_points([89.9, 89.9], [0.0, 90.0])
    truth = brute_force(np.array([89.9, 89.9]), np.array([0.0, 90.0]), 89.905, 45.0)
    assert route.locate([89.905], [45.0], 5000).offset_m[0] == pytest.approx(truth, abs=1.0)


@pytest.mark.parametrize("coordinates, message", [
    ([[24.9, 60.1]], "2 distinct"),
    ([[24.9, 60.1], [24.9, 60.1]], "2 distinct"),
    ([[24.9, 91.0], [24.9, 60.1]], "lat"),
    ([[181.0, 60.0], [24.9, 60.1]], "lng"),
    ([[24.9, "x"], [24.9, 60.1]], "number pairs"),
    ([[0.0, 0.0], [30.0, 0.0]], "km long"),
    ([[10**400, 45], [8, 46]], "lng"),
    ([[0.0, 0.0]] * 20_001, "at most 20000 points"),
    # One place on the earth, written apart.
    ([[180.0, 0.0], [-180.0, 0.0]], "2 distinct"),
    ([[0.0, 90.0], [10.0, 90.0]], "2 distinct"),
    ([[0.0, 0.0], [1e-320, 1e-320]], "2 distinct"),
])
def test_unservable_routes_are_refused(coordinates, message):
    with pytest.raises(RouteError, match=message):
        route_from_geojson({"type": "LineString", "coordinates": coordinates})


def test_a_route_of_jumps_across_the_globe_is_refused_before_its_segments_are_split(
        monkeypatch):
    """500 jumps of 179 degrees: split into 5 km pieces first, they took 3.8 s and 0.9 GB to
    refuse (a review; 20,000 would take minutes and tens of GB)."""
    import geo.route

    def split(*args):
        raise AssertionError("segments split before the length was checked")

    monkeypatch.setattr(geo.route, "_densified", split)
    coordinates = [[0.0, 0.0] if i % 2 == 0 else [179.0, 0.0] for i in range(500)]
    with pytest.raises(RouteError, match="km long"):
        route_from_geojson({"type": "LineString", "coordinates": coordinates})


def test_a_position_just_beyond_reach_of_the_route_is_refused():
    """`locate` searches a little farther than asked (in angles on the smallest radius of the
    earth): 50,200 m east of a north-south route on the equator was taken as on it."""
    route = route_from_points([-1.0, 1.0], [0.0, 0.0])
    for metres, refused in ((49_900, False), (50_200, True)):
        lng, _, _ = WGS84.fwd(0.0, 0.0, 90.0, metres)
        if refused:
            with pytest.raises(RouteError, match="more than 50 km"):
                route.remaining_from(0.0, lng)
        else:
            assert route.remaining_from(0.0, lng).along_m[0] == pytest.approx(110_574, abs=5)


def test_altitudes_in_geojson_positions_are_ignored_even_in_some_positions_only():
    flat = route_from_geojson({"type": "LineString", "coordinates": [[24.9, 60.1], [25.0, 60.2]]})
    for coordinates in ([[24.9, 60.1, 12.5], [25.0, 60.2, 30]], [[24.9, 60.1], [25.0, 60.2, 8]]):
        route = route_from_geojson({"type": "LineString", "coordinates": coordinates})
        assert route.lat.tolist() == flat.lat.tolist() and route.lng.tolist() == flat.lng.tolist()
    with pytest.raises(RouteError, match="number pairs"):
        route_from_geojson({"type": "LineString", "coordinates": [[24.9, 60.1, "high"],
                                                                 [25.0, 60.2]]})


def test_ten_thousand_points_and_1500_km_are_accepted():
    lng = np.linspace(0, 13.4, 10_000)  # ~1,490 km along the equator
    route = route_from_points(np.zeros_like(lng), lng)
    assert 1_400_000 < route.length_m < 1_500_000


def test_polyline_decodes_in_lat_lng_order():
    route = route_from_polyline("_p~iF~ps|U_ulLnnqC_mqNvxq`@")
    assert route.lat[0] == pytest.approx(38.5)
    assert route.lng[0] == pytest.approx(-120.2)
    with pytest.raises(RouteError):
        route_from_polyline("\x00not a polyline")


@pytest.mark.skipif(not (SHARED_DATA / "traces" / "denver").exists(), reason="no traces")
def test_real_denver_trace_matches_brute_force():
    with open(SHARED_DATA / "traces" / "denver" / "sample_trace_1.csv") as f:
        rows = list(csv.DictReader(f))
    lat = np.array([float(r["latitude"]) for r in rows])
    lng = np.array([float(r["longitude"]) for r in rows])
    route = route_from_points(lat, lng)
    rng = np.random.default_rng(7)
    plat = rng.uniform(lat.min() - 0.01, lat.max() + 0.01, 30)
    plng = rng.uniform(lng.min() - 0.01, lng.max() + 0.01, 30)
    located = route.locate(plat, plng, 1000)
    keep = np.concatenate([[True], (np.diff(lat) != 0) | (np.diff(lng) != 0)])
    for i in range(30):
        truth = brute_force(lat[keep], lng[keep], plat[i], plng[i])
        if truth <= 999:
            assert located.offset_m[i] == pytest.approx(truth, abs=1.0)
        else:
            assert located.offset_m[i] > 999


def test_remaining_route_starts_at_the_cars_nearest_point_and_keeps_distances():
    route = route_from_points([0.0, 0.0, 0.0], [0.0, 0.01, 0.02])
    ahead = route.remaining_from(0.0005, 0.012)
    assert ahead.along_m[0] == pytest.approx(WGS84.inv(0.0, 0.0, 0.012, 0.0)[2], abs=0.5)
    assert ahead.along_m[-1] == pytest.approx(route.along_m[-1], abs=0.01)
    behind = ahead.locate([0.0005], [0.005], 500)
    assert behind.offset_m[0] > 500  # a place passed already is not near what is ahead


def test_position_far_from_the_route_is_refused():
    route = route_from_points([0.0, 0.0], [0.0, 0.01])
    with pytest.raises(RouteError, match="from the route"):
        route.remaining_from(1.0, 0.0)


def _exhaustive(route, lat, lng, within_m):
    """locate by measuring every point against every segment (numpy, no tree): the same foot
    and distance formulas, the nearest segment per point, near ties to the earliest."""
    points = unit_vectors(np.asarray(lat, float), np.asarray(lng, float))
    a, b = route._xyz[:-1], route._xyz[1:]
    normal = route._normal
    p = points[:, None, :]
    height = (p * normal).sum(-1)
    foot = p - height[..., None] * normal
    foot /= np.maximum(np.linalg.norm(foot, axis=-1, keepdims=True), 1e-300)
    inside = (((foot * route._past_a).sum(-1) >= 0) & ((foot * route._before_b).sum(-1) >= 0)
              & ~route._degenerate)
    nearer_a = (p * a).sum(-1) >= (p * b).sum(-1)
    end = np.where(nearer_a[..., None], a, b)
    foot = np.where(inside[..., None], foot, end)
    angle = 2 * np.arcsin(np.minimum(np.linalg.norm(p - foot, axis=-1) / 2, 1.0))
    dist = chord_distance_m(ecef_from_unit(points)[:, None, :], ecef_from_unit(foot))
    dist = np.where(angle <= (within_m + 1) / MIN_RADIUS_M, dist, np.inf)
    n, m = dist.shape
    offset, along, side = np.full(n, np.inf), np.full(n, np.nan), np.zeros(n, np.int8)
    for i in range(n):
        if np.isfinite(dist[i]).any():
            # the earliest segment within TIE_M of the nearest
            s = int(np.flatnonzero(dist[i] <= dist[i].min() + TIE_M)[0])
            offset[i] = dist[i, s]
            along[i] = route.along_m[s] + chord_distance_m(route._ecef[s],
                                                           ecef_from_unit(foot[i, s]))
            side[i] = -np.sign(height[i, s])
    return offset, along, side


def _same(located, expected) -> bool:
    offset, along, side = expected
    return (np.array_equal(np.isfinite(located.offset_m), np.isfinite(offset))
            and np.allclose(located.offset_m, offset, rtol=0, atol=1e-6)
            and np.allclose(located.along_m, along, rtol=0, atol=1e-6, equal_nan=True)
            and np.array_equal(located.side, side))


@settings(max_examples=60, deadline=None)
@given(route_and_places())
def test_the_tree_search_finds_what_measuring_every_segment_finds(case):
    route_lat, route_lng, plat, plng, corridor = case
    route = drawn_route(route_lat, route_lng)
    if route is None:
        return
    assert _same(route.locate(plat, plng, corridor), _exhaustive(route, plat, plng, corridor))


def test_the_tree_search_agrees_on_3000_points_around_a_winding_route():
    lng = np.linspace(-105.2, -104.7, 300)
    route = route_from_points(39.74 + 0.01 * np.sin(np.linspace(0, 6, 300)), lng)
    rng = np.random.default_rng(5)
    plat, plng = rng.uniform(39.72, 39.76, 3000), rng.uniform(-105.2, -104.7, 3000)
    located = route.locate(plat, plng, 1000)
    assert np.isfinite(located.offset_m).sum() > 1000
    assert _same(located, _exhaustive(route, plat, plng, 1000))


@pytest.mark.parametrize("coordinates", [
    [[-104.99, 39.74], [-104.98, 39.75], [-104.97, 39.74], [-104.99, 39.74]],  # a loop
    [[-104.99, 39.74], [-104.98, 39.74], [-104.99, 39.74]],                    # out and back
])
def test_a_car_at_the_start_of_a_round_trip_has_all_of_it_ahead(coordinates):
    route = route_from_geojson({"type": "LineString", "coordinates": coordinates})
    ahead = route.remaining_from(39.74, -104.99)
    assert ahead.along_m[0] == pytest.approx(0.0, abs=1e-6)
    assert ahead.length_m == pytest.approx(route.length_m, abs=1e-6)


@pytest.mark.parametrize("step_deg", [1e-10, 1e-9, 1e-8, 1e-6])
def test_segments_of_micrometres_measure_as_well_as_long_ones(step_deg):
    route = route_from_points([39.74, 39.74 + step_deg, 39.75], [-104.99, -104.99, -104.99])
    lat = np.array([39.74, 39.7401, 39.74])
    lng = np.array([-104.99, -104.99, -104.9895])
    offset = route.locate(lat, lng, 500).offset_m
    assert offset[0] == pytest.approx(0.0, abs=0.01)
    assert offset[1] == pytest.approx(0.0, abs=0.01)
    assert offset[2] == pytest.approx(WGS84.inv(-104.99, 39.74, -104.9895, 39.74)[2], abs=0.05)


def _by_cell(lat, lng):
    """The points sorted cell by cell (as the geo index files them) and their groups."""
    cells = np.array([cell_of(a, b) for a, b in zip(lat, lng, strict=True)], np.uint64)
    order = np.argsort(cells, kind="stable")
    filed, counts = np.unique(cells[order], return_counts=True)
    return lat[order], lng[order], cell_groups(filed.tolist(), counts)


@settings(max_examples=60, deadline=None)
@given(route_and_places(), st.floats(0, 1))
def test_searching_cell_by_cell_gives_exactly_the_answers_of_the_root_search(case, share):
    route_lat, route_lng, plat, plng, corridor = case
    route = drawn_route(route_lat, route_lng)
    if route is None:
        return
    lat, lng, groups = _by_cell(plat, plng)
    by_root, by_cell = route.locate(lat, lng, corridor), route.locate(lat, lng, corridor, groups)
    for name in ("offset_m", "along_m", "side"):
        assert np.array_equal(getattr(by_root, name), getattr(by_cell, name), equal_nan=True)
    # Groups whose points are not near their centre (a wrong one) still answer exactly: such a
    # point is searched from the root.
    wrong = PointGroups(np.array([len(lat)]), np.array([-lat[0]]), np.array([lng[0]]), 10.0)
    assert _same(route.locate(lat, lng, corridor, wrong), _exhaustive(route, lat, lng, corridor))
    mask = np.arange(len(lat)) < share * len(lat)
    kept = route.locate(lat[mask], lng[mask], corridor, groups.keep(mask))
    assert np.array_equal(kept.offset_m, by_root.offset_m[mask])
    # Points repeated side by side (a place's offers) are measured once, with the same answers.
    twice = route.locate(np.repeat(lat, 2), np.repeat(lng, 2), corridor,
                         PointGroups(2 * groups.counts, groups.lat, groups.lng, groups.radius_m))
    for name in ("offset_m", "along_m", "side"):
        assert np.array_equal(getattr(twice, name), np.repeat(getattr(by_root, name), 2),
                              equal_nan=True)


def test_cell_by_cell_agrees_on_3000_points_around_a_winding_route():
    lng = np.linspace(-105.2, -104.7, 300)
    route = route_from_points(39.74 + 0.01 * np.sin(np.linspace(0, 6, 300)), lng)
    rng = np.random.default_rng(5)
    plat, plng, groups = _by_cell(rng.uniform(39.72, 39.76, 3000),
                                  rng.uniform(-105.2, -104.7, 3000))
    assert len(groups.counts) > 100
    located = route.locate(plat, plng, 1000, groups)
    assert np.isfinite(located.offset_m).sum() > 1000
    assert _same(located, _exhaustive(route, plat, plng, 1000))


def test_groups_keep_the_counts_of_the_points_kept():
    groups = PointGroups(np.array([2, 0, 3, 1]), np.zeros(4), np.zeros(4), 1.0)
    mask = np.array([True, False, False, True, True, False])
    assert groups.keep(mask).counts.tolist() == [1, 0, 2, 0]
    with pytest.raises(ValueError, match="cover"):
        route_from_points([0.0, 0.0], [0.0, 0.01]).locate(np.zeros(5), np.zeros(5), 10.0,
                                                          groups)


def test_unit_vectors_are_the_sines_and_cosines_to_the_last_bits():
    """`unit_vectors` (and the compiled loops, which share its formula) read a table and short
    series, not libm: the same vectors within 1e-15, anywhere."""
    rng = np.random.default_rng(3)
    lat = np.concatenate([rng.uniform(-90, 90, 100_000), [-90.0, 90.0, 0.0, 45.0]])
    lng = np.concatenate([rng.uniform(-180, 180, 100_000), [-180.0, 180.0, 0.0, -45.0]])
    phi, lam = np.radians(lat), np.radians(lng)
    libm = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)
    assert np.abs(unit_vectors(lat, lng) - libm).max() < 1e-15
    assert unit_vectors(lat.reshape(4, -1), lng.reshape(4, -1)).shape == (4, 25_001, 3)
    # Beyond the table's angles, libm's own answers (Python's math is libm too; numpy's may
    # not be), whatever comes in.
    odd = [540.0, -1e300, np.inf, np.nan]
    expected = [[c * c, c * s, s] for c, s in
                ((math.cos(a), math.sin(a)) if math.isfinite(a) else (math.nan, math.nan)
                 for a in map(math.radians, odd))]
    assert np.array_equal(unit_vectors(np.array(odd), np.array(odd)), expected, equal_nan=True)
