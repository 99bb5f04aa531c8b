"""The geo index's write script: each cell string holds exactly the records last written."""

from geo.cells import cell_of
from offers.geo_index import GeoIndex, place_entry


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
