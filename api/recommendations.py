"""Recommendations: the offers this driver is most likely to take along the way (fleet key).

The request flows api -> geo (the route ahead, its cells) -> offers (candidates and serving
rules) -> ranking (scores) -> offers (the shortlist's budgets) -> ranking (reasons) -> api.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import numpy as np
from flask import g
from flask_smorest import abort

from geo.route import RouteError
from offers.serving import Trip
from ranking import Situation

from .auth import FLEET, SECURITY, require
from .parsing import Blueprint
from .schemas import RecommendationRequestSchema, RecommendationSchema
from .services import services

blp = Blueprint("recommendations", __name__, url_prefix="/v1/recommendations",
                description="Offers ranked for a driver along the way (fleet key)")

MAX_SHORTLIST_ROUNDS = 4  # each round checks about twice `limit` offers in one round trip


@blp.route("", methods=["POST"])
@require(FLEET)
@blp.arguments(RecommendationRequestSchema)
@blp.response(200, RecommendationSchema)
@blp.doc(security=SECURITY)
def recommend(body: dict):
    """Rank the offers ahead of a car for its driver

    Only places ahead of the car count; each offer must be valid, and its place open, at the
    car's estimated arrival there (in the place's timezone); offers whose budget, daily cap or
    per-driver limit is used up are never served."""
    position = body["position"]
    route = body.get("route")
    if route is not None:
        try:
            route = route.remaining_from(position["lat"], position["lng"])
        except RouteError as error:
            abort(422, errors={"position": [str(error)]})
    trip = Trip(lat=position["lat"], lng=position["lng"],
                at=body.get("at") or datetime.now(UTC), route=route,
                corridor_m=body["corridor_m"], radius_m=body["radius_m"],
                heading_deg=position.get("heading_deg"), speed_kmh=position.get("speed_kmh"))
    situation = Situation(driver_id=body["driver_id"], fleet_id=g.principal.id,
                          context=body["context"])
    found = services().serving
    ranker = services().ranker
    candidates, records = found.candidates(trip, body.get("categories"),
                                           body.get("max_detour_s"))
    scores = ranker.score(candidates, situation)
    order = np.argsort(-scores, kind="stable")
    if body["one_per_place"]:
        _, first = np.unique(candidates.place_id[order], return_index=True)
        order = order[np.sort(first)]
    limit = body["limit"]
    chosen, served = [], []
    for round_ in range(MAX_SHORTLIST_ROUNDS):
        batch = order[round_ * 2 * limit: (round_ + 1) * 2 * limit]
        if batch.size == 0:
            break
        checks = found.servable(records[batch], candidates.eta_s[batch], trip,
                                situation.fleet_id, situation.driver_id)
        for row, check in zip(batch, checks, strict=True):
            if check is not None and len(chosen) < limit:
                chosen.append(row)
                served.append(check)
        if len(chosen) == limit:
            break
    rows = np.array(chosen, dtype=np.intp)
    picked = candidates.take(rows)
    reasons = ranker.reasons(picked, situation)
    items = []
    for i, shortlisted in enumerate(served):
        offer, place = shortlisted.offer, shortlisted.place
        along = picked.along_m[i]
        items.append({
            "offer_id": offer["id"], "place_id": place["id"], "title": offer["title"],
            "category": offer["category"], "brand": place.get("brand"),
            "place_name": place["name"], "lat": place["lat"], "lng": place["lng"],
            "distance_m": float(picked.distance_m[i]),
            "distance_along_route_m": None if np.isnan(along) else float(along),
            "detour_s": float(picked.detour_s[i]), "eta_s": float(picked.eta_s[i]),
            "score": float(scores[rows[i]]), "reasons": reasons[i]})
    return {"recommendation_id": "rec_" + secrets.token_hex(10), "items": items}
