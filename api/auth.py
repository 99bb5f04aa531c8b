"""Bearer-token authentication and the three roles.

- admin: `OFFERS_ADMIN_TOKEN`; creates merchants and fleets, curates the shared catalogue.
- merchant: manages its own places and offers; another merchant's objects are simply not found.
- fleet: what vehicles use (redemptions, recommendations, feedback); cannot touch the catalogue.

A missing or unknown key is 401; a known key of the wrong role is 403.
"""

from __future__ import annotations

import functools
import hmac

from flask import abort, current_app, g, request
from werkzeug.datastructures import WWWAuthenticate

from offers import keys
from offers.registry import Principal

from .services import services

ADMIN, MERCHANT, FLEET = "admin", "merchant", "fleet"
SECURITY = [{"bearerAuth": []}]


def _principal() -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    admin_token = current_app.config.get("OFFERS_ADMIN_TOKEN")
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(role=ADMIN, id="admin")
    return services().registry.principal_for(token)


def require(*roles: str):
    """Let the view run only for callers with one of `roles`; the caller is `g.principal`."""

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            principal = _principal()
            if principal is None:  # RFC 9110: a 401 names the scheme it wants
                abort(401, description="Missing or unknown API key. Send "
                                       "'Authorization: Bearer <key>'.",
                      www_authenticate=WWWAuthenticate("bearer"))
            if principal.role not in roles:
                abort(403, description=f"This endpoint is not for {principal.role} keys.")
            g.principal = principal
            return view(*args, **kwargs)

        return guarded

    return decorate


def catalogue_owner(object_id: str | None = None) -> str:
    """Whose catalogue a request works on: a merchant's own; the admin's is the shared one,
    except on a single object, which the admin reaches wherever it lives."""
    principal: Principal = g.principal
    if principal.role == MERCHANT:
        return principal.id
    if object_id is not None:
        return keys.owner_of(object_id) or keys.SHARED_MERCHANT
    return keys.SHARED_MERCHANT
