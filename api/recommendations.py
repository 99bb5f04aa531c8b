"""Recommendations: the offers this driver is most likely to take along the way (fleet key).

The request flows api -> geo (the route ahead, its cells) -> offers (candidates and serving
rules) -> ranking (scores) -> offers (the shortlist's budgets) -> ranking (reasons) -> api.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from flask import g
from flask_smorest import abort

from geo.route import NothingAhead, RouteError
from offers.geo_index import ids_of, offer_keys
from offers.redemptions import driver_key
from offers.serving import Refused, Shortlisted, Trip, best_of_each
from ranking import Situation
from ranking.exploration import Thompson, best_first
from ranking.features import raw_to_features
from ranking.learned import LearnedRanker, raw_of
from ranking.learning import Decision, ServedItem, new_recommendation_id
from ranking.offpolicy import DECISION_CANDIDATES

from .auth import FLEET, SECURITY, require
from .parsing import Blueprint
from .responses import json_response
from .schemas import RecommendationRequestSchema, RecommendationSchema
from .services import services

blp = Blueprint("recommendations", __name__, url_prefix="/v1/recommendations",
                description="Offers ranked for a driver along the way (fleet key)")

MAX_SHORTLIST_ROUNDS = 4  # each a round trip checking a batch of the policy's order


def _batches(limit: int) -> list[int]:
    """How many of the policy's order each round checks: the first the limit and a few spares
    (nearly all pass, their index records having met the same rules a moment before), the
    later ones twice the limit, for when many did not (72 in all for a limit of 10)."""
    return [limit + max(2, limit // 4)] + [2 * limit] * (MAX_SHORTLIST_ROUNDS - 1)


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
    found = services()
    fleet_id, driver_id = g.principal.id, body["driver_id"]
    driver = driver_key(fleet_id, driver_id)
    position = body["position"]
    route = body.get("route")
    if route is not None:
        try:
            route = route.remaining_from(position["lat"], position["lng"],
                                         heading_deg=position.get("heading_deg"))
        except RouteError as error:
            abort(422, errors={"position": [str(error)]})
        except NothingAhead:  # arrived: an empty answer, like a route with nothing along it
            return json_response({"recommendation_id": new_recommendation_id(driver),
                                  "model": (found.learner() or found.baseline).version,
                                  "items": []})
    trip = Trip(lat=position["lat"], lng=position["lng"],
                at=body.get("at") or datetime.now(UTC), route=route,
                corridor_m=body["corridor_m"], radius_m=body["radius_m"],
                heading_deg=position.get("heading_deg"), speed_kmh=position.get("speed_kmh"))
    # The driver and the model serving now are read in the index read's round trip.
    candidates, records, driver_replies = found.serving.candidates(
        trip, body.get("categories"), body.get("max_detour_s"),
        also=found.driver_reads(fleet_id, driver_id), driver=driver)
    profile, ranker = found.driver_and_ranker(driver_replies)
    situation = Situation(driver_id=driver_id, fleet_id=fleet_id, context=body["context"],
                          preferences=profile.preferences, state=profile.state)
    # One feature matrix per request: the ranker scores it, the log keeps the served rows and
    # the decision's top candidates.
    raw = raw_of(candidates, situation)
    features = raw_to_features(raw)
    # Thompson sampling draws from a learned ranker's posterior, starting from its logits.
    thompson = isinstance(found.policy, Thompson) and isinstance(ranker, LearnedRanker)
    if thompson:
        scores, logits = ranker.score_and_logits(candidates, situation, features)
    else:
        scores = ranker.score(candidates, situation, features)
    eligible = np.arange(len(candidates))
    if body["one_per_place"]:
        eligible = best_of_each(candidates.place_key, scores)
    # One item per offer too, at its best place that passes the final check: feedback names
    # the offer, not the place.
    next_places = _NextPlaces(records, eligible, scores)
    eligible = eligible[best_of_each(offer_keys(records, eligible), scores[eligible])]
    next_offers = _NextOffers(candidates.place_key, records, scores, eligible) \
        if body["one_per_place"] else None
    limit = body["limit"]
    batches = _batches(limit)
    draws = (ranker.draws(logits, features, eligible, situation, found.policy.draws + 1,
                          found.rng) if thompson else None)
    # Equal scores are common (boosted trees are piecewise constant, and the candidates the
    # trees do not rescore share a capped score): among them, what the car reaches first
    # comes first.
    shown, propensity = found.policy.order(scores[eligible], sum(batches), found.rng, draws,
                                           candidates.eta_s[eligible])
    order = eligible[shown]
    rows, chances, served = _fill(found, order, propensity, scores, records, candidates, trip,
                                  situation, limit, batches, next_places, next_offers)
    picked = candidates.take(rows)
    reasons = ranker.reasons(picked, situation, scores[rows])
    items = [_item(shortlisted, picked, i, scores[rows[i]], reasons[i])
             for i, shortlisted in enumerate(served)]
    recommendation_id = new_recommendation_id(driver)
    if items:  # nothing served, nothing to keep for feedback or to log: no round trip
        found.learning.record_served(
            recommendation_id, fleet_id, driver_id, ranker.version, found.policy.name,
            [ServedItem(item["offer_id"], item["place_id"], i, item["score"], float(chances[i]),
                        features[row], {name: values[row] for name, values in raw.items()})
             for i, (item, row) in enumerate(zip(items, rows, strict=True))],
            _decision(records, features, scores, candidates.eta_s, eligible, rows, chances,
                      order), profile.erasures)
    return json_response({"recommendation_id": recommendation_id, "model": ranker.version,
                          "items": items})


def _fill(found, order, propensity, scores, records, candidates, trip, situation, limit,
          batches, next_places, next_offers=None):
    """The first `limit` offers of the policy's order that pass the shortlist check (budgets,
    exact hours), a batch per round trip: their rows, their propensities and what the check
    read. An offer refused at its place alone (closed there at the arrival, say) is tried at
    its next place on the next round trip, placed by that place's own score: before the first
    offer after it in the order that scores less. With one item per place (`next_offers`),
    the place of an offer refused there is tried with its next offer too, placed alike: the
    offer that won the place must not hide the others. Either keeps the propensity of the
    position it fills: the policy chose that position's offer, and what stands in for it
    follows from the check alone."""
    order_scores = scores[order]
    passed: dict[tuple, tuple] = {}  # sort key -> row, the offer's position, what was read
    retry: dict[tuple, tuple[int, int]] = {}  # sort key -> row, the offer's position
    start = 0
    for size in batches:
        # Fresh positions only while fewer than `limit` passed ahead of them.
        ahead = sum(key < _in_order(start) for key in passed)
        fresh = order[start:start + size] if ahead < limit else order[:0]
        entries = [*retry.items(), *((_in_order(position), (row, position)) for position, row
                                     in enumerate(fresh.tolist(), start))]
        start += len(fresh)
        if not entries:
            break
        tried = np.array([row for _, (row, _) in entries], dtype=np.intp)
        checks = found.serving.servable(records[tried], candidates.eta_s[tried], trip,
                                        situation.fleet_id, situation.driver_id)
        retry = {}
        for (key, (row, position)), check in zip(entries, checks, strict=True):
            if isinstance(check, Shortlisted):
                passed[key] = (row, position, check)
                continue
            if check is Refused.PLACE and (other := next_places.after(row)) is not None:
                retry[_after_better(order_scores, position, scores[other], other)] = \
                    (other, position)
            if next_offers is not None and (other := next_offers.after(row)) is not None:
                retry[_after_better(order_scores, position, scores[other], other)] = \
                    (other, position)
        first = sorted(passed)[:limit]
        pending = [*retry, *([_in_order(start)] if start < len(order) else [])]
        if len(first) == limit and (not pending or first[-1] < min(pending)):
            break
    first = [passed[key] for key in sorted(passed)[:limit]]
    return (np.array([row for row, _, _ in first], dtype=np.intp),
            [propensity[position] for _, position, _ in first],
            [check for _, _, check in first])


def _in_order(position: int) -> tuple:
    """The sort key of the order's `position`th offer at its best place."""
    return position, 1, 0.0, position


def _after_better(order_scores: np.ndarray, position: int, score: float, row: int) -> tuple:
    """The sort key of `row`, tried in place of the order's `position`th offer at its best
    place (that offer at another place, or another offer at that place), scoring `score`:
    just before the first offer after it in the order that scores less (the end if none
    does); the row last, so that two tried in one's place are two keys."""
    lower = np.flatnonzero(order_scores[position + 1:] < score)
    slot = position + 1 + int(lower[0]) if lower.size else len(order_scores)
    return slot, 0, -score if score == score else math.inf, position, row


class _NextPlaces:
    """Each offer's rows among `rows` in turn, best score first: where to try an offer next
    when its place fails the final check. Worked out only when one does (rarely)."""

    def __init__(self, records: np.ndarray, rows: np.ndarray, scores: np.ndarray):
        self._given, self._next = (records, rows, scores), None

    def after(self, row: int) -> int | None:
        if self._next is None:
            records, rows, scores = self._given
            offers = offer_keys(records, rows)
            # By offer, then best score first: stable, so among equal scores the earliest row
            # first, the one `best_of_each` picks (an unknown score, nan, sorts last).
            ranked = np.lexsort((-scores[rows], offers))
            rows, offers = rows[ranked], offers[ranked]
            same = np.flatnonzero(offers[1:] == offers[:-1])
            self._next = dict(zip(rows[same].tolist(), rows[same + 1].tolist(), strict=True))
        return self._next.get(row)


class _NextOffers:
    """Each place's other offers in turn, best score first, leaving out the offers the
    policy's order holds (at a place of theirs) and those already handed out: with one item
    per place, what to try at a place whose offer failed the final check. Only the refused
    place's rows are looked at, by one comparison over the candidates' place keys."""

    def __init__(self, place_key: np.ndarray, records: np.ndarray, scores: np.ndarray,
                 ordered: np.ndarray):
        self._given, self._ordered = (place_key, records, scores), ordered
        self._taken: set[bytes] = set()

    def after(self, row: int) -> int | None:
        place_key, records, scores = self._given
        if self._ordered.dtype.kind != "S":  # rows, then once their offers
            self._ordered = offer_keys(records, self._ordered)
        here = np.flatnonzero(place_key == place_key[row])
        here = here[np.argsort(-scores[here], kind="stable")]  # an unknown score, nan, last
        for other, offer in zip(here.tolist(), offer_keys(records, here), strict=True):
            if offer not in self._taken and not np.any(self._ordered == offer):
                self._taken.add(offer)
                return other
        return None


def _item(shortlisted, picked, i: int, score: float, reasons: list[str]) -> dict:
    offer, place = shortlisted.offer, shortlisted.place
    along = picked.along_m[i]
    return {
        "offer_id": offer["id"], "place_id": place["id"], "title": offer["title"],
        "category": offer["category"], "brand": place.get("brand"),
        "place_name": place["name"], "lat": place["lat"], "lng": place["lng"],
        "distance_m": float(picked.distance_m[i]),
        "distance_along_route_m": None if np.isnan(along) else float(along),
        "detour_s": float(picked.detour_s[i]), "eta_s": float(picked.eta_s[i]),
        "score": float(score), "reasons": reasons}


def _decision(records, features, scores, eta_s, eligible, rows, chances,
              order) -> Decision | None:
    """The first choice and the logging policy's top candidates, for off-policy evaluation;
    none when the policy's first pick was not servable there (the first item shown then came
    from a later position, whose propensity is not that of being chosen first, or from
    another place of the offer)."""
    if len(rows) == 0 or rows[0] != order[0]:
        return None
    top = eligible[best_first(scores[eligible], DECISION_CANDIDATES, eta_s[eligible])]
    where = np.flatnonzero(top == rows[0])
    return Decision(offer_ids=ids_of(records[top])[0],
                    features=features[top],
                    chosen=int(where[0]) if where.size else -1,
                    propensity=float(chances[0]), eligible=len(eligible))
