"""Answers of many items, written straight to JSON.

flask-smorest dumps what a view returns through its response schema, field by field: for a
search answer of a thousand places that took longer than the search. Views whose answers are
already plain values in the schema's shape return `json_response(...)` instead; flask-smorest
passes a Response through untouched, and the schema still documents it (tests check that the
answers have the schema's fields and that dumping them through it changes no value).
"""

from __future__ import annotations

import orjson
from flask import Response, current_app


def json_response(body: dict, status: int = 200) -> Response:
    # numpy scalars are written as the numbers they are, as the schemas' fields would.
    return current_app.response_class(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                                      status=status, mimetype="application/json")
