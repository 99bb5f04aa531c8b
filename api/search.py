"""Place searches around a point and along a route (any valid key)."""

from __future__ import annotations

from flask_smorest import abort

from geo.route import NothingAhead, RouteError

from .auth import ADMIN, FLEET, MERCHANT, SECURITY, require
from .parsing import Blueprint
from .responses import json_response
from .schemas import AlongRoutePageSchema, AlongRouteSchema, NearbyArgsSchema, NearbyPageSchema
from .services import services

blp = Blueprint("search", __name__, url_prefix="/v1/places",
                description="Place search around a point and along a route (any key)")


@blp.route("/nearby", methods=["GET"])
@require(ADMIN, MERCHANT, FLEET)
@blp.arguments(NearbyArgsSchema, location="query")
@blp.response(200, NearbyPageSchema)
@blp.doc(security=SECURITY)
def nearby(args: dict):
    """Places within a radius, nearest first"""
    return json_response({"items": services().search.nearby(
        args["lat"], args["lng"], args["radius_m"], args["limit"], args.get("category"))})


@blp.route("/search-along-route", methods=["POST"])
@require(ADMIN, MERCHANT, FLEET)
@blp.arguments(AlongRouteSchema)
@blp.response(200, AlongRoutePageSchema)
@blp.doc(security=SECURITY)
def along_route(body: dict):
    """Places within a corridor of a route, in order along it

    With `position`, only the route ahead of the car counts and distances along are measured
    from the car. The corridor is exact: a place is in the answer if and only if its geodesic
    distance to the (remaining) route is at most `corridor_m`."""
    route = body["route"]
    if "position" in body:
        try:
            position = body["position"]
            route = route.remaining_from(position["lat"], position["lng"],
                                         heading_deg=position.get("heading_deg"))
        except RouteError as error:
            abort(422, errors={"position": [str(error)]})
        except NothingAhead:
            return json_response({"items": []})
    return json_response({"items": services().search.along_route(
        route, body["corridor_m"], body["limit"], body.get("categories"), body.get("brands"))})
