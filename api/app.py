"""The application factory: `create_app(config=None)`.

Settings come from defaults, then environment variables, then `config` (tests). Production:
`gunicorn 'api.app:create_app()'`.
"""

from __future__ import annotations

import logging
import math
import os
import threading

import marshmallow as ma
import redis
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask, send_from_directory
from flask_smorest import Api
from swagger_ui_bundle import swagger_ui_path

from geo import route
from offers import serving
from offers.catalogue import Catalogue
from ranking import exploration, features, learned
from ranking.exploration import policy_from_spec
from ranking.model import limit_threads

from . import (
    accounts,
    drivers,
    feedback,
    health,
    models,
    offers,
    places,
    recommendations,
    redemptions,
    search,
)
from .errors import DocumentedErrors, register_error_handlers
from .parsing import ChunkedBodies, refuse_unreadable_body
from .services import Services

log = logging.getLogger(__name__)

DEFAULTS = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "OFFERS_ADMIN_TOKEN": None,
    # Bulk uploads of 10,000 places fit well inside this; larger bodies get a 413.
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    "API_TITLE": "Offers engine for connected cars",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    # Swagger UI's scripts and styles from the swagger-ui-bundle package, served below: a
    # car maker's network need not reach a CDN for the API's own documentation.
    "OPENAPI_SWAGGER_UI_URL": "/docs/static/",
    # How recommendations explore (ranking.exploration): greedy, epsilon:<p>, softmax:<t>,
    # thompson:<draws> (the default: it closed the simulation's gap fastest, docs/ranking.md).
    "OFFERS_EXPLORATION": "thompson:32",
    "OFFERS_EXPLORATION_SEED": None,  # an int makes exploration repeatable (tests, simulation)
    # The secret drivers' pseudonyms are keyed with; unset, one is made once and kept in Redis.
    "OFFERS_DRIVER_KEY_SECRET": None,
    # How often (seconds) each process files again the catalogues whose last write died before
    # its index records (`Catalogue.repair_index`); 0: never.
    "OFFERS_INDEX_REPAIR_S": 30.0,
}
ENVIRONMENT = {
    "REDIS_URL": "REDIS_URL",
    "OFFERS_ADMIN_TOKEN": "OFFERS_ADMIN_TOKEN",
    "MAX_CONTENT_LENGTH": "OFFERS_MAX_BODY_BYTES",
    "OFFERS_EXPLORATION": "OFFERS_EXPLORATION",
    "OFFERS_EXPLORATION_SEED": "OFFERS_EXPLORATION_SEED",
    "OFFERS_DRIVER_KEY_SECRET": "OFFERS_DRIVER_KEY_SECRET",
    "OFFERS_INDEX_REPAIR_S": "OFFERS_INDEX_REPAIR_S",
}


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    # `//` in a path is a 404 in the error shape, not werkzeug's redirect to the merged path
    # (an HTML body, and `/v1/offers/%2F..` sent to `/v1/offers/..`).
    app.url_map.merge_slashes = False
    app.config.from_mapping(DEFAULTS)
    for setting, variable in ENVIRONMENT.items():
        if os.environ.get(variable):
            value = os.environ[variable]
            default = DEFAULTS[setting]  # a number's type, or text
            app.config[setting] = type(default)(value) if isinstance(default, int | float) \
                else value
    app.config.update(config or {})

    # BLAS on one thread: its products here are small (thousands of candidates by a few dozen
    # terms), and OpenBLAS's thread per core makes each wait for every thread, so on a busy
    # machine (other workers, Redis) for a core: `benchmarks/blas_threads.py`.
    limit_threads("blas", 1)
    client = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=5,
                                  health_check_interval=30)
    seed = app.config["OFFERS_EXPLORATION_SEED"]
    app.extensions["offers"] = Services.connect(
        client, policy_from_spec(app.config["OFFERS_EXPLORATION"]),
        None if seed is None else int(seed), app.config["OFFERS_DRIVER_KEY_SECRET"])

    every = float(app.config["OFFERS_INDEX_REPAIR_S"])
    if math.isfinite(every) and every > 0:  # 0: never (nor a loop that never waits)
        app.extensions["index_repair"] = _repair_index_every(  # an event that stops it
            app.extensions["offers"].catalogue, every)

    api = Api(app, spec_kwargs={"servers": [{"url": "/"}],
                                "marshmallow_plugin": MarshmallowPlugin(_schema_name),
                                "extra_plugins": [DocumentedErrors()]})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.ma_plugin.converter.add_attribute_function(_null_not_any_object)
    api.ma_plugin.converter.add_attribute_function(_no_default_in_a_patch)
    for module in (health, accounts, search, places, offers, redemptions, recommendations,
                   feedback, drivers, models):
        api.register_blueprint(module.blp)
    app.add_url_rule("/docs/static/<path:filename>", "swagger_ui_static",
                     lambda filename: send_from_directory(swagger_ui_path, filename))
    register_error_handlers(app)
    app.wsgi_app = ChunkedBodies(app.wsgi_app, app.config)
    app.before_request(refuse_unreadable_body)
    route.warm_up()
    serving.warm_up()
    features.warm_up()
    learned.warm_up()
    exploration.warm_up()
    return app


def _repair_index_every(catalogue: Catalogue, every_s: float) -> threading.Event:
    """A daemon thread filing again, every `every_s`, what writes that died left owed in the
    geo index: not left for the merchant's next write, which may never come. Setting the
    event returned stops it."""
    stop = threading.Event()

    def repair() -> None:
        while not stop.wait(every_s):
            try:
                for merchant_id in catalogue.repair_index():
                    log.warning("filed again the geo index of %s, whose last write died "
                                "before it", merchant_id)
            except redis.RedisError as error:  # out of reach: the next round tries again
                log.warning("the geo index repair could not reach Redis: %s", error)
            except Exception:
                log.exception("the geo index repair failed")

    threading.Thread(target=repair, name="index-repair", daemon=True).start()
    return stop


def _null_not_any_object(converter, field, ret: dict, **kwargs) -> dict:
    """apispec documents a nullable nested schema (OpenAPI 3.0) as `anyOf: [{type: object,
    nullable: true}, {$ref}]`, whose first branch lets any object through (a budget of
    `{"foo": 1}`, which the API refuses). That branch is narrowed to what it is for: null (or
    an empty object, which the nested schema allows too)."""
    for branch in ret.get("anyOf", ()):
        if branch == {"type": "object", "nullable": True}:
            branch["maxProperties"] = 0
    return {}


def _no_default_in_a_patch(converter, field, ret: dict, **kwargs) -> dict:
    """A PATCH leaves out what it does not change: a default there (an offer's status
    `active`) would tell clients that filling it in is the same, and un-pause offers."""
    parent = getattr(field, "parent", None)
    if isinstance(parent, ma.Schema) and parent.partial:
        ret.pop("default", None)
    return {}


def _schema_name(schema) -> str:
    """`PlaceSchema` is `Place` in the spec; its PATCH variant (partial) is `PlacePatch`."""
    name = resolve_schema_cls(schema).__name__.removesuffix("Schema")
    return name + "Patch" if isinstance(schema, ma.Schema) and schema.partial else name
