"""Redemptions: a driver used an offer (fleet key). Budgets are enforced atomically in Redis."""

from __future__ import annotations

from flask import g
from flask_smorest.error_handler import ErrorSchema

from .auth import FLEET, SECURITY, require
from .parsing import Blueprint
from .schemas import RedemptionSchema
from .services import services

blp = Blueprint("redemptions", __name__, url_prefix="/v1/redemptions",
                description="Counting redemptions against budgets (fleet key)")


@blp.route("", methods=["POST"])
@require(FLEET)
@blp.arguments(RedemptionSchema)
@blp.response(201, RedemptionSchema)
@blp.alt_response(409, schema=ErrorSchema,
                  description="Budget, daily cap or per-driver limit used up; the offer is "
                              "paused, expired, not yet valid or outside its weekly schedule; "
                              "or its schedule changed meanwhile (retry)")
@blp.doc(security=SECURITY)
def redeem(body: dict):
    """Count one redemption of an offer at one of its places

    Retrying with the same `idempotency_key` counts once and answers with the same redemption
    (`replayed: true`)."""
    redemption = services().redemptions.redeem(
        fleet_id=g.principal.id, offer_id=body["offer_id"], driver_id=body["driver_id"],
        place_id=body["place_id"], idempotency_key=body["idempotency_key"])
    return redemption
