"""Places: a merchant's restaurants, cafés, fuel stations, chargers... (merchant or admin key;
the admin works on the shared catalogue)."""

from __future__ import annotations

from .auth import ADMIN, MERCHANT, SECURITY, catalogue_owner, require
from .parsing import Blueprint, json_body
from .schemas import (
    BulkCreatedSchema,
    BulkPlacesSchema,
    PageArgsSchema,
    PlacePageSchema,
    PlaceSchema,
    apply_patch,
    keep_unchanged,
)
from .services import services

blp = Blueprint("places", __name__, url_prefix="/v1/places",
                description="The catalogue of places (merchant or admin key)")


@blp.route("", methods=["POST"])
@require(MERCHANT, ADMIN)
@blp.arguments(PlaceSchema)
@blp.response(201, PlaceSchema)
@blp.doc(security=SECURITY)
def create_place(place: dict):
    """Add a place"""
    return services().catalogue.add_places(catalogue_owner(), [place])[0]


@blp.route("", methods=["GET"])
@require(MERCHANT, ADMIN)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, PlacePageSchema)
@blp.doc(security=SECURITY)
def list_places(args: dict):
    """List places, a page at a time, in id order"""
    items, cursor = services().catalogue.list_places(
        catalogue_owner(), args.get("cursor"), args["limit"])
    return {"items": items, "next_cursor": cursor}


@blp.route("/bulk", methods=["POST"])
@require(MERCHANT, ADMIN)
@blp.arguments(BulkPlacesSchema)
@blp.response(201, BulkCreatedSchema)
@blp.doc(security=SECURITY)
def create_places(body: dict):
    """Add up to 10,000 places: all or none

    Errors are reported per item, by index (`errors.items.<index>.<field>`). The answer lists
    the new ids in input order."""
    stored = services().catalogue.add_places(catalogue_owner(), body["items"])
    return {"items": [{"id": place["id"]} for place in stored]}


@blp.route("/<place_id>", methods=["GET"])
@require(MERCHANT, ADMIN)
@blp.response(200, PlaceSchema)
@blp.doc(security=SECURITY)
def get_place(place_id: str):
    """Get a place"""
    return services().catalogue.get_place(catalogue_owner(place_id), place_id)


@blp.route("/<place_id>", methods=["PATCH"])
@require(MERCHANT, ADMIN)
@blp.arguments(PlaceSchema(partial=True))
@blp.response(200, PlaceSchema)
@blp.doc(security=SECURITY)
def update_place(_checked: dict, place_id: str):
    """Change some fields of a place

    Each field sent replaces the stored one, and the attributes' fields replace theirs.
    Moving a place without sending a timezone infers the timezone again from the new
    position."""
    patch = json_body()

    def change(stored: dict) -> dict:
        keep_unchanged(stored, patch, "external_id", "it is what re-imports match the place by")
        moved = any(field in patch and patch[field] != stored[field] for field in ("lat", "lng"))
        if moved and "timezone" not in patch:
            stored = {k: v for k, v in stored.items() if k != "timezone"}
        return apply_patch(PlaceSchema(), stored, patch)

    return services().catalogue.update_place(catalogue_owner(place_id), place_id, change)


@blp.route("/<place_id>", methods=["DELETE"])
@require(MERCHANT, ADMIN)
@blp.response(204)
@blp.doc(security=SECURITY)
def delete_place(place_id: str):
    """Delete a place that no offer names any more (409 otherwise, listing those offers)"""
    services().catalogue.delete_place(catalogue_owner(place_id), place_id)
