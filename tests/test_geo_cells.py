"""The cells a search reads always include the cell of every place it must find."""

from __future__ import annotations

import h3.api.basic_int as h3
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.cells import cell_of, corridor_cells, radius_cells, region_of, regions_of
from geo.route import WGS84, route_from_points

from .conftest import drawn_route


@settings(max_examples=60, deadline=None)
@given(lat=st.floats(-85, 85), lng=st.floats(-180, 180), radius=st.floats(10, 20_000),
       bearing=st.floats(0, 360), fraction=st.floats(0, 1))
def test_radius_cells_hold_every_point_within_the_radius(lat, lng, radius, bearing, fraction):
    plng, plat, _ = WGS84.fwd(lng, lat, bearing, radius * fraction)
    assert cell_of(plat, plng) in set(radius_cells(lat, lng, radius))


@st.composite
def routes(draw):
    lat0, lng0 = draw(st.floats(-84, 84)), draw(st.floats(-180, 180))
    n = draw(st.integers(2, 5))
    span = draw(st.sampled_from([0.01, 0.1, 0.5]))
    dlat = np.array(draw(st.lists(st.floats(-span, span), min_size=n, max_size=n)))
    dlng = np.array(draw(st.lists(st.floats(-span, span), min_size=n, max_size=n)))
    lat = np.clip(lat0 + dlat, -89, 89)
    lng = (lng0 + dlng / max(np.cos(np.radians(lat0)), 0.1) + 180) % 360 - 180
    return lat, lng


@settings(max_examples=60, deadline=None)
@given(route=routes(), corridor=st.floats(10, 5000), along=st.floats(0, 1),
       bearing=st.floats(0, 360), fraction=st.floats(0, 1))
def test_corridor_cells_hold_every_point_within_the_corridor(route, corridor, along, bearing,
                                                            fraction):
    built = drawn_route(*route)
    if built is None:
        return
    # A point at most `corridor` from some point of the route.
    plat, plng = built.points_every(max(built.length_m / 50, 1.0))
    i = int(along * (len(plat) - 1))
    qlng, qlat, _ = WGS84.fwd(plng[i], plat[i], bearing, corridor * fraction)
    assert cell_of(qlat, qlng) in set(corridor_cells(built, corridor))


def test_a_50_km_route_with_a_1_km_corridor_reads_a_few_hundred_small_cells():
    lng = np.linspace(-105.2, -104.62, 200)  # ~50 km east-west through Denver
    route = route_from_points(np.full_like(lng, 39.74), lng)
    assert 150 <= len(corridor_cells(route, 1000)) <= 400


def test_regions_of_many_cells_are_the_libraries_parents():
    rng = np.random.default_rng(3)
    cells = [cell_of(lat, lng) for lat, lng in zip(rng.uniform(-89, 89, 500),
                                                   rng.uniform(-180, 180, 500), strict=True)]
    cells += [h3.cell_to_center_child(p, 8) for p in h3.get_pentagons(0)]
    assert [f"{r:x}" for r in regions_of(np.array(cells, np.uint64)).tolist()] == \
        [region_of(c) for c in cells]


def test_cell_centres_come_from_the_cache_as_h3_gives_them_and_it_starts_again_when_full(
        monkeypatch):
    from geo import cells as module
    monkeypatch.setattr(module, "_centre_table", module._NO_CENTRES)
    monkeypatch.setattr(module, "_centres_pending", {})
    monkeypatch.setattr(module, "CENTRE_TABLE_PENDING", 10)
    monkeypatch.setattr(module, "CENTRE_CACHE_LIMIT", 30)

    def check(cells):
        lat, lng = module._centres(cells)
        assert np.array_equal(np.column_stack([lat, lng]),
                              np.array([h3.cell_to_latlng(c) for c in cells]).reshape(-1, 2))

    def held():
        return set(module._centre_table[0].tolist()) | set(module._centres_pending)

    disk = h3.grid_disk(cell_of(64.1, -21.9), 2)  # 19 cells: past the pending limit
    for _ in range(2):  # computed, then read back from the table
        check(disk)
        assert set(module._centre_table[0].tolist()) == set(disk)
        assert not module._centres_pending
        assert np.all(np.diff(module._centre_table[0].astype(float)) > 0)  # sorted, once each
    # Some in the table, some new, repeated and out of order: each as h3 gives it; the new
    # ones wait beside the table until there are enough of them.
    ring = h3.grid_disk(cell_of(64.1, -21.9), 3)[-5:]
    check(disk[5:] + ring + disk[:3] + ring[:1])
    assert set(module._centres_pending) == set(ring) and held() == set(disk) | set(ring)
    other = h3.grid_disk(cell_of(-33.9, 151.2), 2)  # 19 more would pass the limit
    check(other + disk[:1])
    assert held() == set(other) | set(ring)  # started again, with the cells pending
    assert all(not a.flags.writeable for a in module._centre_table)
    check([])


def test_corridor_cells_are_the_same_from_drawn_and_cached_disks_and_the_cache_starts_again(
        monkeypatch):
    from geo import cells as module
    monkeypatch.setattr(module, "_disk_cache", {})
    monkeypatch.setattr(module, "_disk_cache_cells", 0)
    monkeypatch.setattr(module, "DISK_CACHE_CELLS", 1_000)  # four disks
    route = route_from_points(np.array([39.70, 39.75, 39.80]), np.array([-105.0, -104.9, -105.0]))
    drawn = corridor_cells(route, 1000.0)
    assert module._disk_cache and module._disk_cache_cells <= 1_000
    (cell, k), disk = next(iter(module._disk_cache.items()))
    assert disk.tolist() == sorted(h3.grid_disk(cell, k))
    assert not disk.flags.writeable  # shared by every request that draws it
    assert corridor_cells(route, 1000.0) == drawn  # from the cache
    # The truth: every cell whose centre is within corridor + a cell's radius of the route.
    reach = 1000.0 + module.CELL_RADIUS_MAX_M
    nearby = h3.grid_disk(cell_of(39.75, -104.95), 40)
    lat, lng = np.array([h3.cell_to_latlng(c) for c in nearby]).T
    near = route.locate(lat, lng, reach).offset_m <= reach
    assert drawn == sorted(np.array(nearby)[near].tolist())
    denver = set(module._disk_cache)
    other = route_from_points(np.array([-33.90, -33.80]), np.array([151.20, 151.25]))
    corridor_cells(other, 1000.0)  # more disks than the limit holds: the cache starts again
    assert not denver & set(module._disk_cache)
    assert module._disk_cache_cells == sum(len(d) for d in module._disk_cache.values())
    assert 0 < module._disk_cache_cells <= 1_000
