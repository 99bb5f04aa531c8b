"""Distances on the WGS84 ellipsoid, fast enough for every candidate of a search.

`pyproj.Geod` solves the geodesic problem exactly at any range, but costs about a microsecond a
pair through its Python wrapper. Searches only ever measure short distances (a corridor is at
most a few kilometres wide, route segments at most 5 km), where the straight chord between the
two points in Earth-centred coordinates, corrected for the curvature it cuts across, equals the
geodesic distance to well under a millimetre: the arc/chord difference is c^3 / (24 R^2), and
the radius of curvature R varies so little over the WGS84 ellipsoid that using a mean radius
leaves an error under 3 mm at 60 km (1 micrometre at 5 km; `tests/test_geo_earth.py` checks it
against `pyproj`). Beyond `CHORD_RANGE_M` (a car and places 200 km along its route),
`distance_m` solves Vincenty's inverse problem in a compiled loop (within millimetres of the
geodesic, tested against pyproj, and without pyproj's per-call wrapper), and pyproj takes the
rare pair it does not converge for (nearly antipodal points).

numpy and numba; no Redis.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pyproj import Geod

WGS84 = Geod(ellps="WGS84")
# geo.route's compiled loops inline `ecef_of_unit` and `chord_m` (these constants with them)
# when numba compiles them, and numba's cache is keyed on route.py alone: after changing any,
# touch geo/route.py so they are compiled again.
EQUATORIAL_RADIUS_M = 6_378_137.0
ECCENTRICITY_SQUARED = WGS84.es
MEAN_RADIUS_M = 6_371_000.0
CHORD_RANGE_M = 60_000.0


def ecef_from_unit(unit: np.ndarray) -> np.ndarray:
    """Points on the ellipsoid (Earth-centred, metres) from unit vectors whose spherical
    latitude and longitude are the points' geodetic ones (`geo.route.unit_vectors`)."""
    z = unit[..., 2]
    n = EQUATORIAL_RADIUS_M / np.sqrt(1.0 - ECCENTRICITY_SQUARED * z * z)
    out = unit * n[..., None]
    out[..., 2] *= 1.0 - ECCENTRICITY_SQUARED
    return out


def ecef(lat: np.ndarray, lng: np.ndarray) -> np.ndarray:
    phi, lam = np.radians(lat), np.radians(lng)
    cos_phi = np.cos(phi)
    return ecef_from_unit(np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)],
                                   axis=-1))


def chord_distance_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic distance between Earth-centred points (last axis, broadcast), exact to
    millimetres up to CHORD_RANGE_M apart; callers guarantee the range."""
    d = a - b
    chord = np.sqrt(np.einsum("...i,...i->...", d, d))
    return chord + chord**3 / (24.0 * MEAN_RADIUS_M**2)


def distance_m(lat1, lng1, lat2, lng2, ecef2: np.ndarray | None = None) -> np.ndarray:
    """Geodesic distance between (lat1, lng1) and (lat2, lng2), degrees, broadcast; the chord
    formula where it is exact, pyproj's geodesic beyond CHORD_RANGE_M. (A car against many
    places: the car's Earth-centred point is computed once, not once per place.) `ecef2`, the
    second points Earth-centred if known (`geo.route.Located.ecef`), spares their sines and
    cosines."""
    lat1, lng1, lat2, lng2 = (np.asarray(v, float) for v in (lat1, lng1, lat2, lng2))
    if ecef2 is not None and lat1.ndim == lng1.ndim == 0:  # the car against its candidates
        out = _chords_to_m(float(lat1), float(lng1), np.ascontiguousarray(ecef2, float))
    elif ecef2 is not None:
        out = chord_distance_m(ecef(lat1, lng1), ecef2)
    elif lat1.ndim == lng1.ndim == 0:  # one point against many: one compiled pass
        lat, lng = np.broadcast_arrays(lat2, lng2)
        out = _chords_from_m(float(lat1), float(lng1), np.ascontiguousarray(lat).ravel(),
                             np.ascontiguousarray(lng).ravel()).reshape(lat.shape)
    else:
        out = np.asarray(chord_distance_m(ecef(lat1, lng1), ecef(lat2, lng2)), dtype=float)
    far = out > CHORD_RANGE_M * 0.99
    if far.any():
        lat1, lng1, lat2, lng2 = (np.ascontiguousarray(v[far]) for v in
                                  np.broadcast_arrays(lat1, lng1, lat2, lng2))
        measured = _vincenty_m(lat1, lng1, lat2, lng2, EQUATORIAL_RADIUS_M, WGS84.f)
        stuck = np.isnan(measured)
        if stuck.any():
            measured[stuck] = WGS84.inv(lng1[stuck], lat1[stuck], lng2[stuck], lat2[stuck])[2]
        out[far] = measured
    return out


@njit(cache=True)
def _chords_from_m(lat, lng, lats, lngs):
    """`chord_distance_m` from one point to many, in one pass (as `ecef`)."""
    out = np.empty(len(lats))
    x, y, z = _unit(lat, lng)
    ax, ay, az = ecef_of_unit(x, y, z)
    for i in range(len(lats)):
        x, y, z = _unit(lats[i], lngs[i])
        bx, by, bz = ecef_of_unit(x, y, z)
        out[i] = chord_m(ax, ay, az, bx, by, bz)
    return out


@njit(cache=True)
def _chords_to_m(lat, lng, points):
    """`chord_distance_m` from one point to many Earth-centred ones (n x 3), in one pass:
    numpy's version makes four temporaries and a cube by `pow`."""
    out = np.empty(len(points))
    x, y, z = _unit(lat, lng)
    ax, ay, az = ecef_of_unit(x, y, z)
    for i in range(len(points)):
        out[i] = chord_m(ax, ay, az, points[i, 0], points[i, 1], points[i, 2])
    return out


@njit(cache=True, inline="always")
def _unit(lat, lng):
    phi, lam = np.radians(lat), np.radians(lng)
    return np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)


@njit(cache=True, inline="always")
def ecef_of_unit(x, y, z):
    """`ecef_from_unit` for one point, in compiled loops (numba reads the constants when it
    compiles)."""
    n = EQUATORIAL_RADIUS_M / np.sqrt(1.0 - ECCENTRICITY_SQUARED * z * z)
    return x * n, y * n, z * n * (1.0 - ECCENTRICITY_SQUARED)


@njit(cache=True, inline="always")
def chord_m(ax, ay, az, bx, by, bz):
    """`chord_distance_m` for one pair, in compiled loops."""
    dx, dy, dz = ax - bx, ay - by, az - bz
    chord = np.sqrt(dx * dx + dy * dy + dz * dz)
    return chord + chord ** 3 / (24.0 * MEAN_RADIUS_M ** 2)


@njit(cache=True)
def _vincenty_m(lat1, lng1, lat2, lng2, a, f):
    """Vincenty's inverse formula on the ellipsoid (a, f), per pair; nan where the iteration
    does not converge (nearly antipodal points)."""
    b = a * (1.0 - f)
    out = np.empty(len(lat1))
    for i in range(len(lat1)):
        big_l = np.radians(lng2[i] - lng1[i])
        u1 = np.arctan((1.0 - f) * np.tan(np.radians(lat1[i])))
        u2 = np.arctan((1.0 - f) * np.tan(np.radians(lat2[i])))
        sin_u1, cos_u1, sin_u2, cos_u2 = np.sin(u1), np.cos(u1), np.sin(u2), np.cos(u2)
        lam = big_l
        out[i] = np.nan
        for _ in range(200):
            sin_lam, cos_lam = np.sin(lam), np.cos(lam)
            sin_sigma = np.sqrt((cos_u2 * sin_lam) ** 2
                                + (cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam) ** 2)
            if sin_sigma == 0.0:
                out[i] = 0.0  # the same point
                break
            cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
            sigma = np.arctan2(sin_sigma, cos_sigma)
            sin_alpha = cos_u1 * cos_u2 * sin_lam / sin_sigma
            cos2_alpha = 1.0 - sin_alpha * sin_alpha
            cos_2sm = cos_sigma - 2.0 * sin_u1 * sin_u2 / cos2_alpha if cos2_alpha else 0.0
            c = f / 16.0 * cos2_alpha * (4.0 + f * (4.0 - 3.0 * cos2_alpha))
            previous = lam
            lam = big_l + (1.0 - c) * f * sin_alpha * (
                sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1.0 + 2.0 * cos_2sm ** 2)))
            if abs(lam - previous) < 1e-12:
                u_sq = cos2_alpha * (a * a - b * b) / (b * b)
                big_a = 1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (
                    320.0 - 175.0 * u_sq)))
                big_b = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)))
                delta = big_b * sin_sigma * (cos_2sm + big_b / 4.0 * (
                    cos_sigma * (-1.0 + 2.0 * cos_2sm ** 2) - big_b / 6.0 * cos_2sm
                    * (-3.0 + 4.0 * sin_sigma ** 2) * (-3.0 + 4.0 * cos_2sm ** 2)))
                out[i] = b * big_a * (sigma - delta)
                break
    return out
