"""Reading request bodies: what webargs does, plus the JSON that Python's parser chokes on in
ways other than a syntax error (integers of thousands of digits, nesting thousands deep) is a
400 too, and a body that is not JSON at all is a 415, never a 500 or a misleading 422."""

from __future__ import annotations

import io
import json

import flask_smorest
import orjson
from flask import request
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

# orjson reads a long route's body four times faster than Python's parser, this check
# included (`benchmarks/body_parsing.py`), and as Python does, except that it makes integers
# past 64 bits floats (then "not a valid integer", where the schemas' own range check should
# answer) and refuses NaN, Infinity and lone surrogates (which Python reads and the schemas
# refuse, naming the field). So bodies with a run of 19 digits or more, and whatever orjson
# refuses, are read by Python's parser. (Found by turning every digit into a 9 and looking
# for nineteen: a regular expression took longer to scan a route's digits than orjson took
# to read them.)
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
_NINETEEN_DIGITS = b"9" * 19


def load_json(body: bytes):
    """What Python's parser makes of a JSON body (and raises), mostly read by orjson."""
    if body.translate(_DIGITS_AS_NINES).find(_NINETEEN_DIGITS) < 0:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # Python's parser reads it, or says what is wrong, as it always did
    return core.parse_json(body)


def json_body() -> dict:
    """The request's JSON body as the arguments' parser read it (a PATCH needs what was sent,
    not the loaded schema's values), `{}` for none: Flask's `get_json` reads it another way
    (Python's parser) and answers a body without one its own way."""
    body = request.get_data(cache=True)
    return load_json(body) if body else {}


UNREADABLE_BODY = "offers.unreadable_body"  # set in the WSGI environ by ChunkedBodies


def refuse_unreadable_body() -> None:
    """Before every request: a body ChunkedBodies could not read is a 400, and one sent
    compressed (`Content-Encoding`, which nothing here decodes) a 415 rather than a JSON
    syntax error, or, if it was not compressed after all, a body read as JSON."""
    if request.environ.get(UNREADABLE_BODY):
        abort(400, messages={"json": ["The request body could not be read."]})
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity") and request.content_length:
        abort(415, messages={"json": [f"Send the body uncompressed, not in {coding!r}."]},
              headers={"Accept-Encoding": "identity"})


class ChunkedBodies:
    """WSGI middleware: a body sent without a length (chunked) is read here, up to the
    application's MAX_CONTENT_LENGTH and a byte more, and passed on with its length, so that
    one over the limit is a 413 as it is with Content-Length. (Werkzeug cuts such a stream at
    the limit without a word: the cut JSON read as a 400, or, padded with spaces, was
    accepted.)"""

    def __init__(self, wsgi_app, config):
        self.wsgi_app, self.config = wsgi_app, config

    def __call__(self, environ, start_response):
        if (not environ.get("CONTENT_LENGTH") and environ.get("wsgi.input_terminated")
                and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()):
            limit = self.config["MAX_CONTENT_LENGTH"]
            try:
                body = _read_up_to(environ["wsgi.input"], None if limit is None else limit + 1)
            except Exception:  # a chunk the server cannot parse, a client gone: the app says 400
                body, environ[UNREADABLE_BODY] = b"", True
            too_long = limit is not None and len(body) > limit  # Werkzeug then answers 413
            # A length, and no chunked encoding for Werkzeug to go by instead of it.
            environ.pop("HTTP_TRANSFER_ENCODING")
            environ["wsgi.input"] = io.BytesIO(b"" if too_long else body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.wsgi_app(environ, start_response)


def _read_up_to(stream, size: int | None) -> bytes:
    chunks, left = [], size
    while left is None or left > 0:
        chunk = stream.read(65536 if left is None else min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        if left is not None:
            left -= len(chunk)
    return b"".join(chunks)


class JsonBodyParser(FlaskParser):
    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not is_json_request(req):
            if body:
                abort(415, messages={"json": ["Send the body as application/json."]})
            return core.missing
        try:
            return load_json(body)
        except json.JSONDecodeError:
            raise  # webargs turns these into its own 400
        except (ValueError, RecursionError):
            abort(400, messages={"json": ["The JSON body has numbers too long or nesting too "
                                          "deep to read."]})


    def load_querystring(self, req, schema):
        """As webargs, but a parameter given twice is a 422 rather than its first value
        silently (`limit=2&limit=abc` was 2, `category=cafe&category=fuel` cafe alone: a list
        is written `cafe,fuel`)."""
        known = {field.data_key or name for name, field in schema.fields.items()}
        repeated = sorted(key for key, values in req.args.lists()
                          if len(values) > 1 and key in known)  # others are ignored anyway
        if repeated:
            abort(422, messages={"query": {key: ["Give this parameter once (a list as a,b)."]
                                           for key in repeated}})
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()

    def arguments(self, schema, *args, **kwargs):
        """As flask-smorest's, with a schema class made an instance once: webargs otherwise
        instantiates the class on every request (deep copies of every field and nested
        schema). Loading does not change a schema."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)
