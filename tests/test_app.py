"""The application factory, configuration, probes, the OpenAPI spec and the error shape."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from webargs import core

from api.app import create_app
from api.parsing import load_json

from .conftest import CAFE, redis_snapshot


def test_settings_come_from_the_environment_then_config(monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("OFFERS_ADMIN_TOKEN", "from-env")
    monkeypatch.setenv("OFFERS_MAX_BODY_BYTES", "1234")
    from_env = create_app()
    assert from_env.config["OFFERS_ADMIN_TOKEN"] == "from-env"
    assert from_env.config["MAX_CONTENT_LENGTH"] == 1234
    overridden = create_app({"OFFERS_ADMIN_TOKEN": "from-config"})
    assert overridden.config["OFFERS_ADMIN_TOKEN"] == "from-config"
    assert overridden.config["REDIS_URL"] == redis_url


def test_a_serving_process_runs_blas_on_one_thread(redis_url):
    # Threads per core make small products wait for a busy core (`create_app` limits them).
    # A new process started with two BLAS threads, whatever this machine's cores.
    script = ("import json\nimport numpy\n"
              "from threadpoolctl import threadpool_info\n"
              "def blas(): return [p['num_threads'] for p in threadpool_info()"
              " if p['user_api'] == 'blas']\n"
              "before = blas()\n"
              "from api.app import create_app\n"
              f"create_app({{'REDIS_URL': {redis_url!r}}})\n"
              "print(json.dumps([before, blas()]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "2"},
                          cwd=Path(__file__).resolve().parents[1], check=True)
    before, after = json.loads(done.stdout.splitlines()[-1])
    assert before and all(threads == 2 for threads in before)
    assert after and all(threads == 1 for threads in after)


def test_healthz_and_readyz_answer_when_redis_is_up(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ready"}


def test_readyz_is_503_when_redis_is_unreachable():
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["code"] == 503


def test_store_outage_is_503_in_the_error_shape():
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/0", "OFFERS_ADMIN_TOKEN": "t"})
    response = app.test_client().get("/v1/places", headers={"Authorization": "Bearer t"})
    assert response.status_code == 503
    assert set(response.json) == {"code", "status", "message", "errors"}


def test_openapi_spec_is_valid_and_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json
    validate(spec)
    assert {"/v1/places", "/v1/places/bulk", "/v1/places/{place_id}", "/v1/offers",
            "/v1/offers/{offer_id}", "/v1/redemptions", "/v1/merchants", "/v1/fleets",
            "/healthz", "/readyz"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    # a discount of 0 is refused, so the spec says the minimum is exclusive
    assert spec["components"]["schemas"]["Discount"]["properties"]["value"][
        "exclusiveMinimum"] is True
    # a PATCH keeps what it leaves out: no defaults there (a client filling in an offer's
    # `status: active` would un-pause it)
    schemas = spec["components"]["schemas"]
    assert schemas["Offer"]["properties"]["status"]["default"] == "active"
    assert [(name, field) for name, schema in schemas.items() if name.endswith("Patch")
            for field, value in schema["properties"].items() if "default" in value] == []


@pytest.mark.parametrize("budget, allowed", [
    (None, True), ({}, True), ({"max_redemptions": 5}, True),
    ({"foo": 1}, False), ({"max_redemptions": 0}, False), ({"daily_max": "x"}, False)])
def test_the_spec_allows_the_budgets_the_api_takes_and_no_other(client, merchant, budget,
                                                                 allowed):
    """apispec wrote a nullable nested schema as "any object or the schema": the spec let
    any object through as a budget, so fuzzing never tried a wrong one."""
    spec = client.get("/openapi.json").json
    budget_schema = spec["components"]["schemas"]["OfferPatch"]["properties"]["budget"]
    # Its $ref points into the spec's components: resolved against a root that holds them.
    validator = OAS30Validator({**budget_schema, "components": spec["components"]})
    assert validator.is_valid(budget) is allowed
    place = client.post("/v1/places", json=CAFE, headers=merchant[1]).json["id"]
    offer = client.post("/v1/offers", headers=merchant[1], json={
        "place_ids": [place], "title": "t", "category": "cafe",
        "discount": {"kind": "percent", "value": 5}}).json["id"]
    patched = client.patch(f"/v1/offers/{offer}", json={"budget": budget}, headers=merchant[1])
    assert patched.status_code == (200 if allowed else 422)


def test_the_spec_lists_the_error_statuses_the_api_answers(client, admin, merchant, fleet):
    """Each error below is what the operation answers; its status is among the operation's
    documented responses, in the error shape (only `default` was before)."""
    spec = client.get("/openapi.json").json
    place = client.post("/v1/places", json=CAFE, headers=merchant[1]).json
    client.post("/v1/offers", headers=merchant[1], json={
        "place_ids": [place["id"]], "title": "t", "category": "cafe",
        "discount": {"kind": "percent", "value": 5}})
    unknown_offer = place["id"].replace("p.", "o.")
    answered = [
        ("get", "/v1/places/{place_id}", client.get(
            f"/v1/places/{place['id']}x", headers=merchant[1])),
        ("delete", "/v1/places/{place_id}", client.delete(
            f"/v1/places/{place['id']}", headers=merchant[1])),
        ("patch", "/v1/offers/{offer_id}", client.patch(
            f"/v1/offers/{unknown_offer}", json={}, headers=merchant[1])),
        ("post", "/v1/redemptions", client.post("/v1/redemptions", headers=fleet[1], json={
            "offer_id": unknown_offer, "place_id": place["id"], "driver_id": "d",
            "idempotency_key": "k"})),
        ("post", "/v1/models/rollback", client.post("/v1/models/rollback", headers=admin)),
        ("post", "/v1/models/{version}/activate", client.post("/v1/models/v9/activate",
                                                              headers=admin)),
        ("get", "/v1/places", client.get("/v1/places")),
        ("get", "/v1/places", client.get("/v1/places", headers=fleet[1])),
        ("post", "/v1/places", client.post("/v1/places", data="{}", content_type="text/plain",
                                           headers=merchant[1])),
        ("get", "/v1/drivers/{driver_id}/preferences", client.get(
            f"/v1/drivers/{'d' * 129}/preferences", headers=fleet[1])),
    ]
    statuses = [response.status_code for _, _, response in answered]
    assert statuses == [404, 409, 404, 404, 404, 404, 401, 403, 415, 422]
    for method, path, response in answered:
        documented = spec["paths"][path][method]["responses"][str(response.status_code)]
        assert documented in ({"$ref": "#/components/responses/DEFAULT_ERROR"},) or \
            documented["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}, (method, path)
        assert set(response.json) == {"code", "status", "message", "errors"}


@pytest.mark.parametrize("length, allowed", [(128, True), (129, False)])
def test_the_spec_states_the_driver_id_the_path_takes(client, fleet, length, allowed):
    spec = client.get("/openapi.json").json
    for path in ("/v1/drivers/{driver_id}", "/v1/drivers/{driver_id}/preferences"):
        (parameter,) = spec["paths"][path]["parameters"]
        assert OAS30Validator(parameter["schema"]).is_valid("d" * length) is allowed
    answer = client.get(f"/v1/drivers/{'d' * length}/preferences", headers=fleet[1])
    assert answer.status_code == (200 if allowed else 422)


def test_the_api_documentation_page_and_its_scripts_are_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/static/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css"),
                       ("swagger-ui-standalone-preset.js", "javascript")):
        asset = client.get(f"/docs/static/{name}")
        assert asset.status_code == 200 and kind in asset.mimetype
        assert len(asset.get_data()) > 10_000
    assert client.get("/docs/static/../../app.py").status_code == 404
    assert client.get("/docs/static/no-such-file.js").status_code == 404


def test_admin_creates_merchants_and_fleets_with_keys_shown_once(client, admin, redis_client):
    merchant = client.post("/v1/merchants", json={"name": "Café Co"}, headers=admin).json
    fleet = client.post("/v1/fleets", json={"name": "Fleet Co"}, headers=admin).json
    assert merchant["id"].startswith("m_") and fleet["id"].startswith("f_")
    dump = b"".join(redis_client.dump(key) for key in redis_client.scan_iter())
    assert merchant["api_key"].encode() not in dump
    assert fleet["api_key"].encode() not in dump


def test_two_re_keyings_at_once_leave_one_key_working(redis_client, redis_url, monkeypatch):
    """A second re-keying (`offers seed` twice) lands between the first's read of the old key
    and its write: the first reads again, so it revokes the second's key, not only the old."""
    import redis as redis_py

    from offers.registry import Registry

    _, original = Registry(redis_client).create_merchant("Shop", "m_shop")
    read, meanwhile = redis_py.Redis.hget, []

    def hget(pipe, name, key):
        value = read(pipe, name, key)
        if not meanwhile:
            meanwhile.append(None)  # once: the other's own read goes straight through
            other = Registry(redis_py.Redis.from_url(redis_url))  # another worker
            meanwhile[0] = other.create_merchant("Shop", "m_shop")[1]
        return value

    monkeypatch.setattr(redis_py.Redis, "hget", hget)
    _, last = Registry(redis_client).create_merchant("Shop", "m_shop")
    working = [key for key in (original, meanwhile[0], last)
               if Registry(redis_client).principal_for(key) is not None]
    assert working == [last]


def test_only_the_admin_creates_accounts(client, merchant):
    _, headers = merchant
    response = client.post("/v1/merchants", json={"name": "X"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/v1/merchants", json={"name": "X"}, headers=headers).status_code == 403


def test_malformed_json_is_400(client, merchant):
    _, headers = merchant
    response = client.post("/v1/places", data='{"name": ', content_type="application/json",
                           headers=headers)
    assert response.status_code == 400
    assert set(response.json) == {"code", "status", "message", "errors"}


def test_body_over_the_limit_is_413(redis_url, redis_client):
    app = create_app({"REDIS_URL": redis_url, "OFFERS_ADMIN_TOKEN": "t",
                      "MAX_CONTENT_LENGTH": 1000})
    response = app.test_client().post(
        "/v1/merchants", data=json.dumps({"name": "x" * 2000}),
        content_type="application/json", headers={"Authorization": "Bearer t"})
    assert response.status_code == 413
    assert response.json["code"] == 413


@pytest.mark.parametrize("body, status", [
    (json.dumps({"name": "x" * 2000}).encode(), 413),        # over the limit
    (b'{"name": "x"}' + b" " * 2000, 413),                    # valid JSON, padded past it
    (b'{"name": "x"}' + b" " * 900, 201),                     # within it
])
def test_a_chunked_body_has_the_same_limit(redis_url, redis_client, body, status):
    """Sent without a length, as a server hands on a chunked body (wsgi.input_terminated)."""
    app = create_app({"REDIS_URL": redis_url, "OFFERS_ADMIN_TOKEN": "t",
                      "MAX_CONTENT_LENGTH": 1000})
    response = app.test_client().post(
        "/v1/merchants", input_stream=io.BytesIO(body),
        headers={"Authorization": "Bearer t", "Content-Type": "application/json",
                 "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert response.status_code == status, response.json
    assert response.json.get("code", 201) == status


class _Breaks(io.BytesIO):
    """A chunked body whose reading fails half way (a client gone, a chunk malformed)."""

    def read(self, size=-1):
        raise OSError("connection reset by peer")


def test_a_chunked_body_that_cannot_be_read_is_400(client, merchant, redis_client):
    before = redis_client.dbsize()
    response = client.post(
        "/v1/places", input_stream=_Breaks(),
        headers={**merchant[1], "Content-Type": "application/json",
                 "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert response.status_code == 400
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert redis_client.dbsize() == before


def test_unknown_route_is_404_and_wrong_method_405_in_the_error_shape(client):
    assert client.get("/v1/nothing").json["code"] == 404
    for path in ("/v1//places", "/v1/offers//o.m_x.1", "/v1/offers/%2F.."):
        response = client.get(path)  # not a redirect to the path with `//` merged
        assert (response.status_code, response.json["code"]) == (404, 404), path
    response = client.put("/v1/places")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
    assert set(response.json) == {"code", "status", "message", "errors"}


# A million zeros where a short list was allowed: refused on its length alone, in one message
# (every item was read and named first: an error body of 45 MB, and at four million a worker
# killed by its timeout).
LONG_LISTS = {
    "bulk places": ("post", "/v1/places/bulk", "merchant", {"items": [0] * 1_000_000},
                    "items"),
    "an offer's places": ("post", "/v1/offers", "merchant", {"place_ids": [0] * 1_000_000},
                          "place_ids"),
    "search categories": ("post", "/v1/places/search-along-route", "fleet",
                          {"categories": [0] * 1_000_000}, "categories"),
    "search brands": ("post", "/v1/places/search-along-route", "fleet",
                      {"brands": [0] * 1_000_000}, "brands"),
    "recommendation categories": ("post", "/v1/recommendations", "fleet",
                                  {"categories": [0] * 1_000_000}, "categories"),
    "a place's cuisines": ("post", "/v1/places", "merchant",
                           {"attributes": {"cuisine": [0] * 1_000_000}}, "attributes"),
}


@pytest.mark.parametrize("method, path, role, body, field", LONG_LISTS.values(),
                         ids=LONG_LISTS.keys())
def test_a_list_past_its_limit_is_refused_on_its_length(client, merchant, fleet, method, path,
                                                       role, body, field):
    headers = {"merchant": merchant, "fleet": fleet}[role][1]
    response = getattr(client, method)(path, json=body, headers=headers)
    assert response.status_code == 422
    errors = response.json["errors"][field]
    if field == "attributes":
        errors = errors["cuisine"]
    assert len(errors) == 1 and errors[0].startswith(("Length must be", "Longer than")), errors
    assert len(response.data) < 2_000


@pytest.mark.parametrize("where", ["body", "nested"])
def test_a_flood_of_unknown_fields_is_refused_at_once(client, merchant, where):
    """Each unknown field was named in its own error: 1.5 million in a 15 MB body took a
    worker 20 s and answered 40 MB. A few are still named one by one."""
    flood = {f"x{i}": 0 for i in range(200_000)}
    body = {**CAFE, **flood} if where == "body" else {**CAFE, "attributes": flood}
    response = client.post("/v1/places", json=body, headers=merchant[1])
    assert response.status_code == 422
    errors = response.json["errors"] if where == "body" else response.json["errors"][
        "attributes"]
    (message,) = errors.pop("_schema")
    assert errors == {} and message.startswith("200000 unknown fields, such as 'x")
    assert len(response.data) < 1_000
    few = client.post("/v1/places", json={**CAFE, "colour": 1, "size": 2}, headers=merchant[1])
    assert few.json["errors"] == {"colour": ["Unknown field."], "size": ["Unknown field."]}


def test_unknown_fields_are_counted_over_a_bulks_items(client, merchant):
    """A hundred unknown fields in each of a thousand places passed each place's own check."""
    items = [{**CAFE, **{f"x{i}": 0 for i in range(100)}} for _ in range(1000)]
    response = client.post("/v1/places/bulk", json={"items": items}, headers=merchant[1])
    assert response.status_code == 422
    assert response.json["errors"] == {"items": ["100000 unknown fields in the items"]}
    few = client.post("/v1/places/bulk", json={"items": [{**CAFE, "colour": 1}]},
                      headers=merchant[1])
    assert few.json["errors"] == {"items": {"0": {"colour": ["Unknown field."]}}}


# Text includes lone surrogates (legal JSON escapes, not UTF-8); integers reach beyond 64 bits.
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12)
place_like = st.fixed_dictionaries({}, optional={k: json_values for k in CAFE})
OFFER = {"place_ids": [], "title": "t", "category": "cafe", "discount": {}, "budget": {},
         "valid_from": "", "valid_until": "", "schedule": "", "per_driver_limit": 1}
offer_like = st.fixed_dictionaries({}, optional={k: json_values for k in OFFER})
SEARCH = {"route": {"type": "LineString", "coordinates": [[0, 0], [0.1, 0]]},
          "polyline": "", "corridor_m": 1, "position": {}, "categories": [], "brands": []}
search_like = st.fixed_dictionaries({}, optional={k: json_values for k in SEARCH}) | \
    st.fixed_dictionaries({"route": st.fixed_dictionaries(
        {"type": st.just("LineString"),
         "coordinates": st.lists(st.lists(json_values, max_size=3), max_size=5)})})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, place_like, offer_like, search_like))
@pytest.mark.parametrize("method, path", [
    ("post", "/v1/places"), ("post", "/v1/places/bulk"), ("post", "/v1/offers"),
    ("patch", "{place}"), ("patch", "{offer}"), ("post", "/v1/redemptions"),
    ("post", "/v1/merchants"), ("post", "/v1/places/search-along-route"),
])
def test_no_json_body_makes_a_500(client, admin, fleet, existing, method, path, body):
    headers = fleet[1] if path == "/v1/redemptions" else admin
    path = path.format(**existing)
    response = getattr(client, method)(path, json=body, headers=headers)
    assert response.status_code < 500, response.json


@pytest.fixture
def existing(client, admin):
    """A place and an offer in the shared catalogue, so PATCH fuzzing reaches the merge."""
    place = client.post("/v1/places", json=CAFE, headers=admin).json
    offer = client.post("/v1/offers", headers=admin, json={
        "place_ids": [place["id"]], "title": "t", "category": "cafe",
        "discount": {"kind": "percent", "value": 5}}).json
    return {"place": f"/v1/places/{place['id']}", "offer": f"/v1/offers/{offer['id']}"}


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_no_raw_body_makes_a_500(client, admin, raw):
    response = client.post("/v1/places", data=raw, content_type="application/json",
                           headers=admin)
    assert response.status_code in (400, 422)


@settings(max_examples=500, deadline=None)
@given(value=json_values, spaced=st.booleans())
def test_bodies_read_as_pythons_parser_reads_them(value, spaced):
    """orjson reads most bodies; what it would read otherwise than Python's parser (integers
    past 64 bits, NaN, lone surrogates) is left to Python's."""
    body = json.dumps(value, indent=1 if spaced else None).encode()
    # repr: NaN is not equal to itself, and 1 == 1.0 == True would hide a changed type
    assert repr(load_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b"[1, 2", b'{"a": }', b"\xff\xfe", b"", b"[" * 5000,
                                  b"1" * 5000, b"[NaN]", b'"\\ud800"'])
def test_bodies_orjson_refuses_go_to_pythons_parser(body):
    try:
        expected = repr(core.parse_json(body))
    except (ValueError, RecursionError) as error:  # what the body parser turns into a 400
        with pytest.raises(type(error)):
            load_json(body)
    else:
        assert repr(load_json(body)) == expected


@pytest.mark.parametrize("digits", [19, 25, 300])
def test_integers_past_64_bits_are_read_as_integers(client, admin, digits):
    # Read as the integers they are, so a whole-number field's range is what refuses them
    # (a parser that made them floats, as orjson does, would answer "not a valid integer").
    body = ('{"name": "X", "category": "restaurant", "lat": 39.7, "lng": -105.0, '
            '"attributes": {"price_level": ' + "9" * digits + "}}")
    response = client.post("/v1/places", data=body, content_type="application/json",
                           headers=admin)
    assert response.status_code == 422
    assert "less than or equal to 4" in response.json["errors"]["attributes"]["price_level"][0]


@pytest.mark.parametrize("body", ['{"lat": ' + "1" * 5000 + "}", "[" * 100_000],
                         ids=["5000-digit integer", "nesting 100,000 deep"])
def test_json_python_cannot_read_is_400(client, admin, body):
    response = client.post("/v1/places", data=body, content_type="application/json",
                           headers=admin)
    assert response.status_code == 400
    assert set(response.json) == {"code", "status", "message", "errors"}


@pytest.mark.parametrize("method, path", [("post", "/v1/places"), ("patch", "{place}")])
def test_a_body_that_is_not_json_is_415(client, admin, existing, method, path):
    response = getattr(client, method)(path.format(**existing), data=json.dumps(CAFE),
                                       content_type="text/plain", headers=admin)
    assert response.status_code == 415
    assert response.json["code"] == 415


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "labelled gzip only"])
def test_a_compressed_body_is_415(client, admin, redis_client, compressed):
    """Nothing decodes a Content-Encoding: a gzip body was a JSON syntax error (400), and a
    plain one labelled gzip was read as JSON."""
    import gzip

    body = json.dumps(CAFE).encode()
    before = redis_snapshot(redis_client)
    response = client.post("/v1/places", data=gzip.compress(body) if compressed else body,
                           headers={**admin, "Content-Encoding": "gzip"},
                           content_type="application/json")
    assert (response.status_code, response.json["code"]) == (415, 415)
    assert response.headers["Accept-Encoding"] == "identity"
    assert redis_snapshot(redis_client) == before
    sent = client.post("/v1/places", data=body, content_type="application/json",
                       headers={**admin, "Content-Encoding": "identity"})
    assert sent.status_code == 201


@pytest.mark.parametrize("path", ["{place}", "{offer}"])
@pytest.mark.parametrize("body", [{}, {"data": b"", "content_type": "application/json"}],
                         ids=["no body", "an empty JSON body"])
def test_a_patch_without_a_body_changes_nothing_as_an_empty_object_does(client, admin, existing,
                                                                       path, body):
    """The PATCH views read the body the arguments' parser read, not Flask's `get_json`,
    which answered these a 415 and a 400 of its own."""
    path = path.format(**existing)

    def unchanged(document: dict) -> dict:
        return {k: v for k, v in document.items() if k != "updated_at"}  # a write's time

    before = unchanged(client.get(path, headers=admin).json)
    response = client.patch(path, headers=admin, **body)
    assert response.status_code == 200 and unchanged(response.json) == before
    assert unchanged(client.patch(path, headers=admin, json={}).json) == before
