"""The one JSON error shape, `{"code", "status", "message", "errors"}`, for every error.

`code` is the HTTP status, `status` its name, `message` a sentence for people and `errors` the
problems by field (empty when none). Domain errors from `offers/` carry their status; anything
unexpected becomes a 500 in the same shape, logged with its traceback, never an HTML page.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import marshmallow as ma
import redis
from apispec import BasePlugin
from flask import Flask
from werkzeug.exceptions import HTTPException

from offers.errors import OffersError

log = logging.getLogger(__name__)

# Webargs reports errors by request location ({"json": {"lat": [...]}}); clients want them by
# field, and a request body and its query string never share field names here.
_LOCATIONS = ("json", "query", "querystring", "path", "headers", "view_args")


# Werkzeug's default descriptions speak of browsers; these say what the client must fix.
_MESSAGES = {
    400: "The request body is not valid JSON.",
    422: "The request has invalid fields; see errors.",
}


# What each kind of operation can answer besides its success, beyond flask-smorest's own 422
# for arguments: listed in the spec so that clients and generators know the statuses, each in
# the one error shape (the `default` response alone left them guessing).
_NOT_FOUND_WITHOUT_AN_ID = {"/v1/redemptions", "/v1/feedback", "/v1/models/rollback"}
_WRITES_THAT_MAY_CONFLICT = ("/v1/places", "/v1/offers", "/v1/redemptions")
_SEARCHES = {"/v1/places/nearby", "/v1/places/search-along-route"}
_NO_STORE = {"/healthz"}  # answers without Redis


class DocumentedErrors(BasePlugin):
    """apispec plugin: each operation's error statuses, answered with the error shape."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for method, operation in (operations or {}).items():
            codes = set() if path in _NO_STORE else {503}  # Redis unreachable
            if operation.get("security"):
                codes |= {401, 403}
            # Drivers are not looked up: one the engine knows nothing of has no preferences.
            if ("{" in path and not path.startswith("/v1/drivers/")
                    or path in _NOT_FOUND_WITHOUT_AN_ID):
                codes.add(404)
            if "requestBody" in operation:
                codes |= {400, 413, 415, 422}
            if "{" in path:
                codes.add(422)  # a path's id of a length or form it cannot have
            if (method in ("post", "patch", "delete") and path not in _SEARCHES
                    and path.startswith(_WRITES_THAT_MAY_CONFLICT)):
                codes.add(409)  # the stored state, or another write of the catalogue
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                if code not in responses and str(code) not in responses:  # keep a view's own
                    responses[str(code)] = "DEFAULT_ERROR"


def error_body(code: int, message: str | None = None, errors: dict | None = None) -> dict:
    status = HTTPStatus(code)
    return {"code": code, "status": status.phrase, "message": message or status.description,
            "errors": errors or {}}


def _by_field(errors: dict) -> dict:
    flat: dict = {}
    for location, value in errors.items():
        if location in _LOCATIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[location] = value
    return flat


def _http_error(error: HTTPException):
    data = getattr(error, "data", None) or {}
    errors = _by_field(data.get("errors") or data.get("messages") or {})
    message = data.get("message") or _MESSAGES.get(error.code or 500, error.description)
    # The exception's own headers where they matter (a 405's Allow, RFC 9110), then ours.
    headers = {name: value for name, value in error.get_headers() if name != "Content-Type"}
    headers.update(data.get("headers") or {})
    return error_body(error.code or 500, message, errors), error.code, headers


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)

    @app.errorhandler(OffersError)
    def domain_error(error: OffersError):
        return error_body(error.status, error.message, error.errors), error.status

    @app.errorhandler(ma.ValidationError)
    def invalid(error: ma.ValidationError):
        errors = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        return error_body(422, "The request has invalid fields; see errors.", errors), 422

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def store_unavailable(error: redis.RedisError):
        log.error("redis error: %s", error)
        return error_body(503, "The store is unavailable; retry shortly."), 503

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        return error_body(500), 500
