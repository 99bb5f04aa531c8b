"""gunicorn's access log without drivers' ids: the fleet's own id of a driver is in the path
of `/v1/drivers/{id}` (its preferences, its erasure), and the engine keeps drivers only under
a keyed pseudonym, so the log line says `/v1/drivers/-` instead."""

from __future__ import annotations

import re
from urllib.parse import unquote

from gunicorn.glogging import Logger

# Everything after the prefix up to `/preferences`, a query or the line's end: an id sent
# with an encoded slash is not cut short. Matched in the decoded path, in any case: the
# router reads `/v1/%64rivers/...` as `/v1/drivers/...`.
_DRIVER_IN_PATH = re.compile(r"(/v1/drivers/)(?:(?!/preferences)[^?#\s])+", re.IGNORECASE)


def _without_drivers(value):
    if not isinstance(value, str):
        return value
    decoded = unquote(value)
    return _DRIVER_IN_PATH.sub(r"\1-", decoded) if _DRIVER_IN_PATH.search(decoded) else value


class AccessLogWithoutDrivers(Logger):
    def atoms(self, resp, req, environ, request_time):
        # Every atom that may hold the path: the request line, the path, the raw URI among
        # the environ's, a Referer naming another such page.
        return {name: _without_drivers(value)
                for name, value in super().atoms(resp, req, environ, request_time).items()}
