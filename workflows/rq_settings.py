"""Settings for ``rq worker -c workflows.rq_settings rnr-imports``: the worker reaches the Redis
the registry uses — ``REDIS_URL``, or, with ``REDIS_SENTINELS`` and ``REDIS_SENTINEL_MASTER``,
the primary the Sentinels name (RQ's own ``SENTINEL`` setting; the database, user and password
from ``REDIS_URL``), so that a worker follows a promotion as the web processes do."""
from __future__ import annotations

from registry.infra.settings import load_settings, redis_url

from .services import url_auth

_settings = load_settings()
REDIS_URL: str | None = None  # RQ takes REDIS_URL before SENTINEL: None when the Sentinels are used
SENTINEL: dict | None = None
if _settings["REDIS_SENTINELS"]:
    _auth = url_auth(redis_url(_settings))
    SENTINEL = {
        "INSTANCES": list(_settings["REDIS_SENTINELS"]),
        "MASTER_NAME": _settings["REDIS_SENTINEL_MASTER"],
        "DB": _auth.get("db", 0),
        "USERNAME": _auth.get("username"),
        "PASSWORD": _auth.get("password"),
        "SSL": _auth.get("ssl", False),
        "SENTINEL_KWARGS": {key: _auth[key] for key in ("username", "password") if key in _auth},
    }
else:
    REDIS_URL = _settings["REDIS_URL"]
