"""Every operation of the OpenAPI spec, fuzzed by schemathesis from the spec itself, with the
kind of key it serves: no input may make a 500, and every answer must match the spec (status
codes, content type, body schema). The README says how to run a longer hunt."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api.app import create_app

from .conftest import CAFE

# The spec is the application's own (made without touching Redis).
schema = schemathesis.openapi.from_dict(
    create_app({"REDIS_URL": "redis://127.0.0.1:1/0"}).test_client().get("/openapi.json").json)
schema.config.update(base_url="http://localhost")  # where the test client sends requests
# Not checked: that every request the spec allows is accepted (a route needs two distinct
# points, a place's hours must parse: rules a JSON schema cannot state, documented in words);
# that every request it does not allow is refused (an empty `category=` reads as none, unknown
# query parameters are ignored, a PUT of preferences without a body sets none); and that Allow
# names exactly the spec's methods (Flask adds HEAD and OPTIONS).
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.missing_required_header]

# The key each path is called with (the first prefix that matches); the searches take any key.
KEY_FOR_PATH = (("/v1/places/nearby", "fleet"), ("/v1/places/search-along-route", "fleet"),
                ("/v1/places", "merchant"), ("/v1/offers", "merchant"),
                ("/v1/redemptions", "fleet"), ("/v1/recommendations", "fleet"),
                ("/v1/feedback", "fleet"), ("/v1/drivers", "fleet"))


@pytest.fixture
def keys(client, admin, merchant, fleet):
    """Headers per role, and a place with an offer so the catalogue is not empty."""
    place = client.post("/v1/places", json=CAFE, headers=merchant[1]).json
    client.post("/v1/offers", headers=merchant[1], json={
        "place_ids": [place["id"]], "title": "t", "category": "cafe",
        "discount": {"kind": "percent", "value": 5}})
    return {"admin": admin, "merchant": merchant[1], "fleet": fleet[1]}


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,  # the same cases every run
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_no_request_the_spec_allows_makes_a_500_or_breaks_the_spec(case, app, keys):
    role = next((role for prefix, role in KEY_FOR_PATH if case.path.startswith(prefix)),
                "admin")
    case.call_and_validate(app=app, headers=keys[role], checks=CHECKS)
