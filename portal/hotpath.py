"""The verify endpoints are the product's hot path: keep app-wide hooks that do nothing for them
off it.

Extensions attach hooks to every request. For the verify endpoints these only cost time:
Flask-Limiter resolves limits and injects headers for views it does not limit (``ratelimit.py``
limits them in one storage round trip), CSRF protection inspects GET requests, and Flask-Login
looks at the session for a remember cookie although these pages never sign anyone in. The hooks
are wrapped so that they return at once for the hot endpoints and run unchanged for all others;
a hook that cannot be recognised is simply left in place (slower, never wrong).
"""
from __future__ import annotations

import functools

from flask import Flask, request

HOT_ENDPOINTS = frozenset({"api.verify", "public.verify", "public.deep_link"})


def _name(hook) -> str:
    target = getattr(hook, "func", hook)  # functools.partial
    target = getattr(target, "__func__", target)  # bound method
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"


BEFORE = ("flask_limiter._extension.Limiter._check_request_limit", "flask_wtf.csrf.CSRFProtect.init_app.<locals>.csrf_protect")
AFTER = ("flask_limiter._extension.Limiter.__inject_headers", "flask_login.login_manager.LoginManager._update_remember_cookie")
TEARDOWN = ("flask_limiter._extension.Limiter.__release_context",)


def _skip_before(hook):
    @functools.wraps(hook)
    def wrapped():
        if request.endpoint in HOT_ENDPOINTS:
            return None
        return hook()

    return wrapped


def _skip_after(hook):
    @functools.wraps(hook)
    def wrapped(response):
        if request.endpoint in HOT_ENDPOINTS:
            return response
        return hook(response)

    return wrapped


def _skip_teardown(hook):
    @functools.wraps(hook)
    def wrapped(exc=None):
        if request.endpoint in HOT_ENDPOINTS:
            return None
        return hook(exc)

    return wrapped


def streamline(app: Flask) -> list[str]:
    """Wrap the known no-op hooks for the hot endpoints; returns the names wrapped."""
    wrapped = []
    for hooks, names, wrap in (
        (app.before_request_funcs.get(None, []), BEFORE, _skip_before),
        (app.after_request_funcs.get(None, []), AFTER, _skip_after),
        (app.teardown_request_funcs.get(None, []), TEARDOWN, _skip_teardown),
    ):
        for i, hook in enumerate(hooks):
            name = _name(hook)
            if name in names:
                hooks[i] = wrap(hook)
                wrapped.append(name)
    return wrapped
