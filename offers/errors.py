"""Domain errors. Each carries the HTTP status it becomes at the API boundary (`api/errors.py`),
so the catalogue and budget code never import Flask."""

from __future__ import annotations


class OffersError(Exception):
    status = 500

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(OffersError):
    """The object does not exist, or belongs to another merchant (never say which)."""

    status = 404


class Conflict(OffersError):
    """The request is valid but the current state forbids it (place in use, budget used up)."""

    status = 409


class Invalid(OffersError):
    """A value that passed the schema is still wrong against stored state (unknown place id)."""

    status = 422
