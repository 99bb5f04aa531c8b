"""Merchants and fleets, created by the admin. Each gets an API key, returned once."""

from __future__ import annotations

from .auth import ADMIN, SECURITY, require
from .parsing import Blueprint
from .schemas import AccountCreatedSchema, NewAccountSchema
from .services import services

blp = Blueprint("accounts", __name__, url_prefix="/v1",
                description="Merchants and fleets (admin key)")


@blp.route("/merchants", methods=["POST"])
@require(ADMIN)
@blp.arguments(NewAccountSchema)
@blp.response(201, AccountCreatedSchema)
@blp.doc(security=SECURITY)
def create_merchant(body: dict):
    """Create a merchant and its API key"""
    record, api_key = services().registry.create_merchant(body["name"])
    return {**record, "api_key": api_key}


@blp.route("/fleets", methods=["POST"])
@require(ADMIN)
@blp.arguments(NewAccountSchema)
@blp.response(201, AccountCreatedSchema)
@blp.doc(security=SECURITY)
def create_fleet(body: dict):
    """Create a fleet (the vehicles' side) and its API key"""
    record, api_key = services().registry.create_fleet(body["name"])
    return {**record, "api_key": api_key}
