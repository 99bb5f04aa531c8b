"""Liveness and readiness probes."""

from __future__ import annotations

import redis

from .errors import error_body
from .parsing import Blueprint
from .services import services

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


@blp.route("/healthz")
def healthz():
    """The process is up"""
    return {"status": "ok"}


@blp.route("/readyz")
def readyz():
    """Redis answers, so requests can be served"""
    try:
        services().redis.ping()
    except redis.RedisError:
        return error_body(503, "Redis is not reachable."), 503
    return {"status": "ready"}
