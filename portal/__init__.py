"""The web portal: ``create_app`` reads top to bottom as the steps that build the app."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, NoReturn

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from registry.infra.logs import configure_logging
from registry.infra.settings import ROOT, TEMPLATES_DIR, finish_settings, load_settings



def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(TEMPLATES_DIR), instance_path=str(ROOT / "instance"))
    _load_settings(app, config)
    _register_extensions(app)
    _register_blueprints(app)
    _register_error_handlers(app)
    _register_commands(app)
    _mount_verify_edge(app)
    return app


def _load_settings(app: Flask, config: Mapping[str, Any] | None) -> None:
    from . import hostwindows  # noqa: F401 - registers the hostfile:// rate-limit storage
    settings = load_settings()
    settings.update(config or {})
    finish_settings(settings)
    app.config.update(settings)
    app.config.update(
        MAX_CONTENT_LENGTH=settings["MAX_UPLOAD_BYTES"],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        **_ratelimit_storage(settings),
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_KEY_PREFIX="rnr",
        RATELIMIT_SWALLOW_ERRORS=True,
        JSON_AS_ASCII=False,
    )
    configure_logging(settings["LOG_FORMAT"])


def _ratelimit_storage(settings: Mapping[str, Any]) -> dict:
    """Flask-Limiter's storage: the registry's Redis (through its Sentinels when
    ``REDIS_SENTINELS`` is set: the ``limits`` library's ``redis+sentinel://`` storage), else a
    file of this host."""
    if not settings["REDIS_URL"]:
        return {"RATELIMIT_STORAGE_URI": f"hostfile://{Path(settings['INSTANCE_DIR']) / 'ratelimit-pages.bin'}",
                "RATELIMIT_STORAGE_OPTIONS": {}}
    timeouts = {"socket_timeout": 0.2, "socket_connect_timeout": 0.2}
    if not settings.get("REDIS_SENTINELS"):
        url = settings["REDIS_URL"]
        if url.startswith("unix://"):  # a Redis on this host's socket: the limits library names it so
            url = "redis+unix://" + url.removeprefix("unix://")
        return {"RATELIMIT_STORAGE_URI": url, "RATELIMIT_STORAGE_OPTIONS": timeouts}
    from workflows.services import url_auth

    sentinels = ",".join(f"{host}:{port}" for host, port in settings["REDIS_SENTINELS"])
    return {"RATELIMIT_STORAGE_URI": f"redis+sentinel://{sentinels}/{settings['REDIS_SENTINEL_MASTER']}",
            "RATELIMIT_STORAGE_OPTIONS": {**timeouts, **url_auth(settings["REDIS_URL"]), "sentinel_kwargs": timeouts}}


def _register_extensions(app: Flask) -> None:
    from . import auth, i18n, security
    from .extensions import close_db_session, csrf, limiter, registry_ext
    from .hostwindows import CountsFileError, HostWindows
    from .ratelimit import VerifyLimiter
    from .sessions import LeanSessionInterface

    app.session_interface = LeanSessionInterface()
    registry_ext.init_app(app)
    try:
        limiter.init_app(app)  # without Redis, maps instance/ratelimit-pages.bin
        windows = HostWindows(Path(app.config["INSTANCE_DIR"]) / "ratelimit-verify.bin")
    except CountsFileError as exc:
        _fail_start(str(exc))
    app.extensions["verify_limiter"] = VerifyLimiter(
        app.config["RATELIMIT_VERIFY"], redis=app.extensions["registry"].hot_redis, windows=windows)
    csrf.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    app.teardown_appcontext(close_db_session)


def _fail_start(message: str) -> NoReturn:
    """The app cannot start (a file of the instance folder could not be created): one line on
    stderr, no traceback, exit status 4 — gunicorn's "app failed to load", so its master stops
    instead of starting workers that fail again and again; ``flask`` commands exit 4 too."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(4)


def _register_blueprints(app: Flask) -> None:
    from . import api, complaints, health, public, urls

    urls.init_app(app)  # first: the routes' <int:...> are bounded
    from .extensions import csrf

    app.register_blueprint(health.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(complaints.bp)
    from . import site

    site.init_app(app)  # the operator in every footer, /privacy
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)
    from . import log

    app.register_blueprint(log.bp)
    csrf.exempt(log.bp)
    from . import account, admin, auth, institution, upload_api
    from . import sanctions, statistics, statistics_admin  # noqa: F401 - add their routes to the institution, regulator and admin blueprints
    from . import onboarding  # noqa: F401 - adds its routes to the auth and regulator blueprints

    app.register_blueprint(auth.bp)
    csrf.exempt(auth.unsubscribe)  # a mail client's one-click POST (RFC 8058): the signed link is the credential
    app.register_blueprint(account.bp)
    app.register_blueprint(institution.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(upload_api.bp)
    csrf.exempt(upload_api.bp)
    from . import snapshot_api

    app.register_blueprint(snapshot_api.bp)
    csrf.exempt(snapshot_api.bp)
    from . import regulator

    app.register_blueprint(regulator.bp)
    from . import forms

    from . import metrics

    metrics.init_app(app)  # /metrics, the request id, counting every route's answers
    forms.init_app(app)  # last: it guards the blueprints registered above


def _register_error_handlers(app: Flask) -> None:
    from .errors import register_error_handlers

    register_error_handlers(app)


def _register_commands(app: Flask) -> None:
    from .cli import register_commands

    register_commands(app)


def _mount_verify_edge(app: Flask) -> None:
    """``/api/v1/verify`` and ``/api/v1/verify/bulk`` go to the verify edge before Flask (docs/architecture.md); ProxyFix,
    when proxies are trusted, wraps both so that every route sees the client's own address."""
    from .edge import BulkEdge, VerifyEdge, mount
    from .hostwindows import HostWindows
    from .ratelimit import PlatformQuota

    services = app.extensions["registry"]
    json_logs = app.config["LOG_FORMAT"] == "json"
    edge = VerifyEdge(services=services, limiter=app.extensions["verify_limiter"], json_logs=json_logs)
    quota = app.extensions["platform_quota"] = PlatformQuota(
        redis=services.hot_redis, windows=HostWindows(Path(app.config["INSTANCE_DIR"]) / "quota-platforms.bin"))
    bulk = BulkEdge(services=services, quota=quota, json_logs=json_logs)
    # the single verify is tested first: it keeps its one comparison before the edge
    app.wsgi_app = mount(edge, at=VerifyEdge.PATH, before=mount(bulk, at=BulkEdge.PATH, before=app.wsgi_app))
    if app.config["TRUSTED_PROXIES"] > 0:
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
