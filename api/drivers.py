"""Drivers' declared preferences, and forgetting a driver (fleet key).

Drivers are the fleet's pseudonymous ids, stored only as a one-way fleet-scoped hash; the
engine keeps what a driver declared and what it learned from their feedback, nothing else.
"""

from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import abort

from .auth import FLEET, SECURITY, require
from .parsing import Blueprint
from .schemas import MAX_DRIVER_ID, PreferencesSchema, checked_driver_id
from .services import services

blp = Blueprint("drivers", __name__, url_prefix="/v1/drivers",
                description="Drivers' declared preferences (fleet key)")

# The path's id as the body's `driver_id` fields state it (`schemas._driver_id`); checked by
# `_checked`, since Flask's converter only keeps '/' out.
_DRIVER_ID_PARAMETER = {"in": "path", "name": "driver_id", "required": True, "schema": {
    "type": "string", "minLength": 1, "maxLength": MAX_DRIVER_ID, "pattern": "^[^/]+$"}}


def _checked(driver_id: str) -> str:
    try:
        return checked_driver_id(driver_id)
    except ma.ValidationError as error:
        abort(422, errors={"driver_id": error.messages})


@blp.route("/<driver_id>/preferences", methods=["PUT"], parameters=[_DRIVER_ID_PARAMETER])
@require(FLEET)
@blp.arguments(PreferencesSchema)
@blp.response(200, PreferencesSchema)
@blp.doc(security=SECURITY)
def put_preferences(body: dict, driver_id: str):
    """Set what a driver declares about their habits

    Replaces any earlier declaration; omitted kinds of place count as unknown. The very next
    recommendation for this driver uses them."""
    services().learning.set_preferences(g.principal.id, _checked(driver_id), body)
    return body


@blp.route("/<driver_id>/preferences", methods=["GET"], parameters=[_DRIVER_ID_PARAMETER])
@require(FLEET)
@blp.response(200, PreferencesSchema)
@blp.doc(security=SECURITY)
def get_preferences(driver_id: str):
    """What a driver declared (empty when nothing)"""
    return services().learning.profile(g.principal.id, _checked(driver_id)).preferences or {}


@blp.route("/<driver_id>", methods=["DELETE"], parameters=[_DRIVER_ID_PARAMETER])
@require(FLEET)
@blp.response(204)
@blp.doc(security=SECURITY)
def forget(driver_id: str):
    """Forget a driver: their declared preferences and everything learned from their feedback"""
    services().learning.forget(g.principal.id, _checked(driver_id))
