"""Request and response schemas: the one definition of what a valid place, offer or redemption is.

The API, the file importer and the seed loader all validate through these, so a document that
reaches `offers.catalogue` is already well-formed. Unknown fields are rejected (marshmallow's
RAISE default), NaN and infinities are rejected, and times must carry a UTC offset.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, timedelta

import marshmallow as ma
import opening_hours
import tzfpy
from marshmallow import fields, validate
from webargs.fields import DelimitedList

from geo.route import (
    MAX_ROUTE_LENGTH_M,
    MAX_ROUTE_POINTS,
    RouteError,
    route_from_geojson,
    route_from_polyline,
)
from ranking.features import FREQUENCIES, PASSENGERS, TRIP_PURPOSES, WEATHER
from ranking.learning import EVENTS

PLACE_CATEGORIES = (
    "restaurant", "cafe", "fast_food", "bar", "fuel", "ev_charging",
    "convenience", "supermarket", "car_wash", "parking", "other",
)
FUEL_TYPES = ("diesel", "petrol", "e10", "e85", "lpg", "cng", "lng", "hydrogen", "adblue", "hvo")
EV_CONNECTORS = ("type1", "type2", "ccs1", "ccs2", "chademo", "nacs", "schuko", "other")
DISCOUNT_UNITS = ("litre", "kwh", "item")
MAX_BULK_PLACES = 10_000
MAX_OFFER_PLACES = 1_000
_TIMEZONES = frozenset(zoneinfo.available_timezones())


def _valid_opening_hours(value: str) -> None:
    if not opening_hours.validate(value):
        raise ma.ValidationError("not valid OpenStreetMap opening_hours syntax")


def _valid_timezone(value: str) -> None:
    if value not in _TIMEZONES:
        raise ma.ValidationError("not an IANA timezone name such as Europe/Helsinki")


def timezone_at(lat: float, lng: float) -> str:
    """The IANA timezone at a point (offline lookup); open sea falls back to Etc/GMT±N."""
    return tzfpy.get_tz(lng, lat) or "UTC"


# The times a car may ask about: an arrival days after the latest is still a date Python can
# hold (the year 10000 is not), and every timezone rule applies after the earliest.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9999, 1, 1, tzinfo=UTC)


class Moment(fields.AwareDateTime):
    """An ISO 8601 time with a UTC offset of whole minutes, from 1970 to the end of 9998."""

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.utcoffset() % timedelta(minutes=1):
            raise ma.ValidationError("The UTC offset must be whole minutes.")
        if not EARLIEST_TIME <= moment < LATEST_TIME:
            raise ma.ValidationError("Must be from 1970-01-01 to 9998-12-31 (UTC).")
        return moment


class IsoDateTime(Moment):
    """A `Moment` kept as its normalised ISO 8601 string, so that stored documents are plain
    JSON (an offer's validity: in the range a car's arrival can be compared with)."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        return super()._deserialize(value, attr, data, **kwargs).isoformat()

    def _serialize(self, value, attr, obj, **kwargs):
        return value if isinstance(value, str) else super()._serialize(value, attr, obj, **kwargs)


# Control characters (C0 but tab, line feed and carriage return; DEL; C1) and the bidi
# embeddings, overrides and isolates: legal in JSON escapes, but a NUL ends a string in the C
# a car's head unit may be written in, the others garble a screen, a log line or a CSV
# export, and an override shows a name reversed (right-to-left text needs none of them).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Text(fields.String):
    """A string that can be stored and shown: lone UTF-16 surrogates (legal in JSON escapes,
    not in UTF-8) and control characters (`_CONTROL`) are refused here rather than failing
    later in Redis, a parser or a car."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ma.ValidationError("Not valid Unicode text (lone surrogate).") from None
        if _CONTROL.search(text):
            raise ma.ValidationError("Control characters (such as NUL) are not allowed.")
        return text


class Schema(ma.Schema):
    """Refuses an object of thousands of unknown fields at once: marshmallow names each in
    its own error (1.5 million in a 15 MB body took 20 s, then 40 MB of answer), where a
    handful of typos are named one by one as before."""

    MAX_NAMED_UNKNOWN = 100

    @ma.pre_load
    def refuse_a_flood_of_unknown_fields(self, data, **kwargs):
        if isinstance(data, dict) and len(data) > len(self.fields) + self.MAX_NAMED_UNKNOWN:
            known = self.known()
            unknown = [key for key in data if key not in known]
            raise ma.ValidationError(
                f"{len(unknown)} unknown fields, such as {', '.join(map(repr, unknown[:5]))}",
                "_schema")
        return data

    def known(self) -> set[str]:
        return {field.data_key or name for name, field in self.fields.items()}


class List(fields.List):
    """A list whose length is checked before its items are: marshmallow reads every item,
    then applies `validate.Length`, so a body of four million zeros (8 MB) where 20 names
    were allowed took a worker past its timeout, and a million made an error body of 45 MB
    naming each."""

    def _deserialize(self, value, attr, data, **kwargs) -> list:
        if isinstance(value, list):
            for check in self.validators:
                if isinstance(check, validate.Length):
                    check(value)
        return super()._deserialize(value, attr, data, **kwargs)


def _not_blank(value: str) -> None:
    if not value.strip():  # a name, title or brand of spaces names nothing
        raise ma.ValidationError("Must not be blank.")


def _text(max_length: int, **kwargs) -> Text:
    return Text(validate=[validate.Length(1, max_length), _not_blank], **kwargs)


MAX_DRIVER_ID = 128


def _driver_id(**kwargs) -> Text:
    """A fleet's pseudonymous driver id: it must fit in a URL path segment, where
    `DELETE /v1/drivers/{id}` names it to erase the driver (a '/' never could)."""
    return Text(validate=[validate.Length(1, MAX_DRIVER_ID), validate.Regexp(
        r"^[^/]+$", error="A driver id cannot hold '/': DELETE /v1/drivers/{{id}} names it.")],
        **kwargs)


_PATH_DRIVER_ID = _driver_id()


def checked_driver_id(text: str) -> str:
    """A driver id from a path, held to a body's rules (length, no '/', no control
    characters); ValidationError otherwise."""
    return _PATH_DRIVER_ID.deserialize(text)


# apispec writes a Range's minimum but not that it is exclusive (OpenAPI 3.0's boolean).
_ABOVE_MINIMUM = {"exclusiveMinimum": True}


# Numbers as JSON writes them. marshmallow's own number fields also read strings, through
# float() and int(), which take "１２", "١٢", "1_000" and " 5" for numbers: a body's number must
# be a JSON number (as a route's coordinates must), and a query string's value must be written
# in JSON's number syntax, in ASCII digits.
_NUMBER_SYNTAX = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WHOLE_SYNTAX = re.compile(r"-?(?:0|[1-9][0-9]*)")


class Number(fields.Float):
    """A JSON number; `in_query`: a query string's text in JSON's number syntax."""

    def __init__(self, *, in_query: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.in_query = in_query

    def _validated(self, value) -> float:
        if isinstance(value, str) and not (self.in_query and _NUMBER_SYNTAX.fullmatch(value)):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class Whole(fields.Integer):
    """A whole JSON number: 10.9 is refused, not truncated to 10; `in_query`: a query string's
    text of ASCII digits."""

    def __init__(self, *, in_query: bool = False, **kwargs):
        super().__init__(strict=True, **kwargs)
        self.in_query = in_query

    def _validated(self, value) -> int:
        if isinstance(value, str):
            if not (self.in_query and _WHOLE_SYNTAX.fullmatch(value)):
                raise self.make_error("invalid", input=value)
            try:
                value = int(value)
            except ValueError:  # more digits than Python converts (4,300)
                raise self.make_error("too_large", input=value) from None
        return super()._validated(value)


def _count(low: int, high: int, **kwargs) -> Whole:
    return Whole(validate=validate.Range(low, high), **kwargs)


class EvConnectorSchema(Schema):
    type = Text(required=True, validate=validate.OneOf(EV_CONNECTORS))
    power_kw = Number(validate=validate.Range(0, 1000, min_inclusive=False),
                            metadata=_ABOVE_MINIMUM)
    count = _count(1, 1000)


class PlaceAttributesSchema(Schema):
    cuisine = List(_text(50), validate=validate.Length(max=20))
    fuel_types = List(Text(validate=validate.OneOf(FUEL_TYPES)),
                      validate=validate.Length(max=len(FUEL_TYPES)))
    ev_connectors = List(fields.Nested(EvConnectorSchema), validate=validate.Length(max=50))
    price_level = _count(1, 4, metadata={"description": "1 (cheap) to 4 (expensive)"})


class PlaceSchema(Schema):
    id = Text(dump_only=True)
    merchant_id = Text(dump_only=True)
    name = _text(200, required=True)
    category = Text(required=True, validate=validate.OneOf(PLACE_CATEGORIES))
    brand = _text(100, allow_none=True)
    lat = Number(required=True, validate=validate.Range(-90, 90),
                       metadata={"description": "WGS84 latitude, degrees"})
    lng = Number(required=True, validate=validate.Range(-180, 180),
                       metadata={"description": "WGS84 longitude, degrees"})
    address = _text(500, allow_none=True)
    opening_hours = Text(
        allow_none=True, validate=[validate.Length(1, 1000), _valid_opening_hours],
        metadata={"description": "OpenStreetMap syntax, e.g. 'Mo-Fr 07:00-20:00; Su off'. "
                                 "Absent means always open."})
    timezone = Text(validate=_valid_timezone,
                             metadata={"description": "IANA name; inferred from lat/lng "
                                                      "when absent"})
    attributes = fields.Nested(PlaceAttributesSchema, load_default=dict, allow_none=True,
                               metadata={"description": "A PATCH changes only the fields it "
                                                        "sends; null clears them all"})
    external_id = _text(200, allow_none=True, metadata={
        "description": "Your own or the source's id (e.g. osm:node/123): a place imported "
                       "again with the same external_id is updated, not duplicated"})
    created_at = IsoDateTime(dump_only=True)
    updated_at = IsoDateTime(dump_only=True)

    @ma.post_load
    def infer_timezone(self, data: dict, **kwargs) -> dict:
        if not data.get("timezone") and "lat" in data and "lng" in data:
            data["timezone"] = timezone_at(data["lat"], data["lng"])
        return data


class DiscountSchema(Schema):
    kind = Text(required=True, validate=validate.OneOf(("percent", "amount", "per_unit")))
    value = Number(required=True, validate=validate.Range(0, 1e6, min_inclusive=False),
                         metadata=_ABOVE_MINIMUM)
    currency = Text(validate=validate.Regexp(r"^[A-Z]{3}$"),
                             metadata={"description": "ISO 4217 code; required unless percent"})
    unit = Text(validate=validate.OneOf(DISCOUNT_UNITS),
                         metadata={"description": "what per_unit is per: litre, kwh or item"})

    @ma.validates_schema
    def check_kind(self, data: dict, **kwargs) -> None:
        kind = data.get("kind")
        if kind == "percent" and data.get("value", 0) > 100:
            raise ma.ValidationError("a percent discount is at most 100", "value")
        if kind in ("amount", "per_unit") and not data.get("currency"):
            raise ma.ValidationError(f"required for a {kind} discount", "currency")
        if kind == "per_unit" and not data.get("unit"):
            raise ma.ValidationError("required for a per_unit discount", "unit")


class BudgetSchema(Schema):
    max_redemptions = _count(1, 1_000_000_000, allow_none=True)
    daily_max = _count(1, 1_000_000_000, allow_none=True)

    @ma.validates_schema
    def check_daily(self, data: dict, **kwargs) -> None:
        total, daily = data.get("max_redemptions"), data.get("daily_max")
        if total and daily and daily > total:
            raise ma.ValidationError("cannot exceed max_redemptions", "daily_max")


class OfferSchema(Schema):
    id = Text(dump_only=True)
    merchant_id = Text(dump_only=True)
    place_ids = List(_text(100), required=True,
                     validate=validate.Length(1, MAX_OFFER_PLACES),
                     metadata={"uniqueItems": True})
    title = _text(120, required=True)
    description = Text(validate=validate.Length(max=2000), allow_none=True)
    category = Text(required=True, validate=validate.OneOf(PLACE_CATEGORIES))
    discount = fields.Nested(DiscountSchema, required=True)
    value_estimate = Number(validate=validate.Range(0, 1e6), allow_none=True, metadata={
        "description": "What the offer is worth to a driver, in the discount's currency"})
    valid_from = IsoDateTime(
        load_default=lambda: datetime.now(UTC).isoformat(timespec="seconds"),
        metadata={"description": "Defaults to the time of creation; like valid_until, from "
                                 "1970 to the end of 9998, with a UTC offset of whole minutes"})
    valid_until = IsoDateTime(allow_none=True, metadata={"description": "Absent: no end"})
    schedule = Text(
        allow_none=True, validate=[validate.Length(1, 1000), _valid_opening_hours],
        metadata={"description": "Weekly hours the offer is served, in opening_hours syntax, "
                                 "e.g. 'Mo-Fr 06:00-10:00'"})
    budget = fields.Nested(BudgetSchema, allow_none=True)
    per_driver_limit = _count(1, 1_000_000, allow_none=True)
    status = Text(validate=validate.OneOf(("active", "paused")), load_default="active")
    timezone = Text(validate=_valid_timezone, metadata={
        "description": "Where the daily cap's days start; defaults to the first place's"})
    state = Text(dump_only=True, metadata={
        "description": "active, paused, scheduled (before valid_from) or expired"})
    redemptions = Whole(dump_only=True, metadata={"description": "Counted so far"})
    used_up_until = IsoDateTime(dump_only=True, metadata={
        "description": "Set once its budget or a day's cap was used up: when it can be redeemed "
                       "again, and is served again (9999-12-31T23:59:59+00:00: its budget is "
                       "used up for good); in the past once that time has come"})
    created_at = IsoDateTime(dump_only=True)
    updated_at = IsoDateTime(dump_only=True)

    @ma.validates_schema
    def check_offer(self, data: dict, **kwargs) -> None:
        start, end = data.get("valid_from"), data.get("valid_until")
        if start and end and datetime.fromisoformat(end) <= datetime.fromisoformat(start):
            raise ma.ValidationError("must be after valid_from", "valid_until")
        ids = data.get("place_ids") or []
        if len(set(ids)) != len(ids):
            raise ma.ValidationError("place ids must not repeat", "place_ids")


class PageArgsSchema(Schema):
    limit = _count(1, 1000, in_query=True, load_default=100)
    cursor = Text(validate=validate.Length(1, 200), metadata={
        "description": "`next_cursor` from the previous page"})


class PlacePageSchema(Schema):
    items = fields.List(fields.Nested(PlaceSchema))
    next_cursor = Text(allow_none=True)


class OfferPageSchema(Schema):
    items = fields.List(fields.Nested(OfferSchema))
    next_cursor = Text(allow_none=True)


class BulkPlacesSchema(Schema):
    items = List(fields.Nested(PlaceSchema), required=True,
                 validate=validate.Length(1, MAX_BULK_PLACES))

    @ma.pre_load
    def refuse_a_flood_of_unknown_fields_in_items(self, data, **kwargs):
        """Counted over all the items: a hundred each, in ten thousand, named one by one,
        took seconds and an answer of tens of MB."""
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list):
            known = self.fields["items"].inner.schema.known()
            unknown = sum(len(item.keys() - known) for item in items if isinstance(item, dict))
            if unknown > self.MAX_NAMED_UNKNOWN:
                raise ma.ValidationError(f"{unknown} unknown fields in the items", "items")
        return data

    @ma.validates_schema
    def check_external_ids(self, data: dict, **kwargs) -> None:
        repeated = repeated_external_ids(data.get("items") or [])
        if repeated:
            raise ma.ValidationError({"items": {
                index: {"external_id": [f"repeats item {first}"]}
                for index, first in repeated.items()}})


def repeated_external_ids(places: list[dict]) -> dict[int, int]:
    """Two places with one external_id would be one place, the last silently replacing the
    first: each later one's index -> the first one's (a bulk upload, or a whole file imported
    in batches)."""
    first_seen: dict[str, int] = {}
    repeated = {}
    for index, place in enumerate(places):
        ref = place.get("external_id")
        if ref in first_seen:
            repeated[index] = first_seen[ref]
        elif ref:
            first_seen[ref] = index
    return repeated


class CreatedIdSchema(Schema):
    id = Text()


class BulkCreatedSchema(Schema):
    items = fields.List(fields.Nested(CreatedIdSchema))


class NewAccountSchema(Schema):
    name = _text(200, required=True)


class AccountCreatedSchema(Schema):
    id = Text()
    name = Text()
    api_key = Text(metadata={"description": "Shown once; only its hash is stored"})


class RedemptionSchema(Schema):
    id = Text(dump_only=True)
    offer_id = _text(100, required=True)
    driver_id = _driver_id(required=True, metadata={
        "description": "The fleet's pseudonymous driver id; stored only as a one-way hash"})
    place_id = _text(100, required=True)
    idempotency_key = _text(128, required=True, load_only=True, metadata={
        "description": "Kept 7 days per fleet and merchant (each merchant's counters live "
                       "apart): a retry of the same redemption counts once, and the same key "
                       "for another offer, driver or place of that merchant is refused. Use a "
                       "new key (e.g. a UUID) per redemption"})
    replayed = fields.Boolean(dump_only=True, metadata={
        "description": "True when an earlier request with this idempotency key counted it"})


class IdempotencyHeaderSchema(Schema):
    idempotency_key = Text(data_key="Idempotency-Key", validate=validate.Regexp(
        r"^[\x21-\x7e]{1,128}$", error="1 to 128 visible ASCII characters, e.g. a UUID."),
        metadata={"description": (
            "A new key (e.g. a UUID) per offer: a create sent again with the same key within "
            "24 hours (after a lost answer, a timeout or a 503) makes no second offer and "
            "answers with the first one's, marked `Idempotent-Replayed: true`; the same key "
            "with another offer is a 422")})


READ_ONLY_FIELDS = ("id", "merchant_id", "created_at", "updated_at", "state", "redemptions",
                    "used_up_until")


# Objects whose fields a PATCH changes one by one, as in a JSON merge patch (RFC 7396): raising
# a daily cap must not drop the total budget beside it. A discount is replaced whole: its kind
# decides which other fields it has.
MERGED_OBJECTS = ("budget", "attributes")


def apply_patch(schema: ma.Schema, stored: dict, patch: dict) -> dict:
    """The stored document with the patch applied, validated as a whole so that rules across
    fields (valid_until after valid_from) hold after every change. Each field sent replaces the
    stored one, but in an offer's budget and a place's attributes (`MERGED_OBJECTS`) only the
    fields sent are replaced."""
    base = {k: v for k, v in stored.items() if k not in READ_ONLY_FIELDS}
    merged = {field: {**base[field], **value}
              if field in MERGED_OBJECTS and isinstance(value, dict)
              and isinstance(base.get(field), dict) else value
              for field, value in patch.items()}
    return schema.load({**base, **merged})


def keep_unchanged(stored: dict, patch: dict, field: str, why: str) -> None:
    """Refuse a PATCH that would change a field fixed at creation."""
    if field in patch and patch[field] != stored.get(field):
        raise ma.ValidationError({field: [f"cannot change after creation: {why}"]})


# -- searches ------------------------------------------------------------------------------

MAX_RADIUS_M = 50_000
MAX_CORRIDOR_M = 5_000


def _latitude(**kwargs) -> Number:
    return Number(validate=validate.Range(-90, 90),
                        metadata={"description": "WGS84 latitude, degrees"}, **kwargs)


def _longitude(**kwargs) -> Number:
    return Number(validate=validate.Range(-180, 180),
                        metadata={"description": "WGS84 longitude, degrees"}, **kwargs)


class NearbyArgsSchema(Schema):
    lat = _latitude(required=True, in_query=True)
    lng = _longitude(required=True, in_query=True)
    radius_m = Number(in_query=True, load_default=1000, validate=validate.Range(1, MAX_RADIUS_M))
    category = DelimitedList(Text(validate=validate.OneOf(PLACE_CATEGORIES)), metadata={
        "description": "Comma-separated categories to keep"})
    limit = _count(1, 1000, in_query=True, load_default=100)


class PositionSchema(Schema):
    lat = _latitude(required=True)
    lng = _longitude(required=True)
    heading_deg = Number(validate=validate.Range(0, 360))
    speed_kmh = Number(validate=validate.Range(0, 400))


class LineStringSchema(Schema):
    """GeoJSON LineString; coordinates are [lng, lat] pairs."""

    type = Text(required=True, validate=validate.Equal("LineString"))
    # Checked in bulk by geo.route.route_from_geojson (a Float field per number costs
    # milliseconds on a long route); documented here as what it is.
    coordinates = fields.Raw(required=True, metadata={
        "type": "array", "items": {"type": "array", "items": {"type": "number"},
                                   "minItems": 2, "maxItems": 3}})


class RouteInputSchema(Schema):
    """A route as a GeoJSON LineString or a Google encoded polyline (precision 5): either one.
    Loading turns it into a `geo.route.Route` under `route` (422 if it cannot be served)."""

    route = fields.Nested(LineStringSchema, metadata={"description": (
        f"GeoJSON LineString, [lng, lat] order, at most {MAX_ROUTE_POINTS} points and "
        f"{MAX_ROUTE_LENGTH_M / 1000:.0f} km")})
    polyline = Text(validate=validate.Length(1, 8 * MAX_ROUTE_POINTS),
                    metadata={"description": "Google encoded polyline, precision 5"})

    @ma.post_load
    def parse_route(self, data: dict, **kwargs) -> dict:
        if "route" in data and "polyline" in data:
            raise ma.ValidationError("send route or polyline, not both", "polyline")
        sent = "route" if "route" in data else "polyline"  # the field the error names
        try:
            if "route" in data:
                data["route"] = route_from_geojson(data["route"])
            elif "polyline" in data:
                data["route"] = route_from_polyline(data.pop("polyline"))
        except RouteError as error:
            raise ma.ValidationError(str(error), sent) from None
        return data


class AlongRouteSchema(RouteInputSchema):
    corridor_m = Number(load_default=1000, validate=validate.Range(1, MAX_CORRIDOR_M))
    position = fields.Nested(PositionSchema, metadata={
        "description": "Where the car is: only places ahead of it count (none, at the "
                       "route's end)"})
    categories = List(Text(validate=validate.OneOf(PLACE_CATEGORIES)),
                      validate=validate.Length(max=len(PLACE_CATEGORIES)))
    brands = List(_text(100), validate=validate.Length(max=100))
    limit = _count(1, 1000, load_default=100)

    @ma.validates_schema
    def require_route(self, data: dict, **kwargs) -> None:
        if "route" not in data and "polyline" not in data:
            raise ma.ValidationError("a route or a polyline is required", "route")


class PlaceHitSchema(Schema):
    place_id = Text()
    name = Text()
    category = Text()
    brand = Text(allow_none=True)
    lat = Number()
    lng = Number()
    distance_m = Number(metadata={"description": "Geodesic distance from the point"})


class RouteHitSchema(PlaceHitSchema):
    class Meta:
        exclude = ("distance_m",)

    distance_along_route_m = Number(metadata={
        "description": "Along the route, from its start or from `position`"})
    offset_m = Number(metadata={"description": "Geodesic distance to the route"})
    side = Text(metadata={"description": "left or right of the direction of travel"})
    detour_m = Number(metadata={"description": "Estimated extra distance to visit"})
    detour_s = Number(metadata={"description": "Estimated extra time to visit"})


class NearbyPageSchema(Schema):
    items = fields.List(fields.Nested(PlaceHitSchema))


class AlongRoutePageSchema(Schema):
    items = fields.List(fields.Nested(RouteHitSchema))


# -- recommendations -------------------------------------------------------------------------


class ContextSchema(Schema):
    """What a car knows about the moment. Never demographics."""

    weather = Text(validate=validate.OneOf(WEATHER))
    temperature_c = Number(validate=validate.Range(-60, 60))
    passengers = Text(validate=validate.OneOf(PASSENGERS))
    trip_purpose = Text(validate=validate.OneOf(TRIP_PURPOSES))
    fuel_level_pct = Number(validate=validate.Range(0, 100))
    battery_level_pct = Number(validate=validate.Range(0, 100))


class RecommendationRequestSchema(RouteInputSchema):
    driver_id = _driver_id(required=True, metadata={
        "description": "The fleet's pseudonymous driver id"})
    position = fields.Nested(PositionSchema, required=True)
    corridor_m = Number(load_default=1000, validate=validate.Range(1, MAX_CORRIDOR_M))
    radius_m = Number(load_default=2000, validate=validate.Range(1, MAX_RADIUS_M),
                            metadata={"description": "Search radius when there is no route"})
    max_detour_s = Number(validate=validate.Range(0, 24 * 3600))
    categories = List(Text(validate=validate.OneOf(PLACE_CATEGORIES)),
                      validate=validate.Length(max=len(PLACE_CATEGORIES)))
    limit = _count(1, 50, load_default=10)
    one_per_place = fields.Boolean(load_default=True, metadata={
        "description": "At most one offer per place (the best)"})
    at = Moment(metadata={"description": "Defaults to now; from 1970 to the end of 9998, with a "
                                         "UTC offset of whole minutes"})
    context = fields.Nested(ContextSchema, load_default=dict)


class RecommendedSchema(Schema):
    offer_id = Text()
    place_id = Text()
    title = Text()
    category = Text()
    brand = Text(allow_none=True)
    place_name = Text()
    lat = Number()
    lng = Number()
    distance_m = Number(metadata={"description": "Straight-line distance from the car"})
    distance_along_route_m = Number(allow_none=True)
    detour_s = Number()
    eta_s = Number(metadata={"description": "Estimated time until arrival"})
    score = Number()
    reasons = fields.List(Text())


class RecommendationSchema(Schema):
    recommendation_id = Text(metadata={"description": (
        "What feedback refers to (kept 7 days when it served at least one offer)")})
    model = Text(metadata={"description": "The ranking model version that scored it"})
    items = fields.List(fields.Nested(RecommendedSchema))


# -- the learning loop -------------------------------------------------------------------------

_FREQUENCY = {"description": "Visits per month: never, less1 (under 1), 1~3, 4~8, gt8 (over 8)"}


class PreferencesSchema(Schema):
    """How often the driver says they visit each kind of place (all optional)."""

    bar = Text(validate=validate.OneOf(FREQUENCIES), metadata=_FREQUENCY)
    coffee_house = Text(validate=validate.OneOf(FREQUENCIES), metadata=_FREQUENCY)
    carry_away = Text(validate=validate.OneOf(FREQUENCIES), metadata=_FREQUENCY)
    restaurant_lt20 = Text(validate=validate.OneOf(FREQUENCIES), metadata={
        "description": "Restaurants under $20 a person; " + _FREQUENCY["description"]})
    restaurant_20_50 = Text(validate=validate.OneOf(FREQUENCIES), metadata={
        "description": "Restaurants at $20-50 a person; " + _FREQUENCY["description"]})


class FeedbackSchema(Schema):
    recommendation_id = _text(100, required=True)
    offer_id = _text(100, required=True)
    event = Text(required=True, validate=validate.OneOf(EVENTS), metadata={
        "description": "accept, redeem and dismiss teach the driver's model (the first per "
                       "offer and recommendation); impression and click are logged"})
    counted = fields.Boolean(dump_only=True, metadata={
        "description": "False when this event was already counted for this offer"})


class ModelSchema(Schema):
    version = Text()
    published_at = Number(metadata={"description": "Epoch seconds"})
    note = Text()
    info = fields.Dict()
    active = fields.Boolean()


class ModelListSchema(Schema):
    items = fields.List(fields.Nested(ModelSchema))
