"""A synthetic catalogue and synthetic routes for the along-route benchmark, all deterministic.

The region is a square (300 km by default) centred on Denver. Places come from three sources:

- towns: the Front Range cities at their real positions and a few dozen random villages, each a
  mixture of a tight core and a wider suburb (gaussian components, sizes from a few hundred
  metres to ~10 km);
- roads: stations along a handful of synthetic highways shaped like I-25, I-70, I-76, US-36,
  US-85, US-285 and US-24 (mostly fuel, fast food, convenience and EV charging, a few hundred
  metres off the road);
- countryside: sparse, uniform over the region.

Every place belongs to one of 200 merchants (`m_b0001` ...), chain sizes following a Zipf law,
each merchant in one category. Each place gets one offer, half of them a second one; an offer
names 1 to 25 places of its merchant (chain promotions) and is valid for a long window around
now. The documents built here are exactly what `api.schemas.PlaceSchema().load` and
`OfferSchema().load` return (`check_with_schemas` proves it on a sample).

Routes are random smooth paths (a bounded turn rate, ~200 m between vertices, as a routing API
returns them) that start in a town, chosen by town size, and steer back into the region at its
edges. They depend only on the seed, so every catalogue size is queried with the same routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from api.schemas import OfferSchema, PlaceSchema, timezone_at
from offers.catalogue import place_id_for

CENTRE = (39.74, -104.99)  # Denver
TIMEZONE = "America/Denver"
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LNG_EQUATOR = 111.320

# name, lat, lng, share of town places (relative), spread in km
TOWNS = (
    ("Denver", 39.7392, -104.9903, 30.0, 9.0),
    ("Aurora", 39.7294, -104.8319, 10.0, 6.0),
    ("Lakewood", 39.7047, -105.0814, 5.0, 4.0),
    ("Colorado Springs", 38.8339, -104.8214, 12.0, 7.0),
    ("Fort Collins", 40.5853, -105.0844, 6.0, 5.0),
    ("Boulder", 40.0150, -105.2705, 5.0, 4.0),
    ("Greeley", 40.4233, -104.7091, 4.0, 4.0),
    ("Longmont", 40.1672, -105.1019, 4.0, 3.5),
    ("Loveland", 40.3978, -105.0750, 3.0, 3.0),
    ("Castle Rock", 39.3722, -104.8561, 2.5, 2.5),
    ("Parker", 39.5186, -104.7614, 2.5, 2.5),
    ("Brighton", 39.9853, -104.8205, 2.0, 2.5),
    ("Golden", 39.7555, -105.2211, 1.5, 2.0),
    ("Evergreen", 39.6333, -105.3172, 1.0, 2.0),
    ("Fort Morgan", 40.2502, -103.7999, 1.0, 2.0),
    ("Idaho Springs", 39.7425, -105.5136, 0.5, 1.5),
    ("Limon", 39.2639, -103.6922, 0.5, 1.5),
)
VILLAGES = 60
# Highways as (lat, lng) waypoints; stations are spread along them.
ROADS = (
    ((41.05, -104.98), (40.585, -105.00), (40.40, -104.99), (40.00, -104.99), (39.74, -104.99),
     (39.37, -104.86), (38.83, -104.82), (38.45, -104.65)),                        # I-25
    ((39.70, -105.75), (39.74, -105.51), (39.74, -105.20), (39.74, -104.99), (39.73, -104.50),
     (39.26, -103.69), (39.10, -103.25)),                                           # I-70
    ((39.77, -104.99), (39.98, -104.80), (40.25, -103.80), (40.62, -103.30)),       # I-76
    ((39.80, -105.02), (39.93, -105.12), (40.015, -105.27)),                        # US-36
    ((39.77, -104.98), (40.10, -104.82), (40.42, -104.71), (40.90, -104.70)),       # US-85
    ((39.68, -105.00), (39.55, -105.20), (39.40, -105.45), (39.20, -105.80)),       # US-285
    ((38.83, -104.82), (39.00, -104.30), (39.26, -103.69)),                         # US-24
)

CATEGORY_MIX = {  # share of each category in towns, along roads and in the countryside
    "town": {"restaurant": 25, "cafe": 12, "fast_food": 12, "bar": 8, "fuel": 8,
             "ev_charging": 4, "convenience": 9, "supermarket": 6, "car_wash": 3,
             "parking": 8, "other": 5},
    "road": {"fuel": 55, "fast_food": 15, "convenience": 15, "ev_charging": 10,
             "car_wash": 5},
    "country": {"fuel": 20, "restaurant": 15, "convenience": 15, "other": 20, "parking": 10,
                "cafe": 5, "bar": 5, "fast_food": 5, "ev_charging": 3, "supermarket": 2},
}
SOURCE_SHARES = {"town": 0.70, "road": 0.12, "country": 0.18}
OPENING_HOURS = ((None, 0.35), ("24/7", 0.15), ("Mo-Su 06:00-22:00", 0.20),
                 ("Mo-Fr 07:00-19:00; Sa 08:00-17:00", 0.15),
                 ("Mo-Sa 11:00-23:00; Su 12:00-21:00", 0.15))
SCHEDULES = ((None, 0.7), ("Mo-Fr 06:00-10:00", 0.1), ("Mo-Su 11:00-14:00", 0.1),
             ("Sa,Su 08:00-20:00", 0.1))
MERCHANTS = 200
FAR_SHIFT_DEG = 6.0  # far copies of the region: Kansas, Missouri, Indiana, Ohio, ...
MAX_OFFER_PLACES = 25


# -- coordinates -------------------------------------------------------------------------------

def to_lat_lng(x_km: np.ndarray, y_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local east/north kilometres around CENTRE to degrees (equirectangular; plenty for
    synthetic data)."""
    lat = CENTRE[0] + np.asarray(y_km) / KM_PER_DEG_LAT
    lng = CENTRE[1] + np.asarray(x_km) / (KM_PER_DEG_LNG_EQUATOR * np.cos(np.radians(lat)))
    return lat, lng


def to_km(lat: np.ndarray, lng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat, lng = np.asarray(lat, float), np.asarray(lng, float)
    x = (lng - CENTRE[1]) * KM_PER_DEG_LNG_EQUATOR * np.cos(np.radians(lat))
    return x, (lat - CENTRE[0]) * KM_PER_DEG_LAT


@dataclass(frozen=True)
class Region:
    """The towns (centres in km, weights, spreads) and roads (km polylines) of the region."""

    half_km: float
    town_xy: np.ndarray      # (n, 2)
    town_weight: np.ndarray  # sums to 1
    town_sigma: np.ndarray   # km
    roads: tuple[np.ndarray, ...]


def make_region(seed: int, region_km: float = 300.0) -> Region:
    rng = np.random.default_rng([seed, 0])
    half = region_km / 2
    lat, lng = np.array([t[1] for t in TOWNS]), np.array([t[2] for t in TOWNS])
    named = np.stack(to_km(lat, lng), axis=1)
    villages = rng.uniform(-half * 0.95, half * 0.95, size=(VILLAGES, 2))
    weights = np.concatenate([[t[3] for t in TOWNS],
                              0.6 / np.arange(1, VILLAGES + 1) ** 0.7])
    sigmas = np.concatenate([[t[4] for t in TOWNS], rng.uniform(0.6, 1.5, VILLAGES)])
    roads = tuple(np.stack(to_km(*np.array(road).T), axis=1) for road in ROADS)
    return Region(half, np.concatenate([named, villages]), weights / weights.sum(), sigmas,
                  roads)


# -- places ------------------------------------------------------------------------------------

def _categories(rng, source: str, n: int) -> np.ndarray:
    mix = CATEGORY_MIX[source]
    p = np.array(list(mix.values()), float)
    return rng.choice(np.array(list(mix)), size=n, p=p / p.sum())


def _town_points(rng, region: Region, n: int) -> np.ndarray:
    town = rng.choice(len(region.town_weight), size=n, p=region.town_weight)
    # A tight core (40%) and a wider suburb (60%) per town.
    spread = region.town_sigma[town] * np.where(rng.random(n) < 0.4, 0.35, 1.0)
    return region.town_xy[town] + rng.normal(size=(n, 2)) * spread[:, None]


def _road_points(rng, region: Region, n: int) -> np.ndarray:
    pieces = []
    for road in region.roads:
        for a, b in zip(road[:-1], road[1:], strict=True):
            pieces.append((a, b))
    lengths = np.array([np.linalg.norm(b - a) for a, b in pieces])
    which = rng.choice(len(pieces), size=n, p=lengths / lengths.sum())
    a = np.array([pieces[i][0] for i in range(len(pieces))])[which]
    b = np.array([pieces[i][1] for i in range(len(pieces))])[which]
    t = rng.random(n)[:, None]
    direction = (b - a) / np.linalg.norm(b - a, axis=1, keepdims=True)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    lateral = rng.normal(0, 0.2, n)[:, None] + np.sign(rng.random(n) - 0.5)[:, None] * 0.05
    return a + t * (b - a) + lateral * normal


def place_points(seed: int, region: Region, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` positions (km, shape (n, 2)) and their categories, deterministic for (seed, n)."""
    rng = np.random.default_rng([seed, 1, n])
    counts = rng.multinomial(n, list(SOURCE_SHARES.values()))
    xy, categories = [], []
    for source, count in zip(SOURCE_SHARES, counts, strict=True):
        if source == "town":
            points = _town_points(rng, region, count)
        elif source == "road":
            points = _road_points(rng, region, count)
        else:
            points = rng.uniform(-region.half_km, region.half_km, size=(count, 2))
        # Anything a gaussian threw out of the region lands in the countryside instead.
        outside = (np.abs(points) > region.half_km).any(axis=1)
        points[outside] = rng.uniform(-region.half_km, region.half_km,
                                      size=(int(outside.sum()), 2))
        xy.append(points)
        categories.append(_categories(rng, source, count))
    order = rng.permutation(n)
    return np.concatenate(xy)[order], np.concatenate(categories)[order]


def merchant_ids() -> list[str]:
    return [f"m_b{i:04d}" for i in range(1, MERCHANTS + 1)]


def _merchant_categories(rng) -> np.ndarray:
    """One category per merchant: every category has some, the rest follow the town mix."""
    mix = CATEGORY_MIX["town"]
    names = np.array(list(mix))
    p = np.array(list(mix.values()), float)
    rest = rng.choice(names, size=MERCHANTS - len(names), p=p / p.sum())
    return rng.permutation(np.concatenate([names, rest]))


def _pick(rng, options, n: int) -> list:
    """`n` draws from (value, weight) pairs."""
    p = np.array([w for _, w in options], float)
    picks = rng.choice(len(options), size=n, p=p / p.sum())
    return [options[i][0] for i in picks]


@dataclass
class Catalogue:
    """Place documents grouped by merchant (as `PlaceSchema().load` returns them), and the
    flat arrays a brute-force scan uses (`place_id`, `lat`, `lng`, row for row)."""

    places: dict[str, list[dict]]
    place_id: np.ndarray
    lat: np.ndarray
    lng: np.ndarray
    category: np.ndarray
    merchant: np.ndarray


def make_places(seed: int, region: Region, n: int, copy: int = 0) -> Catalogue:
    """`n` places in the region; `copy` k > 0 draws another `n` in a copy of the region moved
    k * FAR_SHIFT_DEG east, far from every route (to grow the catalogue, not the corridors)."""
    part_seed = seed + 1000 * copy
    xy, categories = place_points(part_seed, region, n)
    lat, lng = to_lat_lng(xy[:, 0], xy[:, 1])
    lat, lng = np.round(lat, 6), np.round(lng + FAR_SHIFT_DEG * copy, 6)
    timezone = TIMEZONE if copy == 0 else timezone_at(CENTRE[0],
                                                      CENTRE[1] + FAR_SHIFT_DEG * copy)
    rng = np.random.default_rng([part_seed, 2, n])
    merchants = np.array(merchant_ids(), dtype=object)
    merchant_category = _merchant_categories(np.random.default_rng([seed, 3]))
    owner = np.empty(n, dtype=object)
    for category in np.unique(categories):
        rows = np.nonzero(categories == category)[0]
        chains = merchants[merchant_category == category].astype(str)
        zipf = 1.0 / np.arange(1, len(chains) + 1) ** 0.8
        owner[rows] = rng.choice(chains, size=len(rows), p=zipf / zipf.sum())
    hours = _pick(rng, OPENING_HOURS, n)
    by_merchant: dict[str, list[dict]] = {m: [] for m in merchants}
    place_ids = np.empty(n, dtype=object)
    for i in range(n):
        merchant = str(owner[i])
        external_id = f"bench:{i}" if copy == 0 else f"bench:c{copy}:{i}"
        number = len(by_merchant[merchant]) + 1
        doc = {"name": f"{merchant.upper()} {categories[i]} #{number}",
               "category": str(categories[i]), "brand": f"Brand {merchant[3:]}",
               "lat": float(lat[i]), "lng": float(lng[i]), "external_id": external_id,
               "timezone": timezone, "attributes": {}}
        if hours[i] is not None:
            doc["opening_hours"] = hours[i]
        by_merchant[merchant].append(doc)
        place_ids[i] = place_id_for(merchant, external_id)
    return Catalogue({m: docs for m, docs in by_merchant.items() if docs},
                     place_ids.astype(str), lat, lng, categories, owner.astype(str))


def merged(parts: list[Catalogue]) -> Catalogue:
    """One catalogue of several parts (each merchant's places concatenated)."""
    places: dict[str, list[dict]] = {}
    for part in parts:
        for merchant, docs in part.places.items():
            places.setdefault(merchant, []).extend(docs)
    return Catalogue(places, *(np.concatenate([getattr(p, name) for p in parts]) for name in
                               ("place_id", "lat", "lng", "category", "merchant")))


# -- offers ------------------------------------------------------------------------------------

def _discount(rng, category: str) -> dict:
    if category in ("fuel", "ev_charging") and rng.random() < 0.7:
        return {"kind": "per_unit", "value": round(float(rng.uniform(0.05, 0.30)), 2),
                "currency": "USD", "unit": "litre" if category == "fuel" else "kwh"}
    if rng.random() < 0.6:
        return {"kind": "percent", "value": float(rng.integers(5, 31))}
    return {"kind": "amount", "value": float(rng.integers(1, 11)), "currency": "USD"}


def _offer(rng, place_ids: list[str], category: str, number: int, valid_from: str,
           valid_until: str, schedule: str | None) -> dict:
    doc = {"place_ids": place_ids, "title": f"Deal {number} ({category})",
           "category": category, "discount": _discount(rng, category),
           "valid_from": valid_from, "valid_until": valid_until, "status": "active"}
    if rng.random() < 0.5:
        doc["value_estimate"] = round(float(rng.uniform(1, 15)), 2)
    if schedule is not None:
        doc["schedule"] = schedule
    if rng.random() < 0.4:
        doc["budget"] = {"max_redemptions": 100_000, "daily_max": 1_000}
    if rng.random() < 0.3:
        doc["per_driver_limit"] = int(rng.integers(1, 4))
    return doc


def make_offers(seed: int, catalogue: Catalogue, now: datetime,
                copy: int = 0) -> list[tuple[str, dict]]:
    """(merchant_id, offer document) pairs: each place in one offer, half of them in a second;
    an offer names 1 to MAX_OFFER_PLACES places of its merchant."""
    rng = np.random.default_rng([seed + 1000 * copy, 4, len(catalogue.place_id)])
    valid_from = (now - timedelta(days=30)).replace(microsecond=0).isoformat()
    valid_until = (now + timedelta(days=365)).replace(microsecond=0).isoformat()
    offers = []
    for merchant, docs in catalogue.places.items():
        ids = [place_id_for(merchant, d["external_id"]) for d in docs]
        category = docs[0]["category"]
        for share in (1.0, 0.5):
            chosen = rng.permutation(len(ids))[: int(round(len(ids) * share)) or 1]
            start = 0
            while start < len(chosen):
                size = int(rng.integers(1, MAX_OFFER_PLACES + 1))
                group = [ids[i] for i in chosen[start:start + size]]
                schedule = _pick(rng, SCHEDULES, 1)[0]
                offers.append((merchant, _offer(rng, group, category, len(offers) + 1,
                                                valid_from, valid_until, schedule)))
                start += size
    return offers


def check_with_schemas(catalogue: Catalogue, offers: list[tuple[str, dict]],
                       sample: int = 2000) -> int:
    """Assert that a sample of the built documents is exactly what the API schemas load."""
    # A spread over each merchant's places, so every part of a merged catalogue is sampled.
    places = [d for docs in catalogue.places.values()
              for d in docs[:: max(1, len(docs) // 10)][:10]]
    place_schema, offer_schema = PlaceSchema(), OfferSchema()
    for doc in places[:sample]:
        loaded = place_schema.load(doc)
        assert loaded == doc, (loaded, doc)
    for _, doc in offers[:: max(1, len(offers) // sample)][:sample]:
        loaded = offer_schema.load(doc)
        assert loaded == doc, (loaded, doc)
    return min(len(places), sample) + min(len(offers), sample)


# -- routes ------------------------------------------------------------------------------------

def make_route(rng, region: Region, length_km: float, start: str = "towns",
               step_km: float = 0.2) -> np.ndarray:
    """A smooth random path of `length_km`: (n, 2) lat/lng vertices. It starts in a town
    chosen by size (`start="towns"`, where most driving is) or anywhere in the region
    (`start="anywhere"`, mostly countryside)."""
    if start == "towns":
        town = rng.choice(len(region.town_weight), p=region.town_weight)
        position = region.town_xy[town] + rng.normal(size=2) * region.town_sigma[town] * 0.5
    else:
        position = rng.uniform(-region.half_km, region.half_km, size=2)
    position = np.clip(position, -region.half_km * 0.9, region.half_km * 0.9)
    heading = rng.uniform(0, 2 * np.pi)
    turn = 0.0
    steps = int(round(length_km / step_km))
    points = np.empty((steps + 1, 2))
    points[0] = position
    margin = region.half_km * 0.85
    for i in range(1, steps + 1):
        # Turn rate as an Ornstein-Uhlenbeck process: long straights, occasional bends.
        turn = 0.9 * turn + rng.normal(0, 0.03)
        if (np.abs(position) > margin).any():  # near the edge: steer towards the centre
            inward = np.arctan2(-position[1], -position[0])
            turn += 0.15 * np.sin(inward - heading)
        heading += turn
        position = position + step_km * np.array([np.cos(heading), np.sin(heading)])
        points[i] = position
    lat, lng = to_lat_lng(points[:, 0], points[:, 1])
    return np.stack([np.round(lat, 6), np.round(lng, 6)], axis=1)


def make_routes(seed: int, region: Region, lengths_km: list[float], count: int,
                start: str = "towns") -> dict[float, list[dict]]:
    """`count` GeoJSON LineStrings ([lng, lat]) per length, the same for any catalogue."""
    routes = {}
    for length in lengths_km:
        rng = np.random.default_rng([seed, 5, int(length * 1000), start == "towns"])
        routes[length] = [
            {"type": "LineString", "coordinates": [
                [float(b), float(a)] for a, b in make_route(rng, region, length, start)]}
            for _ in range(count)]
    return routes


def now_utc() -> datetime:
    return datetime.now(UTC)
