"""Reading request bodies: what webargs does, with orjson first (a 250-point route reads
ten times faster than with Python's parser), plus the JSON that Python's parser chokes on in
ways other than a syntax error (integers of thousands of digits, nesting thousands deep) is a
400 too, and a body that is not JSON at all is a 415, never a 500 or a misleading 422."""

from __future__ import annotations

import json
import re

import flask_smorest
import orjson
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

_LONG_NUMBER = re.compile(rb"\d{19}")  # past 64 bits, or nearly


class JsonBodyParser(FlaskParser):
    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not is_json_request(req):
            if body:
                abort(415, messages={"json": ["Send the body as application/json."]})
            return core.missing
        if not _LONG_NUMBER.search(body):  # orjson reads integers past 64 bits as floats,
            # Python as integers (which the schemas then judge): the slow path for those
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass  # what orjson refuses (NaN, lone surrogates) is read as before
        try:
            return core.parse_json(body)
        except json.JSONDecodeError:
            raise  # webargs turns these into its own 400
        except (ValueError, RecursionError):
            abort(400, messages={"json": ["The JSON body has numbers too long or nesting too "
                                          "deep to read."]})


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()

    def arguments(self, schema, *args, **kwargs):
        """As flask-smorest's, with a schema class made an instance once: webargs otherwise
        instantiates the class on every request (deep copies of every field and nested
        schema). Loading does not change a schema."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)
