"""The chord formula and Vincenty's against pyproj's exact geodesic, over the whole ellipsoid."""

import numpy as np
import pytest

from geo.earth import CHORD_RANGE_M, EQUATORIAL_RADIUS_M, WGS84, _vincenty_m, distance_m, ecef
from geo.route import route_from_points


def _pairs(n: int, max_m: float, seed: int = 7):
    rng = np.random.default_rng(seed)
    lat1 = rng.uniform(-89.999, 89.999, n)
    lng1 = rng.uniform(-180.0, 180.0, n)
    length = rng.uniform(0.0, max_m, n)
    lng2, lat2, _ = WGS84.fwd(lng1, lat1, rng.uniform(0.0, 360.0, n), length)
    return lat1, lng1, lat2, lng2, length


@pytest.mark.parametrize(("max_m", "tolerance_m"), [(5_000.0, 1e-5), (CHORD_RANGE_M, 0.003)])
def test_short_distances_match_the_geodesic(max_m, tolerance_m):
    lat1, lng1, lat2, lng2, length = _pairs(100_000, max_m)
    assert np.abs(distance_m(lat1, lng1, lat2, lng2) - length).max() < tolerance_m


def test_long_distances_match_the_geodesic_too():
    lat1, lng1, lat2, lng2, length = _pairs(10_000, 19_000_000.0)  # shorter than any antipodal path
    assert np.abs(distance_m(lat1, lng1, lat2, lng2) - length).max() < 0.003


def test_distance_across_the_antimeridian_and_at_the_pole():
    assert distance_m(0.0, 179.9995, 0.0, -179.9995) == pytest.approx(
        WGS84.inv(179.9995, 0.0, -179.9995, 0.0)[2], abs=1e-6)
    assert distance_m(89.9999, 0.0, 89.9999, 180.0) == pytest.approx(
        WGS84.inv(0.0, 89.9999, 180.0, 89.9999)[2], abs=1e-6)


def test_nearly_antipodal_points_fall_back_to_pyproj():
    """Vincenty's iteration does not converge there; pyproj answers instead."""
    lat1, lng1, lat2, lng2 = (np.array([v]) for v in (0.0, 0.0, 0.5, 179.7))
    assert np.isnan(_vincenty_m(lat1, lng1, lat2, lng2, EQUATORIAL_RADIUS_M, WGS84.f)).all()
    assert distance_m(0.0, 0.0, 0.5, 179.7) == pytest.approx(
        WGS84.inv(0.0, 0.0, 179.7, 0.5)[2], abs=1e-6)


@pytest.mark.parametrize("max_m", [5_000.0, CHORD_RANGE_M, 2_000_000.0])
def test_one_point_against_many_matches_the_geodesic(max_m):
    """A car against its candidates: the compiled one-to-many pass."""
    rng = np.random.default_rng(11)
    lat, lng = 39.74, -104.99
    lng2, lat2, _ = WGS84.fwd(np.full(5_000, lng), np.full(5_000, lat),
                              rng.uniform(0.0, 360.0, 5_000), rng.uniform(0.0, max_m, 5_000))
    length = WGS84.inv(np.full(5_000, lng), np.full(5_000, lat), lng2, lat2)[2]
    one_to_many = distance_m(lat, lng, lat2, lng2)
    assert np.abs(one_to_many - length).max() < 0.003
    pairs = distance_m(np.full(5_000, lat), np.full(5_000, lng), lat2, lng2)
    assert np.abs(one_to_many - pairs).max() < 1e-6
    assert distance_m(lat, lng, lat2.reshape(50, 100), lng2.reshape(50, 100)).shape == (50, 100)


@pytest.mark.parametrize("max_m", [5_000.0, 2_000_000.0])
def test_distances_from_points_a_route_located_match_the_geodesic(max_m):
    """The car's distance to candidates starts from the Earth-centred points `Route.locate`
    returns: they are the points' own, and the distances the same as without them."""
    rng = np.random.default_rng(5)
    lat, lng = 39.74, -104.99
    lng2, lat2, _ = WGS84.fwd(np.full(2_000, lng), np.full(2_000, lat),
                              rng.uniform(0.0, 360.0, 2_000), rng.uniform(0.0, max_m, 2_000))
    located = route_from_points([lat, lat + 0.01], [lng, lng]).locate(lat2, lng2, 1000.0)
    assert np.abs(located.ecef - ecef(lat2, lng2)).max() < 1e-6
    length = WGS84.inv(np.full(2_000, lng), np.full(2_000, lat), lng2, lat2)[2]
    from_located = distance_m(lat, lng, lat2, lng2, located.ecef)
    assert np.abs(from_located - length).max() < 0.003
    assert np.abs(from_located - distance_m(lat, lng, lat2, lng2)).max() < 1e-6
