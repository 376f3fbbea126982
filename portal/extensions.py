"""Flask extensions, created unbound and bound in ``create_app``."""
from __future__ import annotations

from flask import current_app, g, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from workflows.services import Services, build_services


def client_address() -> str:
    """The client's address as ProxyFix(x_for=TRUSTED_PROXIES) established it."""
    return request.remote_addr or "unknown"


limiter = Limiter(key_func=client_address)
csrf = CSRFProtect()
babel = Babel()
login_manager = LoginManager()


class RegistryExtension:
    """Builds the app's :class:`~workflows.services.Services` (the composition root) from its
    config, once per app; ``registry()`` returns it."""

    def init_app(self, app) -> None:
        app.extensions["registry"] = build_services(app.config, clock=app.config.get("CLOCK"))

        @app.before_request
        def _start_background():
            app.extensions["registry"].ensure_background()


def registry() -> Services:
    """This app's services: views and commands ask it for every service they use."""
    return current_app.extensions["registry"]


def db_session():
    """One session per request, closed at teardown."""
    if "db_session" not in g:
        g.db_session = registry().sessions()
    return g.db_session


def close_db_session(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


registry_ext = RegistryExtension()
