"""H3 cells for the geo index: which cell a place is filed under, and which cells a search must
read so that it never misses a place (a superset, which the exact distance check then trims).

Places are filed at `INDEX_RES` (res 8: cells of about 0.74 km²), fine enough that the cells a
1 km corridor reads hold little beyond it, so a 50 km route reads a few hundred small cells in
one pipelined round trip. Each cell's key carries its resolution-3 parent as the Redis
Cluster hash tag (`region_of`): neighbouring cells share a slot, so writes for one place are one
transaction, while the whole index still spreads over the cluster.
"""

from __future__ import annotations

import math
import threading

import h3.api.basic_int as h3
import h3.api.numpy_int as h3_arrays
import numpy as np

from .earth import distance_m
from .route import PointGroups, Route

INDEX_RES = 8
REGION_RES = 3
# Largest and smallest distance from a cell's centre to its corners at each resolution, over
# 100,000 cells sampled uniformly on the globe and all pentagons, with 15% to spare for
# sampling and for the ellipsoid; used only to over-select cells, never to accept a place.
_CELL_RADII_M = {7: (1_548.2, 987.9), 8: (585.2, 395.6)}
CELL_RADIUS_MAX_M = _CELL_RADII_M[INDEX_RES][0] * 1.15
CELL_RADIUS_MIN_M = _CELL_RADII_M[INDEX_RES][1] / 1.15
# Adjacent centres are sqrt(3) radii apart; a ring of grid distance k reaches at least
# k * spacing * cos(30 deg) in every direction.
_RING_REACH_M = math.sqrt(3) * CELL_RADIUS_MIN_M * math.cos(math.radians(30))
_MAX_FILTERED_CELLS = 5_000


def cell_of(lat: float, lng: float) -> int:
    return h3.latlng_to_cell(lat, lng, INDEX_RES)


def region_of(cell: int) -> str:
    """The resolution-3 parent of a cell, as the hex string used in hash tags."""
    return h3.int_to_str(h3.cell_to_parent(cell, REGION_RES))


# An H3 index keeps its resolution in bits 52-55 and one 3-bit digit per finer resolution
# below bit 45; a parent is the same index with the resolution lowered and the digits below
# it set to 7 (what the library's cellToParent does), so many parents are one numpy pass.
_RESOLUTION_BITS = np.uint64(0xF << 52)


def parents_of(cells: np.ndarray, res: int) -> np.ndarray:
    """The resolution-`res` parents of many cells at once, as ints."""
    bits = np.uint64(res << 52) | np.uint64((1 << (3 * (15 - res))) - 1)
    return (np.asarray(cells, np.uint64) & ~_RESOLUTION_BITS) | bits


def regions_of(cells: np.ndarray) -> np.ndarray:
    """`region_of` for many cells at once, as ints (format with `:x` for the hash tag)."""
    return parents_of(cells, REGION_RES)


def _ring_count(reach_m: float) -> int:
    """The grid distance of a disk that holds every cell within `reach_m` of its centre cell
    (and a ring more)."""
    return math.ceil(reach_m / _RING_REACH_M) + 1


# Cell centres this process has computed: a table of cells sorted, with their centres side by
# side, read with one binary search for a whole batch (a corridor's ~950 cells, an index
# read's ~200) instead of a dictionary lookup per cell, which cost more than h3's own third of
# a microsecond. Cells learned since the table was made wait in a dictionary until there are
# CENTRE_TABLE_PENDING of them (about two corridors' worth), then go into a new table:
# inserting into a table of 120,000 cells took 1 ms (500,000: 6 ms), too much for every
# request that meets a new cell, while a pending cell costs a dictionary lookup. A server's
# cars drive the same region's cells over and over. About 24 bytes a cell in the table.
CENTRE_CACHE_LIMIT = 500_000
CENTRE_TABLE_PENDING = 2_048
_NO_CENTRES = (np.zeros(0, np.uint64), np.zeros(0), np.zeros(0))
_centre_table = _NO_CENTRES  # replaced whole: a reader keeps the one it took
_centres_pending: dict[int, tuple[float, float]] = {}
_centre_lock = threading.Lock()  # the pending cells and the table change together


def _centres(cells) -> tuple[np.ndarray, np.ndarray]:
    """The centres (lat, lng arrays) of H3 cells (ints)."""
    cells = np.asarray(cells, np.uint64)
    table, table_lat, table_lng = _centre_table
    at = np.minimum(np.searchsorted(table, cells), max(len(table) - 1, 0))
    known = table[at] == cells if len(table) else np.zeros(len(cells), bool)
    if known.all():
        return table_lat[at], table_lng[at]
    lat, lng = np.empty(len(cells)), np.empty(len(cells))
    lat[known], lng[known] = table_lat[at[known]], table_lng[at[known]]
    missing = np.flatnonzero(~known)
    lat[missing], lng[missing] = np.array(_pending_centres(cells[missing].tolist())).T
    return lat, lng


def _pending_centres(cells: list[int]) -> list[tuple[float, float]]:
    """Centres of cells the table does not hold: computed once, kept until the next table."""
    global _centre_table
    with _centre_lock:
        found = []
        for cell in cells:
            centre = _centres_pending.get(cell)
            if centre is None:
                centre = _centres_pending[cell] = h3.cell_to_latlng(cell)
            found.append(centre)
        if len(_centres_pending) >= CENTRE_TABLE_PENDING:
            table, lat, lng = _centre_table
            if len(table) + len(_centres_pending) > CENTRE_CACHE_LIMIT:
                table, lat, lng = _NO_CENTRES  # start again with the latest cells
            new = np.fromiter(_centres_pending, np.uint64, len(_centres_pending))
            centres = np.array(list(_centres_pending.values()))
            order = np.argsort(new)
            new, centres = new[order], centres[order]
            at = np.searchsorted(table, new)
            # A cell another thread put in the table meanwhile may be pending too: once.
            fresh = (table[np.minimum(at, len(table) - 1)] != new if len(table)
                     else np.ones(len(new), bool))
            new, centres, at = new[fresh], centres[fresh], at[fresh]
            _centre_table = (np.insert(table, at, new), np.insert(lat, at, centres[:, 0]),
                             np.insert(lng, at, centres[:, 1]))
            for array in _centre_table:  # shared by every request (and thread) reading it
                array.flags.writeable = False
            _centres_pending.clear()
        return found


def radius_cells(lat: float, lng: float, radius_m: float) -> list[int]:
    """Every cell that may hold a point within `radius_m` (geodesic) of (lat, lng)."""
    cells = np.sort(h3_arrays.grid_disk(
        cell_of(lat, lng), _ring_count(radius_m + 2 * CELL_RADIUS_MAX_M)))
    if len(cells) > _MAX_FILTERED_CELLS:
        return cells.tolist()  # measuring each centre would cost more than reading them
    clat, clng = _centres(cells)
    # The compiled chords (exact at these ranges), not pyproj's geodesic per pair: the whole
    # function took 0.21 ms with pyproj for a 2 km radius, 0.05 ms without (a dev timing).
    return cells[distance_m(lat, lng, clat, clng) <= radius_m + CELL_RADIUS_MAX_M].tolist()


def corridor_cells(route: Route, corridor_m: float) -> list[int]:
    """Every cell that may hold a point within `corridor_m` of the route."""
    # Disks around coarse samples of the route propose cells (sparse samples, wide disks:
    # fewer, less overlapping disks); then every cell whose centre is farther than corridor +
    # a cell's radius from the route (measured exactly) is dropped.
    step = corridor_m + 2 * CELL_RADIUS_MAX_M
    lat, lng = route.points_every(step)
    k = _ring_count(step + step / 2)
    disks = [_disk(cell, k) for cell in {cell_of(a, b) for a, b in zip(lat, lng, strict=True)}]
    # The disks' union, by sorting (numpy's `unique` hashes integers: slower on these few
    # thousand). Each disk is kept sorted, so a stable sort only merges runs: 18 µs against a
    # quicksort's 131 µs on a 50 km corridor's 4,774 cells (a dev timing).
    cells = np.sort(np.concatenate(disks), kind="stable")
    cells = cells[np.concatenate([[True], cells[1:] != cells[:-1]])]
    reach = corridor_m + CELL_RADIUS_MAX_M
    clat, clng = _centres(cells)
    offset = route.locate(clat, clng, reach, _parent_groups(cells)).offset_m
    return cells[offset <= reach].tolist()


# Sorted cells come in runs of one coarser parent (an H3 index's digits go from coarse to
# fine), whose children's centres lie within 3.66 km of its own (over sampled resolution-6
# cells): groups for `Route.locate`, whose points then search from the parts of the route
# near their group, not from the root. A point beyond its group's radius is searched from
# the root: the radius is a hint, never a filter.
_GROUP_RES = 6
_GROUP_RADIUS_M = 4_500.0
_GROUP_SHIFT = np.uint64(3 * (15 - _GROUP_RES))


def _parent_groups(cells: np.ndarray) -> PointGroups:
    above = cells >> _GROUP_SHIFT  # the digits down to the parent's resolution
    starts = np.flatnonzero(np.concatenate([[True], above[1:] != above[:-1]]))
    lat, lng = _centres(parents_of(cells[starts], _GROUP_RES))
    return PointGroups(np.diff(np.append(starts, len(cells))), lat, lng, _GROUP_RADIUS_M)


# The corridor's disks this process has drawn, sorted, by (cell, grid distance). A corridor's
# disks are a few dozen h3 calls each time, and a server's cars drive the same roads, whose
# cells are sampled over and over: a disk is then one lookup. 8 bytes a cell (a 1 km
# corridor's disk holds 217 cells).
DISK_CACHE_CELLS = 1_000_000
_disk_cache: dict[tuple[int, int], np.ndarray] = {}
_disk_cache_cells = 0
_disk_lock = threading.Lock()  # the count and the cache change together (gthread workers)


def forget_cached() -> None:
    """Empty this process's centre and disk caches (what a process starting afresh holds)."""
    global _disk_cache_cells, _centre_table
    with _centre_lock:
        _centre_table = _NO_CENTRES
        _centres_pending.clear()
    with _disk_lock:
        _disk_cache.clear()
        _disk_cache_cells = 0


def _disk(cell: int, k: int) -> np.ndarray:
    global _disk_cache_cells
    found = _disk_cache.get((cell, k))
    if found is None:
        found = np.sort(h3_arrays.grid_disk(cell, k))  # sorted: see corridor_cells
        found.flags.writeable = False  # shared by every request (and thread) that draws it
        with _disk_lock:
            if _disk_cache_cells + len(found) > DISK_CACHE_CELLS:
                _disk_cache.clear()
                _disk_cache_cells = 0
            if (cell, k) not in _disk_cache:  # another thread may have drawn it meanwhile
                _disk_cache[(cell, k)] = found
                _disk_cache_cells += len(found)
    return found


def cell_groups(cells: list[int], counts: np.ndarray) -> PointGroups:
    """Points filed cell by cell (`counts[i]` points in `cells[i]`, in turn) as groups for
    `Route.locate`: each group's points lie within a cell's radius of its centre."""
    lat, lng = _centres(cells)
    return PointGroups(np.asarray(counts), lat, lng, CELL_RADIUS_MAX_M)
