"""Distances on the WGS84 ellipsoid, fast enough for every candidate of a search.

`pyproj.Geod` solves the geodesic problem exactly at any range, but costs about a microsecond a
pair through its Python wrapper. Searches only ever measure short distances (a corridor is at
most a few kilometres wide, route segments at most 5 km), where the straight chord between the
two points in Earth-centred coordinates, corrected for the curvature it cuts across, equals the
geodesic distance to well under a millimetre: the arc/chord difference is c^3 / (24 R^2), and
the radius of curvature R varies so little over the WGS84 ellipsoid that using a mean radius
leaves an error under 3 mm at 60 km (1 micrometre at 5 km; `tests/test_geo_earth.py` checks it
against `pyproj`). Beyond `CHORD_RANGE_M`, `distance_m` falls back to pyproj.

Pure numpy; no Redis.
"""

from __future__ import annotations

import numpy as np
from pyproj import Geod

WGS84 = Geod(ellps="WGS84")
# geo.route's compiled loops take these in when numba compiles them, and numba's cache is
# keyed on route.py alone: after changing one, touch geo/route.py so they are compiled again.
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


def distance_m(lat1, lng1, lat2, lng2) -> np.ndarray:
    """Geodesic distance between (lat1, lng1) and (lat2, lng2), degrees, broadcast; the chord
    formula where it is exact, pyproj's geodesic beyond CHORD_RANGE_M. (A car against many
    places: the car's Earth-centred point is computed once, not once per place.)"""
    out = np.asarray(chord_distance_m(ecef(np.asarray(lat1, float), np.asarray(lng1, float)),
                                      ecef(np.asarray(lat2, float), np.asarray(lng2, float))),
                     dtype=float)
    far = out > CHORD_RANGE_M * 0.99
    if far.any():
        lat1, lng1, lat2, lng2 = np.broadcast_arrays(*(np.asarray(v, float) for v in
                                                       (lat1, lng1, lat2, lng2)))
        out[far] = WGS84.inv(lng1[far], lat1[far], lng2[far], lat2[far])[2]
    return out
