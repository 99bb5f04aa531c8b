"""The geo index's write script: each cell string holds exactly the records last written."""

import numpy as np
import pytest

from geo.cells import cell_of, region_of
from offers import geo_index, keys
from offers.geo_index import (
    OFFER_RECORD,
    GeoIndex,
    ids_of,
    offer_entries,
    offer_identity,
    place_entry,
    side_by_side,
)
from offers.hours import SLOTS_PER_WEEK


def _place(suffix: str, lat: float = 39.7392, lng: float = -104.9903) -> dict:
    return {"id": f"p.m_test.{suffix:0>16}", "lat": lat, "lng": lng, "category": "cafe",
            "brand": None}


def _ids(index: GeoIndex, lat: float = 39.7392, lng: float = -104.9903) -> list[str]:
    return [i.decode() for i in index.places_in([cell_of(lat, lng)])["place_id"]]


def test_records_are_added_replaced_and_removed_by_identity(redis_client):
    index = GeoIndex(redis_client)
    a, b, c = _place("a"), _place("b"), _place("c")
    index.apply([], [place_entry(a), place_entry(b), place_entry(c)])
    assert _ids(index) == [a["id"], b["id"], c["id"]]
    moved = {**b, "lat": b["lat"] + 0.00001}
    index.apply([place_entry(b, remove=True), place_entry(a, remove=True)], [place_entry(moved)])
    records = index.places_in([cell_of(a["lat"], a["lng"])])
    assert [i.decode() for i in records["place_id"]] == [c["id"], b["id"]]
    assert records["lat"][1] == moved["lat"]


def test_a_cell_left_empty_is_deleted(redis_client):
    index = GeoIndex(redis_client)
    a = _place("a")
    index.apply([], [place_entry(a)])
    index.apply([place_entry(a, remove=True)], [])
    assert _ids(index) == []
    assert redis_client.dbsize() == 0


def test_a_read_that_meets_a_written_region_reads_every_region_again(redis_client,
                                                                    monkeypatch):
    """The first round trip finds Denver's region written since (another place), Cheyenne's
    not; a place then moves from Denver to Cheyenne before the second. Reading Denver's again
    alone (Cheyenne's cached copy trusted from the first) found it in neither."""
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    here, there = (39.7392, -104.9903), (41.14, -104.82)
    assert region_of(cell_of(*here)) != region_of(cell_of(*there))
    place = _place("a", *here)
    writer.apply([], [place_entry(place)])
    cells = [cell_of(*here), cell_of(*there)]
    assert [i.decode() for i in reader.places_in(cells)["place_id"]] == [place["id"]]
    writer.apply([], [place_entry(_place("b", 39.7, -104.95))])  # Denver's region written
    moved = {**place, "lat": there[0], "lng": there[1]}
    run_pipelined, calls = geo_index.run_pipelined, []

    def move_before_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            writer.apply([place_entry(place, remove=True)], [place_entry(moved)])
        return run_pipelined(*args, **kwargs)

    monkeypatch.setattr(geo_index, "run_pipelined", move_before_the_second)
    assert place["id"] in [i.decode() for i in reader.places_in(cells)["place_id"]]
    assert len(calls) == 2


def test_a_record_moving_between_regions_is_added_before_it_is_removed(redis_client):
    """A reader between the two regions' scripts then finds it in both (which the final
    check sorts out), not in neither, though the move names the removal first."""
    writer = GeoIndex(redis_client)
    place = _place("a", 41.14, -104.82)
    writer.apply([], [place_entry(place)])
    moved = {**place, "lat": 39.7392, "lng": -104.9903}
    script, written = writer._apply, []

    def recording(keys, args, client):
        written.append(keys[0])  # the region's first cell
        return script(keys=keys, args=args, client=client)

    writer._apply = recording
    writer.apply([place_entry(place, remove=True)], [place_entry(moved)])
    assert written == [place_entry(moved).key, place_entry(place).key]
    assert [i.decode() for i in writer.places_in([cell_of(39.7392, -104.9903)])["place_id"]] \
        == [place["id"]]
    assert len(writer.places_in([cell_of(41.14, -104.82)])) == 0


def test_a_place_moving_between_cells_leaves_the_old_one(redis_client):
    index = GeoIndex(redis_client)
    a = _place("a")
    far = {**a, "lat": 39.80, "lng": -104.90}
    index.apply([], [place_entry(a)])
    index.apply([place_entry(a, remove=True)], [place_entry(far)])
    assert _ids(index) == []
    assert _ids(index, far["lat"], far["lng"]) == [a["id"]]


def test_an_id_that_prefixes_another_does_not_match_it(redis_client):
    index = GeoIndex(redis_client)
    short, longer = _place("ab"), {**_place("ab"), "id": "p.m_test2.00000000000000ab"}
    index.apply([], [place_entry(short), place_entry(longer)])
    index.apply([place_entry(short, remove=True)], [])
    assert _ids(index) == [longer["id"]]


def test_bulk_writes_to_one_cell_keep_exactly_the_rest(redis_client):
    index = GeoIndex(redis_client)
    places = [_place(f"{i:x}", lng=-104.9903 + i * 1e-6) for i in range(60)]
    index.apply([], [place_entry(p) for p in places])
    gone = places[::2]  # 30 writes in one cell: the one-pass path
    index.apply([place_entry(p, remove=True) for p in gone], [])
    assert _ids(index) == [p["id"] for p in places[1::2]]
    index.apply([place_entry(places[1], remove=True)], [])  # one write: the find path
    assert _ids(index) == [p["id"] for p in places[3::2]]


def _offer(suffix: str, place: dict, schedule: str | None = None) -> dict:
    return {"id": f"o.m_test.{suffix:0>16}", "place_ids": [place["id"]], "status": "active",
            "category": "cafe", "discount": {"kind": "percent", "value": 10},
            "valid_from": None, "timezone": "America/Denver", "schedule": schedule}


def _denver(place: dict) -> dict:
    return {**place, "timezone": "America/Denver", "opening_hours": "Mo-Fr 08:00-18:00"}


def test_offer_records_name_their_ids_compactly_and_give_them_back(redis_client):
    index = GeoIndex(redis_client)
    plain, imported = _denver(_place("a1")), _denver({**_place("b"), "id": "p.m_test.x" + "f" * 16})
    offers = [_offer("c", plain), _offer("d", imported)]
    for offer, place in zip(offers, (plain, imported), strict=True):
        index.apply([], offer_entries(offer, {place["id"]: place}))
    records = index.offers_in([cell_of(plain["lat"], plain["lng"])])
    assert OFFER_RECORD.itemsize == 111  # was 240 with ids as strings and masks inline
    assert ids_of(records) == ([o["id"] for o in offers], [plain["id"], imported["id"]])
    index.apply(offer_entries(offers[0], {plain["id"]: plain}, remove=True), [])
    assert ids_of(index.offers_in([cell_of(plain["lat"], plain["lng"])]))[0] == [offers[1]["id"]]


@pytest.mark.parametrize("offer_id, place_id", [
    ("o.m_test.00000000000000c1", "p.m_other.00000000000000a1"),  # another merchant's place
    ("o.m_test.c1", "p.m_test.00000000000000a1"),                 # not an id the catalogue makes
    ("p.m_test.00000000000000c1", "p.m_test.00000000000000a1"),   # a place is not an offer
])
def test_an_offer_record_needs_ids_of_one_merchant(offer_id, place_id):
    with pytest.raises(ValueError):
        offer_identity(offer_id, place_id)


def _week(index: GeoIndex, digests: np.ndarray) -> np.ndarray:
    """Each record's whole weekly serving mask, slot by slot (rows x SLOTS_PER_WEEK)."""
    return np.array([index.open_at(digests, np.full(len(digests), slot))
                     for slot in range(SLOTS_PER_WEEK)]).T


def test_serving_masks_are_filed_by_digest_and_read_through_a_cache(redis_client):
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    place = _denver(_place("a"))
    offers = [_offer("c", place), _offer("d", place, "Mo 10:00-11:00"), _offer("e", place)]
    writer.apply([], [e for o in offers for e in offer_entries(o, {place["id"]: place})])
    records = reader.offers_in([cell_of(place["lat"], place["lng"])])
    assert records["serving"][0] == records["serving"][2] != records["serving"][1]
    assert redis_client.hlen(keys.SERVING_MASKS) == 2  # one per distinct mask
    monday_9_30, monday_10_30 = 9 * 4 + 2, 10 * 4 + 2  # quarter hours from Monday 00:00
    assert reader.open_at(records["serving"], np.array([monday_9_30] * 3)).tolist() == [
        True, False, True]
    assert reader.open_at(records["serving"], np.array([monday_10_30] * 3)).tolist() == [
        True, True, True]
    week = _week(reader, records["serving"])
    redis_client.unlink(keys.SERVING_MASKS)
    assert np.array_equal(_week(reader, records["serving"]), week)  # cached for good
    assert not _week(GeoIndex(redis_client), records["serving"]).any()  # unknown: never
    writer.clear()
    assert redis_client.dbsize() == 0


def test_masks_another_thread_learned_meanwhile_are_not_asked_for(redis_client):
    """Two threads of a worker (gthread) met the same new mask: the second, holding what it
    found missing before the first learned it, has nothing left to ask Redis (an HMGET of no
    field was an error, a 500)."""
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    place = _denver(_place("a"))
    writer.apply([], offer_entries(_offer("c", place, "Mo 10:00-11:00"), {place["id"]: place}))
    digests = reader.offers_in([cell_of(place["lat"], place["lng"])])["serving"]
    missing = reader._masks.rows_of(digests) < 0
    first = reader._learn_masks(digests, missing)  # the first thread
    assert reader._learn_masks(digests, missing) is first  # the second: nothing to read
    assert (first.rows_of(digests) > 0).all()


def test_the_mask_cache_starts_again_when_full(redis_client, monkeypatch):
    monkeypatch.setattr(geo_index, "MASK_CACHE_LIMIT", 2)
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    reader._masks = reader._masks._replace(table=reader._masks.table[:1])  # so it must grow
    place = _denver(_place("a"))
    schedules = [None, "Mo 10:00-11:00", "Tu 10:00-11:00"]
    offers = [_offer(f"c{i}", place, schedule) for i, schedule in enumerate(schedules)]
    writer.apply([], [e for o in offers for e in offer_entries(o, {place["id"]: place})])
    digests = reader.offers_in([cell_of(place["lat"], place["lng"])])["serving"]
    first = _week(reader, digests[:2])
    assert np.array_equal(_week(reader, digests)[:2], first)  # over the limit: refilled
    assert len(reader._masks.digests) == 3
    tuesday_10_30 = 24 * 4 + 10 * 4 + 2
    assert reader.open_at(digests, np.array([tuesday_10_30] * 3)).tolist() == [
        True, False, True]


def test_the_mask_lookup_finds_every_cached_digest_and_no_other():
    """The open-addressing table from digest to row, against a dict, with digests chosen to
    share slots (the same top bits after the multiply) as well as random ones."""
    rng = np.random.default_rng(3)
    # Digests whose product with the multiplier is i * 2**45 + 5 * 2**32: slot 5 in any table
    # of up to 2**13 slots.
    inverse = pow(0x9E3779B97F4A7C15, -1, 2**64)
    colliding = np.array([((i << 45) | (5 << 32)) * inverse % 2**64 for i in range(300)],
                         np.uint64)
    digests = np.unique(np.concatenate([colliding, rng.integers(0, 2**63, 5_000, np.uint64),
                                        np.array([0, 2**64 - 1], np.uint64)]))
    cached = digests[::2]
    masks = geo_index._Masks.of(cached, np.arange(1, len(cached) + 1),
                                np.zeros((1, 84), np.uint8))
    assert len(masks.slot_rows) <= 2**13
    assert {geo_index._slot_of(d, len(masks.slot_rows)) for d in colliding} == {5}
    row_of = {int(d): r for d, r in zip(cached, range(1, len(cached) + 1), strict=True)}
    expected = [row_of.get(int(d), -1) for d in digests]
    assert masks.rows_of(digests).tolist() == expected
    assert geo_index._Masks.empty().rows_of(digests).tolist() == [-1] * len(digests)


def test_a_cell_is_read_from_redis_only_when_its_version_changed(redis_client):
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)  # two processes
    a, b = _place("a"), _place("b")
    cell = cell_of(a["lat"], a["lng"])
    key = keys.cell_places(region_of(cell), cell)
    writer.apply([], [place_entry(a)])
    assert _ids(reader) == [a["id"]]
    # Same version, other bytes (no write does this): the reader answers from memory.
    real = redis_client.get(key)
    redis_client.set(key, b"")
    assert _ids(reader) == [a["id"]]
    redis_client.set(key, real)
    writer.apply([], [place_entry(b)])  # a write gives the cell a new version: read again
    assert _ids(reader) == [a["id"], b["id"]]
    writer.apply([place_entry(a, remove=True), place_entry(b, remove=True)], [])
    assert _ids(reader) == []  # emptied: no version, no records
    assert redis_client.dbsize() == 0
    writer.apply([], [place_entry(b)])
    assert _ids(reader) == [b["id"]]


def test_the_cell_cache_matches_redis_through_random_writes(redis_client, monkeypatch):
    monkeypatch.setattr(geo_index, "CELL_CACHE_BYTES",  # room for a few small cells
                        3 * (geo_index._CACHED_CELL_BYTES + geo_index.PLACE_RECORD.itemsize))
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    rng = np.random.default_rng(7)
    # Three cells of one region and one of another (Boulder is in another res-3 cell).
    spots = [(39.7392, -104.9903), (39.7500, -104.9903), (39.7392, -104.9700),
             (40.0150, -105.2705)]
    cells = [cell_of(lat, lng) for lat, lng in spots]
    assert len(set(cells)) == 4 and len({region_of(c) for c in cells}) == 2
    filed: dict[str, dict] = {}
    for step in range(300):
        name = f"x{rng.integers(8)}"
        place = _place(name, *spots[rng.integers(4)])
        if rng.random() < 0.3:
            pass  # reads with no write between them: held cells are trusted
        elif place["id"] in filed and rng.random() < 0.4:
            writer.apply([place_entry(filed.pop(place["id"]), remove=True)], [])
        else:
            old = filed.get(place["id"])
            writer.apply([place_entry(old, remove=True)] if old else [], [place_entry(place)])
            filed[place["id"]] = place
        # A few of the cells, in any order: a cell not read while its region changed is
        # checked again when it is.
        order = list(rng.permutation(cells)[: rng.integers(1, 5)])
        fresh = GeoIndex(redis_client).places_in(order)
        assert reader.places_in(order).tobytes() == fresh.tobytes(), step
        assert reader._cell_bytes <= geo_index.CELL_CACHE_BYTES
    assert sorted(i.decode() for i in reader.places_in(cells)["place_id"]) == sorted(filed)
    assert reader._regions  # the reader did hold region versions


def test_cells_held_from_an_unchanged_region_are_not_asked_about(redis_client):
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    a, b = _place("a"), _place("b", 39.7500, -104.9903)
    cell_a, cell_b = cell_of(a["lat"], a["lng"]), cell_of(b["lat"], b["lng"])
    assert cell_a != cell_b and region_of(cell_a) == region_of(cell_b)
    versions = keys.cell_versions(region_of(cell_a))
    field_a = keys.cell_version_field(keys.cell_places(region_of(cell_a), cell_a))
    writer.apply([], [place_entry(a), place_entry(b)])
    assert _ids(reader) == [a["id"]]
    # A cell changed, with its version, behind the region's back (no write does this):
    # while the region's version stays, the reader trusts what it holds and does not even
    # ask, where a new reader reads the cell.
    key_a = keys.cell_places(region_of(cell_a), cell_a)
    real = redis_client.get(key_a)
    redis_client.hset(versions, field_a, b"elsewhen")
    redis_client.set(key_a, b"")
    assert _ids(reader) == [a["id"]]
    assert _ids(GeoIndex(redis_client)) == []
    redis_client.set(key_a, real)
    redis_client.hset(versions, keys.REGION_VERSION_FIELD, b"changed!")
    assert _ids(reader) == [a["id"]]  # asked again, and read again: the same records
    assert redis_client.hget(versions, keys.REGION_VERSION_FIELD) == b"changed!"
    # A write to another cell of the region: the reader checks its cell again.
    writer.apply([place_entry(b, remove=True)], [])
    redis_client.set(key_a, b"")
    assert _ids(reader) == [a["id"]]  # its version has not changed: still from memory
    writer.apply([place_entry(a, remove=True)], [])
    assert _ids(reader) == []


def test_an_empty_cell_is_held_as_empty_while_its_region_is_unchanged(redis_client):
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    a, b = _place("a"), _place("b", 39.7500, -104.9903)
    cell_b = cell_of(b["lat"], b["lng"])
    writer.apply([], [place_entry(a)])
    assert reader.places_in([cell_b]).size == 0
    # Records and a version put in the cell behind the region's back (no write does this):
    # the reader trusts its empty copy, a new reader sees them; a real write is seen by both.
    key_b = keys.cell_places(region_of(cell_b), cell_b)
    redis_client.set(key_b, place_entry(b).record)
    redis_client.hset(keys.cell_versions(region_of(cell_b)), keys.cell_version_field(key_b),
                      b"sneaked!")
    assert reader.places_in([cell_b]).size == 0
    assert GeoIndex(redis_client).places_in([cell_b]).size == 1
    writer.apply([], [place_entry(b)])
    assert reader.places_in([cell_b])["place_id"].tolist() == [b["id"].encode()]


def test_a_reader_between_two_scripts_of_one_write_sees_the_second(redis_client, monkeypatch):
    # A place moving within its region: the places and the offers of one write are two
    # scripts, and another client may read between them (forced here). The offers script
    # must give the region a version of its own, or that reader would go on trusting the
    # offer cells it read in between.
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    place = _denver(_place("a"))
    moved = {**place, "lat": 39.7500}
    offer = _offer("c", place)
    cells = [cell_of(place["lat"], place["lng"]), cell_of(moved["lat"], moved["lng"])]
    assert cells[0] != cells[1] and region_of(cells[0]) == region_of(cells[1])
    writer.apply([], [place_entry(place), *offer_entries(offer, {place["id"]: place})])
    assert reader.offers_in(cells)["lat"].tolist() == [place["lat"]]
    apply_script, scripts = writer._apply, []

    def one_script_at_a_time(keys, args, client):
        apply_script(keys=keys, args=args, client=redis_client)
        scripts.append(keys)
        if len(scripts) == 1:  # between the places script and the offers script
            assert reader.offers_in(cells)["lat"].tolist() == [place["lat"]]

    monkeypatch.setattr(writer, "_apply", one_script_at_a_time)
    writer.apply([place_entry(place, remove=True),
                  *offer_entries(offer, {place["id"]: place}, remove=True)],
                 [place_entry(moved), *offer_entries(offer, {place["id"]: moved})])
    assert len(scripts) == 2
    assert reader.offers_in(cells)["lat"].tolist() == [moved["lat"]]


def test_clear_removes_the_cell_versions(redis_client):
    index = GeoIndex(redis_client)
    index.apply([], [place_entry(_place("a"))])
    assert redis_client.keys("{g:*}:cells:*")
    index.clear()
    assert redis_client.dbsize() == 0
    assert _ids(index) == []


def test_a_cells_offers_at_one_place_are_read_side_by_side_in_filing_order(redis_client):
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)
    a, b = _denver(_place("a")), _denver({**_place("b"), "lng": -104.99031})
    assert cell_of(a["lat"], a["lng"]) == cell_of(b["lat"], b["lng"])
    places = {a["id"]: a, b["id"]: b}
    for name, place in [("c1", a), ("c2", b), ("c3", a), ("c4", b), ("c5", a)]:
        writer.apply([], offer_entries(_offer(name, place), places))
    cell = [cell_of(a["lat"], a["lng"])]
    stored = np.frombuffer(redis_client.get(keys.cell_offers(region_of(cell[0]), cell[0])),
                           OFFER_RECORD)
    read = reader.offers_in(cell)
    assert [ids_of(read)[0][i][-2:] for i in range(5)] == ["c1", "c3", "c5", "c2", "c4"]
    assert sorted(r.tobytes() for r in read) == sorted(r.tobytes() for r in stored)
    assert reader.offers_in(cell).tobytes() == read.tobytes()  # from the cache: the same order


def test_side_by_side_groups_positions_in_order_of_first_appearance_cell_by_cell():
    rng = np.random.default_rng(3)
    cells = []
    for size in (0, 1, 7, 300, 0, 40):
        records = np.zeros(size, OFFER_RECORD)
        spot = rng.integers(0, max(size // 3, 1), size)  # repeated positions
        records["lat"], records["lng"] = 39.0 + spot * 1e-4, -105.0 - spot * 1e-4
        records["offer"] = np.arange(size)  # each record told apart
        cells.append(records.tobytes())
    for before, after in zip(cells, side_by_side(cells, OFFER_RECORD), strict=True):
        records, ordered = (np.frombuffer(c, OFFER_RECORD) for c in (before, after))
        first: dict = {}  # the order as Python sees it: by first appearance, then filing
        for i, p in enumerate(zip(records["lat"].tolist(), records["lng"].tolist(),
                                  strict=True)):
            first.setdefault(p, []).append(i)
        expected = [i for rows in first.values() for i in rows]
        assert ordered["offer"].tolist() == expected


def test_reads_asked_along_share_the_index_reads_round_trip_and_its_retry(redis_client):
    writer, reader = GeoIndex(redis_client), GeoIndex(redis_client)  # two processes
    place = _denver(_place("a1"))
    cell = cell_of(place["lat"], place["lng"])
    writer.apply([], offer_entries(_offer("c", place), {place["id"]: place}))
    redis_client.set("along", b"first")
    along = [lambda pipe: pipe.get("along"), lambda pipe: pipe.hmget("nothing", "x")]
    found = reader.offers_by_cell([cell], along)
    assert len(found.records) == 1 and found.also == [b"first", [None]]
    writer.apply([], offer_entries(_offer("d", place), {place["id"]: place}))  # stale now
    redis_client.set("along", b"second")
    redis_client.script_flush()  # and the read script lost: the round trip is made again
    found = reader.offers_by_cell([cell], along)
    assert len(found.records) == 2 and found.also == [b"second", [None]]
    assert reader.offers_by_cell([], along).also == [b"second", [None]]  # no cell at all
