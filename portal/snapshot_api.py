"""The offline pre-check snapshot for keyed platforms (docs/contract.md, "Offline pre-check
snapshot"): ``GET /api/v1/snapshot`` and ``GET /api/v1/snapshot/deltas?since=…``.

A snapshot lets its holder test any number offline — and so enumerate a guessable number space —
so it goes only to platforms holding a key (``Authorization: Bearer rnrp_…``), and every download
counts against that key (``RATELIMIT_SNAPSHOT``, ``RATELIMIT_SNAPSHOT_DELTAS``). The signing
key's public half is public: ``GET /api/v1/snapshot/key`` (portal/api.py). Views parse, ask the
registry's :class:`registry.bloom.snapshot.SnapshotService`, answer.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request

from registry.bloom.snapshot import SnapshotOutdated, SnapshotUnavailable

from .errors import api_error
from .extensions import client_address, limiter, registry

bp = Blueprint("snapshot_api", __name__, url_prefix="/api/v1/snapshot")

MEDIA_TYPE = "application/vnd.rnr.snapshot"


def platform():
    """The live platform key of this request (cached on ``g``), or None."""
    if "platform" not in g:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        g.platform = registry().platforms.authenticate(key.strip()) if scheme.lower() == "bearer" else None
    return g.platform


def platform_key() -> str:
    """Rate-limit key: the platform key's id (callers without one share one key per address)."""
    found = platform()
    return f"platform:{found.id}" if found is not None else f"anon:{client_address()}"


def snapshot_limit() -> str:
    return current_app.config["RATELIMIT_SNAPSHOT"]


def deltas_limit() -> str:
    return current_app.config["RATELIMIT_SNAPSHOT_DELTAS"]


@bp.before_request
def _require_platform_key():
    if platform() is None:
        response = api_error(401, "unauthorized", "a valid platform key is required: Authorization: Bearer <key> "
                             "(unknown, revoked or expired keys are refused)")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


def _answer(bundle):
    response = Response(bundle.parts, mimetype=MEDIA_TYPE)
    response.headers["Content-Length"] = str(bundle.length)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Snapshot-Delta"] = bundle.manifest["delta"]
    return response


def _unavailable(exc: Exception):
    response = api_error(503, "unavailable", f"no snapshot can be served now ({exc}); try again later")
    response.headers["Retry-After"] = "60"
    return response


@bp.get("")
@limiter.limit(snapshot_limit, key_func=platform_key)
def snapshot():
    """The newest checkpoint of the Bloom index, signed (a bundle: see docs/contract.md)."""
    try:
        return _answer(registry().snapshots.snapshot())
    except SnapshotUnavailable as exc:
        return _unavailable(exc)


@bp.get("/deltas")
@limiter.limit(deltas_limit, key_func=platform_key)
def deltas():
    """The deltas after ``since`` up to the newest checkpoint, signed; 410 when the client must
    download the snapshot again (another generation, or deltas no longer kept)."""
    try:
        return _answer(registry().snapshots.deltas(request.args.get("since", "")))
    except ValueError as exc:
        return api_error(400, "invalid_request", str(exc))
    except SnapshotOutdated as exc:
        return api_error(410, "snapshot_outdated", f"{exc}: download GET /api/v1/snapshot again")
    except SnapshotUnavailable as exc:
        return _unavailable(exc)
