"""Offers: what a merchant gives drivers at some of its places, with budgets and schedules."""

from __future__ import annotations

from offers.catalogue import offer_state, utc_now

from .auth import ADMIN, MERCHANT, SECURITY, catalogue_owner, require
from .parsing import Blueprint, json_body
from .schemas import (
    IdempotencyHeaderSchema,
    OfferPageSchema,
    OfferSchema,
    PageArgsSchema,
    apply_patch,
    keep_unchanged,
)
from .services import services

blp = Blueprint("offers", __name__, url_prefix="/v1/offers",
                description="Offers at places, with budgets and schedules (merchant key)")


def _presented(offers: list[dict]) -> list[dict]:
    """Offers with their derived state and redemption count (one round trip for all)."""
    now = utc_now()
    counts = services().catalogue.redemption_counts(offers)
    return [{**offer, "state": offer_state(offer, now), "redemptions": count}
            for offer, count in zip(offers, counts, strict=True)]


@blp.route("", methods=["POST"])
@require(MERCHANT, ADMIN)
@blp.arguments(IdempotencyHeaderSchema, location="headers")
@blp.arguments(OfferSchema)
@blp.response(201, OfferSchema, headers={"Idempotent-Replayed": {
    "description": "`true` when an earlier create with this Idempotency-Key made the offer",
    "schema": {"type": "string", "enum": ["true"]}}})
@blp.doc(security=SECURITY)
def create_offer(headers: dict, offer: dict):
    """Publish an offer at some of the merchant's places"""
    doc, replayed = services().catalogue.add_offer(catalogue_owner(), offer,
                                                   headers.get("idempotency_key"))
    return _presented([doc])[0], 201, {"Idempotent-Replayed": "true"} if replayed else {}


@blp.route("", methods=["GET"])
@require(MERCHANT, ADMIN)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, OfferPageSchema)
@blp.doc(security=SECURITY)
def list_offers(args: dict):
    """List offers, a page at a time, in id order"""
    items, cursor = services().catalogue.list_offers(
        catalogue_owner(), args.get("cursor"), args["limit"])
    return {"items": _presented(items), "next_cursor": cursor}


@blp.route("/<offer_id>", methods=["GET"])
@require(MERCHANT, ADMIN)
@blp.response(200, OfferSchema)
@blp.doc(security=SECURITY)
def get_offer(offer_id: str):
    """Get an offer with its state and redemptions so far"""
    return _presented([services().catalogue.get_offer(catalogue_owner(offer_id), offer_id)])[0]


@blp.route("/<offer_id>", methods=["PATCH"])
@require(MERCHANT, ADMIN)
@blp.arguments(OfferSchema(partial=True))
@blp.response(200, OfferSchema)
@blp.doc(security=SECURITY)
def update_offer(_checked: dict, offer_id: str):
    """Change some fields of an offer (pause it, extend it, raise its budget...)

    Each field sent replaces the stored one; in the budget, only the fields sent (null clears
    one). Budgets already spent stay spent."""
    patch = json_body()

    def change(stored: dict) -> dict:
        keep_unchanged(stored, patch, "timezone", "daily caps already counted in it")
        return apply_patch(OfferSchema(), stored, patch)

    offer = services().catalogue.update_offer(catalogue_owner(offer_id), offer_id, change)
    return _presented([offer])[0]


@blp.route("/<offer_id>", methods=["DELETE"])
@require(MERCHANT, ADMIN)
@blp.response(204)
@blp.doc(security=SECURITY)
def delete_offer(offer_id: str):
    """Withdraw an offer; its redemption history is kept in the merchant's log"""
    services().catalogue.delete_offer(catalogue_owner(offer_id), offer_id)
