"""gunicorn's access log without personal data (``make run`` uses it).

The log format (Makefile, ``ACCESS_LOG_FORMAT``) names no client address, query string, referrer
or user agent; :class:`RedactingLogger` also hides the secrets a path can carry — a complaint's
tracking code (``/complaints/<code>``) and a deep link's institution and number (``/v/...``) —
and leaves every other atom out of reach of a format that would ask for it.
"""
from __future__ import annotations

import re

from gunicorn.glogging import Logger

ACCESS_LOG_FORMAT = '%(t)s %(p)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
_SECRET_PATHS = [
    (re.compile(r"^/complaints/(?!new/?$)[^/]+"), "/complaints/-"),
    (re.compile(r"^/v/.*"), "/v/-"),
]
_KEPT = frozenset("tsmUHBbTDMLp")


def redact_path(path: str | None) -> str:
    path = path or "-"
    for pattern, replacement in _SECRET_PATHS:
        path = pattern.sub(replacement, path, count=1)
    return path


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = {key: value for key, value in super().atoms(resp, req, environ, request_time).items()
                 if key in _KEPT}
        atoms["U"] = redact_path(atoms.get("U"))
        return atoms
