"""Ranking model versions: list them, activate one or roll back (admin key).

Versions are published with `offers ranking publish MODEL_DIR`; activating one switches every
serving worker on its next request.
"""

from __future__ import annotations

from .auth import ADMIN, SECURITY, require
from .parsing import Blueprint
from .schemas import ModelListSchema, ModelSchema
from .services import services

blp = Blueprint("models", __name__, url_prefix="/v1/models",
                description="Ranking model versions (admin key)")


@blp.route("", methods=["GET"])
@require(ADMIN)
@blp.response(200, ModelListSchema)
@blp.doc(security=SECURITY)
def list_models():
    """Published model versions, oldest first, and which one is active"""
    return {"items": services().models.versions()}


@blp.route("/<version>/activate", methods=["POST"])
@require(ADMIN)
@blp.response(200, ModelSchema)
@blp.doc(security=SECURITY)
def activate(version: str):
    """Serve this version from the next request on"""
    return services().models.activate(version)


@blp.route("/rollback", methods=["POST"])
@require(ADMIN)
@blp.response(200, ModelSchema)
@blp.doc(security=SECURITY)
def rollback():
    """Serve the version that was active before the current one"""
    return services().models.rollback()
