"""Generator for the demo region: a synthetic Denver, Colorado with places, merchants and offers.

Run `python -m seed_data.generate [OUT_DIR]` from the repository root. It rewrites merchants.json,
fleets.json, places.json, offers.json and routes.json next to this file (or in OUT_DIR). The output
is committed, so the demo and tests need neither the network nor this script; the script only has
to be re-run when the region should change. It is deterministic (a fixed numpy seed, fixed
iteration order), so re-running it without code changes reproduces the files byte for byte.

Denver was picked because real car traces of Denver exist in the project's shared data, so demo
routes there make sense. The roads are synthetic but follow the real layout roughly: an I-25-like
north-south highway, an I-70-like east-west one, a 470-like ring and a few named arterials, with
a street grid in eight real towns.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from shapely import segmentize
from shapely.geometry import LineString, Point
from shapely.ops import substring

SEED = 20260101
TIMEZONE = "America/Denver"
OUT_DIR = Path(__file__).resolve().parent
# Local plane in km around the region's centre: good to well under 1% across 50 km, and it lets
# shapely measure lengths and offsets in km directly.
LAT0, LNG0 = 39.75, -104.925
KM_LAT = 111.32
KM_LNG = 111.32 * math.cos(math.radians(LAT0))

Rng = np.random.Generator
Record = tuple[str | None, str, dict]  # (merchant key, town, place document)


def to_xy(lng: float, lat: float) -> tuple[float, float]:
    return (lng - LNG0) * KM_LNG, (lat - LAT0) * KM_LAT


def to_lnglat(x: float, y: float) -> tuple[float, float]:
    return round(LNG0 + x / KM_LNG, 6), round(LAT0 + y / KM_LAT, 6)


def road_network() -> dict[str, tuple[str, LineString]]:
    """Named roads in the km plane, each tagged 'highway' or 'arterial'."""
    def line(*lnglat: tuple[float, float]) -> LineString:
        return LineString([to_xy(*p) for p in lnglat])

    cx, cy = to_xy(-104.95, 39.74)
    ring = LineString([(cx + 15 * math.cos(a), cy + 15 * math.sin(a))
                       for a in np.linspace(0, 2 * math.pi, 73)])
    return {
        "I-25": ("highway", line((-104.86, 39.55), (-104.90, 39.62), (-104.96, 39.68),
                                 (-105.00, 39.73), (-105.00, 39.80), (-104.99, 39.87),
                                 (-104.98, 39.95))),
        "I-70": ("highway", line((-105.15, 39.74), (-105.08, 39.77), (-105.00, 39.78),
                                 (-104.90, 39.775), (-104.80, 39.77), (-104.70, 39.77))),
        "Beltway 470": ("highway", ring),
        "Colfax Ave": ("arterial", line((-105.15, 39.740), (-104.70, 39.740))),
        "Hampden Ave": ("arterial", line((-105.12, 39.6535), (-104.78, 39.6535))),
        "Arapahoe Rd": ("arterial", line((-105.00, 39.595), (-104.72, 39.595))),
        "120th Ave": ("arterial", line((-105.10, 39.915), (-104.75, 39.915))),
        "Federal Blvd": ("arterial", line((-105.025, 39.60), (-105.025, 39.95))),
        "Colorado Blvd": ("arterial", line((-104.9407, 39.62), (-104.9407, 39.87))),
        "Wadsworth Blvd": ("arterial", line((-105.0814, 39.58), (-105.0814, 39.92))),
        "Parker Rd": ("arterial", line((-104.93, 39.69), (-104.73, 39.56))),
    }


def towns() -> list[dict]:
    """Real town centres; radius (km) and place count set how big and dense each grid is."""
    rows = [("Denver", 39.7420, -104.9915, 6.0, 900, "80202"),
            ("Aurora", 39.7083, -104.8260, 5.0, 450, "80012"),
            ("Lakewood", 39.7047, -105.0814, 4.0, 350, "80226"),
            ("Thornton", 39.8680, -104.9719, 3.5, 250, "80229"),
            ("Arvada", 39.8028, -105.0875, 3.5, 250, "80002"),
            ("Littleton", 39.6133, -105.0166, 3.0, 220, "80120"),
            ("Centennial", 39.5807, -104.8772, 3.0, 200, "80112"),
            ("Englewood", 39.6478, -104.9878, 2.5, 180, "80110")]
    return [{"name": n, "xy": to_xy(lng, lat), "radius": r, "count": c, "zip": z}
            for n, lat, lng, r, c, z in rows]


CATEGORY_MIX = {  # share of each category among town places
    "restaurant": .24, "cafe": .12, "fast_food": .14, "bar": .09, "other": .12,
    "convenience": .08, "parking": .08, "supermarket": .04, "fuel": .04, "car_wash": .03,
    "ev_charging": .02,
}
# Chains per category as (brand, merchant key or None, share of that category's places). The
# merchants' brands are invented so no real company appears to fund demo offers.
CHAINS = {
    "cafe": [("Peak Coffee", "coffee", .25), ("Starbucks", None, .2), ("Dunkin'", None, .06),
             ("Peet's Coffee", None, .04)],
    "fast_food": [("Mile High Burgers", "burger", .2), ("McDonald's", None, .12),
                  ("Taco Bell", None, .07), ("Chipotle", None, .07), ("Subway", None, .07),
                  ("Wendy's", None, .05), ("Chick-fil-A", None, .04)],
    "fuel": [("Summit Fuel", "fuel", .25), ("Shell", None, .15), ("Conoco", None, .12),
             ("Phillips 66", None, .1), ("Sinclair", None, .1), ("Exxon", None, .08)],
    "ev_charging": [("Front Range Charge", "charging", .4), ("Tesla Supercharger", None, .2),
                    ("ChargePoint", None, .15), ("Electrify America", None, .1)],
    "supermarket": [("Mountain Fresh Market", "grocery", .3), ("King Soopers", None, .25),
                    ("Safeway", None, .2), ("Sprouts Farmers Market", None, .1)],
    "car_wash": [("Sparkle Express Car Wash", "carwash", .35), ("Mister Car Wash", None, .15)],
    "convenience": [("7-Eleven", None, .3), ("Circle K", None, .15)],
    "restaurant": [("Larimer Hospitality", "dining", .12), ("Olive Garden", None, .02),
                   ("Applebee's", None, .02)],
    "bar": [("Larimer Hospitality", "dining", .15)],
}
DINING_TOWNS = ("Denver", "Englewood")  # the local restaurant group stays local
DINING_NAMES = {"restaurant": ["Larimer Kitchen", "Larimer Cantina", "Larimer Trattoria"],
                "bar": ["Larimer Tap House", "Larimer Social"]}
WORDS = ["Aspen", "Blue Spruce", "Columbine", "Cherry Creek", "Platte", "Timberline", "Mesa",
         "Bison", "Elk Ridge", "Granite", "Sage", "Juniper", "Red Rocks", "Larkspur", "Canyon",
         "Prairie", "Cottonwood", "Alpine", "Highland", "Sunnyside", "Golden Hour", "Pinecrest"]
SURNAMES = ["Garcia", "Miller", "Nguyen", "Rossi", "Kim", "O'Brien", "Patel", "Schmidt",
            "Lopez", "Baker", "Haddad", "Romero", "Tanaka", "Walsh", "Okafor", "Jensen"]
NAME_PATTERNS = {
    "restaurant": ["{s}'s Kitchen", "{w} Grill", "{w} Bistro", "The {w} Table", "{s}'s Diner",
                   "{w} Noodle House", "Casa {s}", "{w} Smokehouse"],
    "cafe": ["{w} Coffee", "{w} Espresso Bar", "The {w} Café", "{s}'s Bakery & Coffee"],
    "fast_food": ["{w} Burgers", "{w} Tacos", "{s}'s Pizza", "{w} Chicken Shack"],
    "bar": ["{w} Tavern", "{w} Taproom", "{s}'s Pub", "{w} Saloon", "{w} Brewing Co."],
    "fuel": ["{w} Gas", "{s}'s Service Station"], "ev_charging": ["{w} Public Charging"],
    "convenience": ["{w} Market", "{w} Mart", "{s}'s Corner Store"],
    "supermarket": ["{w} Grocery", "{s}'s Foods"], "car_wash": ["{w} Auto Spa", "{w} Car Wash"],
    "parking": ["{w} Parking Garage", "{w} Park & Ride", "{w} Public Lot"],
    "other": ["{w} Hardware", "{w} Auto Repair", "{w} Pharmacy", "{w} Tire & Service",
              "{w} Books", "{s}'s Dry Cleaning", "{w} Pet Supply", "{w} Fitness"],
}
HOURS = {
    "fuel": ["24/7", "24/7", "24/7", "Mo-Su 05:00-23:00", "Mo-Fr 05:30-22:00; Sa-Su 06:00-22:00"],
    "ev_charging": ["24/7", "24/7", "24/7", "Mo-Su 06:00-22:00", None],
    "cafe": ["Mo-Fr 06:00-20:00; Sa-Su 07:00-18:00", "Mo-Su 06:30-18:00",
             "Mo-Fr 06:00-15:00; Sa 07:00-14:00; Su off"],
    "restaurant": ["Mo-Su 11:00-22:00", "Tu-Su 11:30-14:30,17:00-22:00; Mo off",
                   "Mo-Th 11:00-21:00; Fr-Sa 11:00-23:00; Su 11:00-20:00",
                   "Mo-Fr 07:00-11:00,17:00-22:00; Sa-Su 08:00-22:00"],
    "fast_food": ["Mo-Su 06:00-23:00", "Mo-Su 10:30-22:00", "24/7",
                  "Mo-Th 10:00-23:00; Fr-Sa 10:00-02:00; Su 10:00-22:00"],
    "bar": ["Mo-Su 16:00-02:00", "Tu-Sa 17:00-02:00; Su,Mo off",
            "Mo-Fr 15:00-00:00; Sa-Su 12:00-02:00"],
    "supermarket": ["Mo-Su 06:00-23:00", "Mo-Sa 07:00-21:00; Su 08:00-20:00",
                    "Mo-Sa 07:00-21:00; Su off"],
    "convenience": ["24/7", "Mo-Su 06:00-00:00"],
    "car_wash": ["Mo-Sa 07:00-19:00; Su 08:00-18:00", "Mo-Su 07:00-20:00"],
    "parking": ["24/7", None],
    "other": ["Mo-Fr 08:00-18:00; Sa 09:00-17:00; Su off", "Mo-Sa 09:00-20:00; Su 10:00-18:00",
              "Mo-Fr 07:30-17:30; Sa-Su off", None],
}
CUISINES = {
    "restaurant": ["american", "mexican", "italian", "chinese", "vietnamese", "thai", "indian",
                   "japanese", "steak_house", "bbq", "mediterranean", "korean", "seafood",
                   "breakfast"],
    "cafe": ["coffee_shop"], "bar": ["american"],
    "fast_food": ["burger", "mexican", "sandwich", "chicken", "pizza"],
}
BRAND_CUISINE = {"Mile High Burgers": "burger", "McDonald's": "burger", "Wendy's": "burger",
                 "Taco Bell": "mexican", "Chipotle": "mexican", "Subway": "sandwich",
                 "Chick-fil-A": "chicken", "Olive Garden": "italian", "Applebee's": "american"}
STREETS = ["Broadway", "Lincoln", "Sherman", "Grant", "Logan", "Pennsylvania", "Pearl",
           "Washington", "Clarkson", "Downing", "Marion", "Lafayette", "Humboldt", "Franklin",
           "Gilpin", "Williams", "High", "Race", "Vine", "York", "Josephine", "Elizabeth"]


def pick(rng: Rng, options: list):
    return options[int(rng.integers(len(options)))]


def nearest_town(xy: tuple[float, float], town_list: list[dict]) -> dict:
    return min(town_list, key=lambda t: math.dist(xy, t["xy"]))


def make_place(rng: Rng, category: str, xy: tuple[float, float], street: str, house: int,
               town: dict) -> Record:
    """One place document; decides chain or independent, name, hours and attributes."""
    merchant, brand = None, None
    draw, acc = rng.random(), 0.0
    for chain_brand, key, share in CHAINS.get(category, []):
        acc += share
        if draw < acc and (key != "dining" or town["name"] in DINING_TOWNS):
            merchant, brand = key, chain_brand
            break
    if merchant == "dining":
        name = pick(rng, DINING_NAMES[category])
    elif brand:
        name = brand
    else:
        name = pick(rng, NAME_PATTERNS[category]).format(w=pick(rng, WORDS), s=pick(rng, SURNAMES))
    lng, lat = to_lnglat(*xy)
    doc = {"name": name, "category": category, "brand": brand, "lat": lat, "lng": lng,
           "address": f"{house} {street}, {town['name']}, CO {town['zip']}",
           "opening_hours": pick(rng, HOURS[category]), "timezone": TIMEZONE,
           "attributes": place_attributes(rng, category, brand)}
    return merchant, town["name"], {k: v for k, v in doc.items() if v not in (None, {})}


def place_attributes(rng: Rng, category: str, brand: str | None) -> dict:
    attrs: dict = {}
    if category in CUISINES:
        cuisines = CUISINES[category]
        attrs["cuisine"] = sorted({pick(rng, cuisines) for _ in range(int(rng.integers(1, 3)))})
        if brand in BRAND_CUISINE:  # a chain serves its own cuisine everywhere
            attrs["cuisine"] = [BRAND_CUISINE[brand]]
        low, high = {"restaurant": (1, 5), "bar": (2, 4), "cafe": (1, 3)}.get(category, (1, 2))
        attrs["price_level"] = int(rng.integers(low, high))
    elif category == "fuel":
        extra = [f for f in ("e85", "e10", "adblue", "cng") if rng.random() < .2]
        attrs["fuel_types"] = ["petrol", "diesel", *extra]
    elif category == "ev_charging":
        if brand == "Tesla Supercharger":
            attrs["ev_connectors"] = [{"type": "nacs", "power_kw": 250.0,
                                       "count": int(rng.integers(8, 17))}]
        elif rng.random() < .6:  # DC fast site, often with a CHAdeMO post for older cars
            attrs["ev_connectors"] = [{"type": "ccs1", "power_kw": float(pick(rng, [50, 150, 350])),
                                       "count": int(rng.integers(2, 9))}]
            if rng.random() < .5:
                attrs["ev_connectors"].append({"type": "chademo", "power_kw": 50.0, "count": 1})
        else:  # level 2 (J1772) posts in a car park
            attrs["ev_connectors"] = [{"type": "type1", "power_kw": 7.2,
                                       "count": int(rng.integers(2, 11))}]
    return attrs


def town_places(rng: Rng, town: dict) -> list[Record]:
    """Places on a town's street grid, denser towards the centre (Gaussian distance)."""
    cats, weights = list(CATEGORY_MIX), np.array(list(CATEGORY_MIX.values()))
    block = 0.25  # km between streets
    out = []
    for _ in range(town["count"]):
        dx, dy = rng.normal(0, town["radius"] / 2.2, 2)
        if rng.random() < .5:  # on an east-west avenue: snap y to the grid
            avenue = round(dy / block)
            dy = avenue * block + rng.choice([-.015, .015])
            side = "E" if dx >= 0 else "W"
            street = f"{side} {ordinal(max(1, avenue + 20))} Ave"
            along = dx
        else:  # on a north-south street: snap x to the grid
            index = round(dx / block)
            dx = index * block + rng.choice([-.015, .015])
            street = f"{'N' if dy >= 0 else 'S'} {STREETS[index % len(STREETS)]} St"
            along = dy
        house = 100 + 2 * int(abs(along) * 500) + int(rng.integers(2))
        category = str(rng.choice(cats, p=weights / weights.sum()))
        xy = (town["xy"][0] + dx, town["xy"][1] + dy)
        out.append(make_place(rng, category, xy, street, house, town))
    return out


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def beside(rng: Rng, road: LineString, at_km: float) -> tuple[float, float]:
    """A point 60-250 m to either side of the road at a distance along it."""
    p, q = road.interpolate(at_km), road.interpolate(min(at_km + .05, road.length))
    tx, ty = q.x - p.x, q.y - p.y
    norm = math.hypot(tx, ty) or 1.0
    offset = rng.uniform(.06, .25) * rng.choice([-1, 1])
    return p.x - ty / norm * offset, p.y + tx / norm * offset


def cluster(rng: Rng, road_name: str, road: LineString, at_km: float, town_list: list[dict],
            odds: dict[str, float]) -> list[Record]:
    """A roadside cluster (an exit or a junction): each category appears with its odds."""
    out = []
    for category, chance in odds.items():
        for _ in range(int(chance) + (rng.random() < chance % 1)):
            xy = beside(rng, road, float(np.clip(at_km + rng.uniform(-.3, .3), 0, road.length)))
            house = 1000 + 2 * int(at_km * 100)
            out.append(make_place(rng, category, xy, road_name, house, nearest_town(xy, town_list)))
    return out


EXIT_ODDS = {"fuel": 1.6, "ev_charging": .7, "fast_food": 1.4, "convenience": .6, "cafe": .4,
             "restaurant": .3}
JUNCTION_ODDS = {"fuel": 1.2, "ev_charging": .6, "fast_food": 1.2, "convenience": .6,
                 "cafe": .4, "car_wash": .5, "restaurant": .4, "parking": .3}
RURAL_ODDS = {"other": .35, "parking": .15, "restaurant": .15, "fuel": .15, "convenience": .1,
              "car_wash": .08, "bar": .05, "supermarket": .03}


def places_along(rng: Rng, roads: dict, town_list: list[dict]) -> list[Record]:
    """Highway exits every 3-5 km, arterial junction clusters, and sparse countryside."""
    out: list[Record] = []
    for name, (kind, road) in roads.items():
        if kind == "highway":
            at = rng.uniform(1, 3)
            while at < road.length:
                out += cluster(rng, name, road, at, town_list, EXIT_ODDS)
                at += rng.uniform(3, 5)
    names = list(roads)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            crossing = roads[a][1].intersection(roads[b][1])
            for point in getattr(crossing, "geoms", [crossing]):
                if isinstance(point, Point) and not point.is_empty:
                    road = roads[a][1]
                    out += cluster(rng, a, road, road.project(point), town_list, JUNCTION_ODDS)
    for name, (_, road) in roads.items():  # countryside: roadside places outside the towns
        for at in np.arange(.5, road.length, 1.5):
            xy = beside(rng, road, float(at))
            town = nearest_town(xy, town_list)
            if math.dist(xy, town["xy"]) > town["radius"]:
                out += cluster(rng, name, road, float(at), town_list,
                               {c: p * .6 for c, p in RURAL_ODDS.items()})
    return out


# Offer templates per category: (title, kind, values, schedules, basket/units for the estimate).
# `{v}` is the value as shown; per_unit values are dollars per litre or per kWh.
TEMPLATES = {
    "cafe": [("{v}% off any handcrafted drink", "percent", [10, 15, 20, 25], [None], 6),
             ("Breakfast deal: {v}% off breakfast sandwiches", "percent", [20, 25, 30],
              ["Mo-Fr 06:00-10:00"], 7),
             ("${v} off any latte", "amount", [0.75, 1.0, 1.5], [None], 1),
             ("Afternoon pick-me-up: {v}% off iced drinks", "percent", [20, 30],
              ["Mo-Fr 14:00-17:00"], 5)],
    "fuel": [("Save ${v} per litre on all grades", "per_unit", [0.03, 0.05, 0.08], [None], 45),
             ("Early bird: save ${v} per litre", "per_unit", [0.05, 0.1], ["Mo-Fr 05:00-09:00"],
              45),
             ("Weekend fill-up: save ${v} per litre", "per_unit", [0.05, 0.07], ["Sa-Su"], 45),
             ("${v} off a fill-up of 40 litres or more", "amount", [2.0, 3.0, 5.0], [None], 1)],
    "ev_charging": [("Save ${v} per kWh on fast charging", "per_unit", [0.05, 0.08, 0.1], [None],
                     35),
                    ("Off-peak charging: save ${v} per kWh", "per_unit", [0.1, 0.15],
                     ["Mo-Fr 10:00-15:00", "Mo-Su 22:00-06:00"], 35),
                    ("{v}% off your charging session", "percent", [10, 20, 25], [None], 14),
                    ("${v} off your first session", "amount", [3.0, 5.0], [None], 1)],
    "fast_food": [("{v}% off any combo meal", "percent", [10, 15, 20], [None], 11),
                  ("Free fries with any burger", "amount", [2.49], [None], 1),
                  ("Breakfast: {v}% off breakfast burritos", "percent", [20, 25],
                   ["Mo-Fr 06:00-10:30"], 8),
                  ("Late night: ${v} off any combo", "amount", [2.0, 3.0],
                   ["Mo-Su 21:00-01:00"], 1)],
    "restaurant": [("{v}% off lunch", "percent", [15, 20, 25], ["Mo-Fr 11:00-14:00"], 22),
                   ("${v} off dinner for two", "amount", [10.0, 15.0], [None], 1),
                   ("Free dessert with any entrée", "amount", [8.0], [None], 1),
                   ("Weekend brunch: {v}% off", "percent", [15, 20], ["Sa-Su 09:00-14:00"], 30)],
    "bar": [("Happy hour: {v}% off drinks", "percent", [25, 30, 50], ["Mo-Fr 16:00-19:00"], 24),
            ("${v} off craft beers", "amount", [2.0], [None], 1),
            ("Late happy hour: {v}% off", "percent", [20, 30], ["Mo-Th 21:00-23:00"], 20)],
    "car_wash": [("${v} off any wash", "amount", [3.0, 5.0, 7.0], [None], 1),
                 ("{v}% off the premium wash", "percent", [15, 20, 30], [None], 25),
                 ("Midweek wash deal: {v}% off", "percent", [25, 40], ["Tu-We 08:00-18:00"], 15)],
    "supermarket": [("${v} off a $50 shop", "amount", [5.0, 10.0], [None], 1),
                    ("{v}% off deli and hot foods", "percent", [10, 15, 20], [None], 15),
                    ("Road-trip snacks: {v}% off", "percent", [10, 20], [None], 12),
                    ("Evening bakery: {v}% off", "percent", [30, 50], ["Mo-Su 18:00-21:00"], 10)],
}
MERCHANTS = [("coffee", "Peak Coffee Co."), ("fuel", "Summit Fuel"),
             ("charging", "Front Range Charge"), ("burger", "Mile High Burgers"),
             ("dining", "Larimer Hospitality Group"), ("carwash", "Sparkle Express Car Wash"),
             ("grocery", "Mountain Fresh Market")]
FLEETS = [("north", "Demo Fleet North"), ("south", "Demo Fleet South")]
WINDOWS = [  # (valid_from, valid_until, weight): mostly valid around the present
    ("2026-01-01T00:00:00-07:00", "2030-12-31T23:59:59-07:00", .8),
    ("2026-03-01T00:00:00-07:00", None, .06),
    ("2025-01-01T00:00:00-07:00", "2025-12-31T23:59:59-07:00", .04),
    ("2026-05-01T00:00:00-06:00", "2026-08-31T23:59:59-06:00", .03),
    ("2030-01-01T00:00:00-07:00", "2030-12-31T23:59:59-07:00", .07),
]


def make_offers(rng: Rng, records: list[Record]) -> list[dict]:
    """About 60 offers per merchant, each over a chain-wide, town-wide or hand-picked scope."""
    offers = []
    for key, merchant_name in MERCHANTS:
        owned = [(town, doc) for m, town, doc in records if m == key]
        categories = sorted({doc["category"] for _, doc in owned})
        for n in range(60):
            category = categories[n % len(categories)]
            mine = [(town, doc) for town, doc in owned if doc["category"] == category]
            brand = mine[0][1]["brand"]
            scope = pick(rng, ["all", "town", "town", "few", "one", "one"])
            if scope == "all":
                chosen, where = mine, f"Valid at every {brand} location."
            elif scope == "town":
                town = pick(rng, sorted({t for t, _ in mine}))
                chosen = [(t, d) for t, d in mine if t == town]
                where = f"Valid at {brand} locations in {town}."
            else:
                size = 1 if scope == "one" else min(len(mine), int(rng.integers(2, 6)))
                picks = sorted(rng.choice(len(mine), size, replace=False))
                chosen = [mine[i] for i in picks]
                where = "Valid at " + "; ".join(d["address"] for _, d in chosen) + "."
            title, kind, values, schedules, basket = pick(rng, TEMPLATES[category])
            value = pick(rng, values)
            shown = f"{value:.2f}" if kind != "percent" else f"{value}"
            estimate = value * basket / 100 if kind == "percent" else value * basket
            discount = {"kind": kind, "value": float(value)}
            if kind != "percent":
                discount["currency"] = "USD"
            if kind == "per_unit":
                discount["unit"] = "kwh" if category == "ev_charging" else "litre"
            w = np.array([x[2] for x in WINDOWS])
            start, end, _ = WINDOWS[int(rng.choice(len(WINDOWS), p=w / w.sum()))]
            title = title.format(v=shown) + (f" in {town}" if scope == "town" else "")
            offer = {"title": title, "category": category,
                     "description": f"{merchant_name}: {title[0].lower()}{title[1:]}. {where}",
                     "discount": discount, "value_estimate": round(float(estimate), 2),
                     "valid_from": start, "valid_until": end, "timezone": TIMEZONE,
                     "schedule": pick(rng, schedules), "budget": budget(rng),
                     "per_driver_limit": pick(rng, [1, 2, 3, 5, 10]) if rng.random() < .4 else None,
                     "status": "paused" if rng.random() < .08 else "active"}
            offers.append({"merchant": key,
                           "place_external_ids": [d["external_id"] for _, d in chosen],
                           "offer": {k: v for k, v in offer.items()
                                     if v is not None or k in ("budget", "valid_until")}})
    return offers


def budget(rng: Rng) -> dict | None:
    total = int(pick(rng, [200, 500, 1000, 5000, 20000]))
    draw = rng.random()
    if draw < .5:
        return {"max_redemptions": total, "daily_max": max(1, total // pick(rng, [20, 50, 100]))}
    return {"max_redemptions": total} if draw < .8 else None


def demo_routes(roads: dict) -> list[dict]:
    """Routes as chains of (road, from, to) legs; ends are lng/lat points or road crossings."""
    def at(point: tuple[float, float] | str, road: str) -> float:
        line = roads[road][1]
        if isinstance(point, str):  # the name of a crossing road
            point = line.intersection(roads[point][1])
            point = getattr(point, "geoms", [point])[0]
            return line.project(point)
        return line.project(Point(to_xy(*point)))

    plans = [
        ("I-25 Littleton to Thornton", [("I-25", (-104.92, 39.63), (-104.985, 39.90))]),
        ("I-70 Lakewood to Aurora", [("I-70", (-105.14, 39.745), (-104.72, 39.77))]),
        ("Downtown Denver to Aurora via Colfax", [("Colfax Ave", (-104.99, 39.74),
                                                    (-104.82, 39.74))]),
        ("Beltway west to north", [("Beltway 470", (-105.125, 39.74), (-104.95, 39.875))]),
        ("Arvada to downtown Denver", [("I-70", (-105.09, 39.77), "I-25"),
                                       ("I-25", "I-70", (-105.0, 39.74))]),
        ("Thornton to Aurora", [("I-25", (-104.975, 39.90), "I-70"),
                                ("I-70", "I-25", (-104.78, 39.77))]),
        ("Lakewood to Centennial", [("Hampden Ave", (-105.09, 39.6535), "I-25"),
                                    ("I-25", "Hampden Ave", (-104.87, 39.57))]),
        ("Englewood to Littleton on Federal", [("Federal Blvd", (-105.025, 39.66),
                                                (-105.025, 39.60))]),
    ]
    routes = []
    for name, legs in plans:
        coords: list[tuple[float, float]] = []
        for road, start, end in legs:
            a, b = at(start, road), at(end, road)
            # Points every 250 m at most, like a sampled car trace rather than a sparse polyline.
            leg = segmentize(substring(roads[road][1], min(a, b), max(a, b)), 0.25)
            points = list(leg.coords)[:: 1 if a <= b else -1]
            coords += [to_lnglat(*p) for p in points if not coords or to_lnglat(*p) != coords[-1]]
        routes.append({"name": name, "route": {"type": "LineString",
                                               "coordinates": [list(c) for c in coords]}})
    return routes


def generate() -> dict[str, list]:
    """Every output file's content, keyed by file name."""
    rng = np.random.default_rng(SEED)
    roads, town_list = road_network(), towns()
    records = [r for town in town_list for r in town_places(rng, town)]
    records += places_along(rng, roads, town_list)
    for n, (_, _, doc) in enumerate(records, 1):
        doc["external_id"] = f"seed:place/{n}"
    return {
        "merchants.json": [{"key": k, "name": n} for k, n in MERCHANTS],
        "fleets.json": [{"key": k, "name": n} for k, n in FLEETS],
        "places.json": [{"merchant": m, "place": doc} for m, _, doc in records],
        "offers.json": make_offers(rng, records),
        "routes.json": demo_routes(roads),
    }


def write(out_dir: Path = OUT_DIR) -> None:
    """Write every file with one item per line, so diffs of the committed output stay readable
    (ASCII-only, so readers need not agree on an encoding)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, items in generate().items():
        lines = ",\n".join(json.dumps(item, separators=(",", ":")) for item in items)
        (out_dir / name).write_text(f"[\n{lines}\n]\n", encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)
