"""Liveness and readiness probes."""

from __future__ import annotations

import redis

from .errors import error_body
from .parsing import Blueprint
from .services import services

blp = Blueprint("health", __name__, description="Liveness and readiness probes")

_STATUS = {"description": "OK", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}}}}


@blp.route("/healthz")
@blp.doc(responses={"200": _STATUS})
def healthz():
    """The process is up"""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(responses={"200": _STATUS})
def readyz():
    """Redis answers, so requests can be served"""
    try:
        services().redis.ping()
    except redis.RedisError:
        return error_body(503, "Redis is not reachable."), 503
    return {"status": "ready"}
