"""gunicorn's access log without drivers' ids: the fleet's own id of a driver is in the path
of `/v1/drivers/{id}` (its preferences, its erasure), and the engine keeps drivers only under
a keyed pseudonym, so the log line says `/v1/drivers/-` instead."""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

_DRIVER_IN_PATH = re.compile(r"(/v1/drivers/)[^/?#\s]+")


class AccessLogWithoutDrivers(Logger):
    def atoms(self, resp, req, environ, request_time):
        # Every atom that may hold the path: the request line, the path, the raw URI among
        # the environ's, a Referer naming another such page.
        return {name: _DRIVER_IN_PATH.sub(r"\1-", value) if isinstance(value, str) else value
                for name, value in super().atoms(resp, req, environ, request_time).items()}
