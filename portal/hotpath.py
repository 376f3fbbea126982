"""The verify endpoints are the product's hot path: keep app-wide hooks that do nothing for them
off it, and keep Flask's per-request bookkeeping cheap.

Extensions attach hooks to every request. For the verify endpoints these only cost time:
Flask-Limiter resolves limits and injects headers for views it does not limit (``ratelimit.py``
limits them in one storage round trip), CSRF protection inspects GET requests, and Flask-Login
looks at the session for a remember cookie although these pages never sign anyone in.
:class:`PortalFlask` runs, for a hot endpoint, the hook lists Flask would run minus those known
no-ops (computed once per endpoint); every other endpoint takes Flask's own code unchanged. A
hook that cannot be recognised is simply kept (slower, never wrong).

It also remembers :meth:`Flask.ensure_sync` per function: Flask asks it for every hook and view
of every request, and the answer (is this a coroutine function?) never changes.
"""
from __future__ import annotations

import sys
from itertools import chain
from typing import Callable

from flask import Flask, request
from flask.globals import _cv_request
from flask.sansio.scaffold import _sentinel
from flask.signals import request_tearing_down

HOT_ENDPOINTS = frozenset({"api.verify", "public.verify", "public.deep_link"})

NO_OP_ON_HOT_PATH = frozenset({
    "flask_limiter._extension.Limiter._check_request_limit",
    "flask_wtf.csrf.CSRFProtect.init_app.<locals>.csrf_protect",
    "flask_limiter._extension.Limiter.__inject_headers",
    "flask_login.login_manager.LoginManager._update_remember_cookie",
    "flask_limiter._extension.Limiter.__release_context",
})

_SYNC_CACHE_LIMIT = 4096  # views and hooks are a few hundred; never let odd callers grow it


def hook_name(hook) -> str:
    target = getattr(hook, "func", hook)  # functools.partial
    target = getattr(target, "__func__", target)  # bound method
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"


class _HotHooks:
    """The hooks Flask would run for one endpoint, in Flask's order, minus the known no-ops."""

    def __init__(self, app: Flask, blueprints: tuple[str, ...]) -> None:
        def keep(funcs) -> tuple[Callable, ...]:
            return tuple(app.ensure_sync(f) for f in funcs if hook_name(f) not in NO_OP_ON_HOT_PATH)

        before_names = (None, *reversed(blueprints))
        self.url_values = tuple(f for n in before_names for f in app.url_value_preprocessors.get(n, ()))
        self.before = keep(f for n in before_names for f in app.before_request_funcs.get(n, ()))
        self.after = keep(f for n in chain(blueprints, (None,)) for f in reversed(app.after_request_funcs.get(n, ())))
        self.teardown = keep(f for n in chain(blueprints, (None,)) for f in reversed(app.teardown_request_funcs.get(n, ())))
        self.skipped = sorted(
            {hook_name(f) for funcs in chain(app.before_request_funcs.values(), app.after_request_funcs.values(),
                                             app.teardown_request_funcs.values())
             for f in funcs if hook_name(f) in NO_OP_ON_HOT_PATH}
        )


class PortalFlask(Flask):
    """Flask, with a lean request cycle for :data:`HOT_ENDPOINTS` (see the module's text)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sync_cache: dict = {}
        self._hot_hooks: dict[str, _HotHooks] = {}

    def ensure_sync(self, func):
        sync = self._sync_cache.get(func)
        if sync is None:
            sync = super().ensure_sync(func)
            if len(self._sync_cache) < _SYNC_CACHE_LIMIT:
                self._sync_cache[func] = sync
        return sync

    def hot_hooks(self, endpoint: str | None) -> _HotHooks | None:
        """The pruned hook lists of a hot endpoint; None for every other endpoint."""
        if endpoint not in HOT_ENDPOINTS:
            return None
        hooks = self._hot_hooks.get(endpoint)
        if hooks is None:
            hooks = self._hot_hooks[endpoint] = _HotHooks(self, tuple(request.blueprints))
        return hooks

    # The three methods below are Flask's own (3.1), run over the pruned lists for hot endpoints.

    def preprocess_request(self):
        hooks = self.hot_hooks(request.endpoint)
        if hooks is None:
            return super().preprocess_request()
        for url_func in hooks.url_values:
            url_func(request.endpoint, request.view_args)
        for before_func in hooks.before:
            rv = before_func()
            if rv is not None:
                return rv
        return None

    def process_response(self, response):
        ctx = _cv_request.get()
        hooks = self.hot_hooks(ctx.request.endpoint)
        if hooks is None:
            return super().process_response(response)
        for func in ctx._after_request_functions:
            response = self.ensure_sync(func)(response)
        for func in hooks.after:
            response = func(response)
        if not self.session_interface.is_null_session(ctx._session):
            self.session_interface.save_session(self, ctx._session, response)
        return response

    def do_teardown_request(self, exc=_sentinel):
        ctx = _cv_request.get(None)
        hooks = self.hot_hooks(ctx.request.endpoint) if ctx is not None else None
        if hooks is None:
            return super().do_teardown_request(exc)
        if exc is _sentinel:
            exc = sys.exc_info()[1]
        for func in hooks.teardown:
            func(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)
        return None
