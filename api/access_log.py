"""gunicorn's access log without drivers' ids: the fleet's own id of a driver is in the path
of `/v1/drivers/{id}` (its preferences, its erasure), and the engine keeps drivers only under
a keyed pseudonym, so the log line says `/v1/drivers/-` instead. The same logger class, which
is how gunicorn is told of this API (`offers serve`, the README's command line), has gunicorn
answer the requests it refuses itself (a request line or headers too long, a malformed
request) in the API's error shape, not with an HTML page."""

from __future__ import annotations

import re
from urllib.parse import unquote

import orjson
from gunicorn import util
from gunicorn.glogging import Logger

from .errors import error_body

# Everything after the prefix up to `/preferences`, a query or the line's end: an id sent
# with an encoded slash is not cut short. Matched in the decoded path, in any case: the
# router reads `/v1/%64rivers/...` as `/v1/drivers/...`.
_DRIVER_IN_PATH = re.compile(r"(/v1/drivers/)(?:(?!/preferences)[^?#\s])+", re.IGNORECASE)


def _without_drivers(value):
    if not isinstance(value, str):
        return value
    decoded = unquote(value)
    return _DRIVER_IN_PATH.sub(r"\1-", decoded) if _DRIVER_IN_PATH.search(decoded) else value


def _write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, answering in the API's JSON error shape."""
    body = orjson.dumps(error_body(status_int, mesg or reason))
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class AccessLogWithoutDrivers(Logger):
    def __init__(self, cfg):
        super().__init__(cfg)
        # Made in the master, before the workers are forked: theirs write this way too.
        util.write_error = _write_json_error

    def atoms(self, resp, req, environ, request_time):
        # Every atom that may hold the path: the request line, the path, the raw URI among
        # the environ's, a Referer naming another such page.
        return {name: _without_drivers(value)
                for name, value in super().atoms(resp, req, environ, request_time).items()}
