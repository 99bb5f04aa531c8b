"""Reading request bodies: what webargs does, plus the JSON that Python's parser chokes on in
ways other than a syntax error (integers of thousands of digits, nesting thousands deep) is a
400 too, and a body that is not JSON at all is a 415, never a 500 or a misleading 422."""

from __future__ import annotations

import json

import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request


class JsonBodyParser(FlaskParser):
    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not is_json_request(req):
            if body:
                abort(415, messages={"json": ["Send the body as application/json."]})
            return core.missing
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
