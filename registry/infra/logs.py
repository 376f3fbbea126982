"""Logging set-up: plain text (the default) or one JSON object per line (``LOG_FORMAT=json``).

Every record carries the id of the request (or background job) it belongs to: the web layer sets
it from the proxy's ``X-Request-ID`` (or makes one), a job queued during a request carries it to
the worker (workflows/jobs.py), so one upload's story can be followed from the page to the
worker's log. Flask-free: the web app, the CLI and the RQ worker set logging up the same way.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import uuid

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_GIVEN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def new_request_id(given: str | None = None) -> str:
    """The proxy's id when it is a plain token (never echo arbitrary text into logs), else a new one."""
    if given and _GIVEN.match(given):
        return given
    return uuid.uuid4().hex[:16]


class JsonFormatter(logging.Formatter):
    """One line per record: time (UTC), level, logger, message, request id, process, and the
    exception's trace when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
            "pid": os.getpid(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(fmt: str = "text", *, level: int = logging.INFO) -> None:
    """As ``logging.basicConfig``: a stderr handler on the root logger when it has none (a host
    that set logging up already, pytest or a caller's own, keeps its handlers), in the given
    format; a second call switches the format of that handler."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "rnr_handler", False)]
    if not ours:
        if root.handlers:
            return
        handler = logging.StreamHandler()
        handler.rnr_handler = True
        root.addHandler(handler)
        root.setLevel(level)
        ours = [handler]
    for handler in ours:
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
