"""The verify edge: ``GET /api/v1/verify`` as a plain WSGI callable, in front of the Flask app.

The product's busiest route needs none of Flask's request machinery (contexts, sessions, hooks,
CSRF, templates), so it is served here as plain WSGI: the query string parsed as Werkzeug parses
it (:func:`query_args`; building a Werkzeug ``Request`` alone cost 20 µs, a third of the edge's
CPU per answer) and answered with ``start_response``. ``create_app`` mounts it in front of
``app.wsgi_app`` with :func:`mount` (which, unlike Werkzeug's ``DispatcherMiddleware``, leaves
``PATH_INFO`` alone, so access logs keep the path), so ``wsgi.py``, ``flask --app wsgi`` and
``app.test_client()`` all reach it, and it shares the app's services (docs/architecture.md).
What it answers — JSON, statuses, headers, limits, query log — is the contract of
docs/contract.md, the same as every other API route.

One verification costs one Redis exchange on the production stack: :meth:`VerifyEdge.count_and_probe`
sends the rate limiter's counting commands and the Bloom index's probe in one write. A refused
hit (429) therefore never reaches the database or the query log.
"""
from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import orjson
from redis import RedisError

from registry.numbers.normalize import InvalidValue, clean_text
from registry.verification.service import Unavailable

from . import cors
from .ratelimit import Decision, VerifyLimiter
from .security import SECURITY_HEADERS

log = logging.getLogger(__name__)

_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request",
                 405: "405 Method Not Allowed", 429: "429 Too Many Requests", 500: "500 Internal Server Error",
                 503: "503 Service Unavailable"}
_ALLOW = "GET, HEAD, OPTIONS"
_JSON_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"), *SECURITY_HEADERS)
# the single verify is readable from any origin, without credentials (portal/cors.py)
_VERIFY_HEADERS = (*_JSON_HEADERS, *cors.PUBLIC)
_PREFLIGHT_HEADERS = (*_JSON_HEADERS, *cors.PUBLIC_PREFLIGHT, ("Allow", _ALLOW))
_ERRORS = {
    405: ("invalid_request", "This method is not allowed here."),
    429: ("rate_limited", "Too many requests: please wait and try again."),
    500: ("error", "Something went wrong on our side; please try again later."),
}


class VerifyEdge:
    """``GET /api/v1/verify``."""

    PATH = "/api/v1/verify"

    def __init__(self, *, services, limiter: VerifyLimiter) -> None:
        self.services = services  # the app's composition root: verifier, bloom, query log, Redis
        self.limiter = limiter

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":
            return self._send(start_response, method, 200, b"", base=_PREFLIGHT_HEADERS)
        if method not in ("GET", "HEAD"):
            return self._send(start_response, method, 405, self._error(405), [("Allow", _ALLOW)], base=_VERIFY_HEADERS)
        try:
            status, body, headers = self.verify(environ)
        except Exception:  # never a trace: log it, answer the contract's JSON
            log.exception("unhandled error on GET /api/v1/verify")
            status, body, headers = 500, self._error(500), []
        return self._send(start_response, method, status, body, headers, base=_VERIFY_HEADERS)

    def verify(self, environ) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Parse, count, verify, log: (status, JSON body, extra headers)."""
        services = self.services
        services.ensure_background()
        args = query_args(environ.get("QUERY_STRING", ""))
        client = environ.get("REMOTE_ADDR") or "unknown"
        raw_number = args.get("number", "")
        institution = clean_text(args.get("institution"), 500) or None  # no NUL/C0 into the log or the lookup
        try:
            if not raw_number.strip():
                raise InvalidValue("empty", "the query parameter 'number' is required")
            query = services.verifier.prepare(raw_number, institution)
        except InvalidValue as exc:  # still counts on the budget
            decision = self.limiter.hit(client)
            if not decision.allowed:
                return self._refused(decision)
            return 400, self._error_body("invalid_number", str(exc)), decision.headers()
        decision, maybe = self.count_and_probe(client, query.number)
        if not decision.allowed:
            return self._refused(decision)
        try:
            verdict = services.verifier.answer(query, maybe)
        except Unavailable as exc:
            return 503, self._error_body("unavailable", str(exc)), decision.headers()
        services.query_log.record(
            at=verdict.checked_at, number=verdict.number, institution_text=institution,
            institution_id=verdict.institution.id if verdict.institution else None,
            status=verdict.status, client_address=client,
        )
        return 200, orjson.dumps(verdict.to_json()), decision.headers()

    def count_and_probe(self, client: str, number: str) -> tuple[Decision, bool | None]:
        """The one Redis exchange of a verification: the limiter's counting commands and the Bloom
        probe travel in one write. Without Redis the count is the host's and the probe local;
        when the exchange fails, both fall back (host count, database answer)."""
        probe = self.services.bloom.probe(number)  # a Redis command to send, or already answered
        commands = self.limiter.commands(client)
        if probe.command is None and not commands:
            return self.limiter.count_on_host(client), probe.result
        sent = [*commands, probe.command] if probe.command is not None else commands
        try:
            replies = self.services.hot_redis.exchange(sent)
        except RedisError as exc:
            decision = self.limiter.failed(client, exc) if commands else self.limiter.count_on_host(client)
            return decision, probe.failed(exc) if probe.command is not None else probe.result
        decision = self.limiter.decide(client, replies[:len(commands)])
        return decision, probe.answer(replies[-1]) if probe.command is not None else probe.result

    def _refused(self, decision: Decision) -> tuple[int, bytes, list[tuple[str, str]]]:
        retry = decision.retry_after
        code, message = _ERRORS[429]
        body = orjson.dumps({"error": {"code": code, "message": message}, "retry_after": retry})
        return 429, body, [*decision.headers(), ("Retry-After", str(retry))]

    @staticmethod
    def _error_body(code: str, message: str) -> bytes:
        return orjson.dumps({"error": {"code": code, "message": message}})

    def _error(self, status: int) -> bytes:
        return self._error_body(*_ERRORS[status])

    @staticmethod
    def _send(start_response, method: str, status: int, body: bytes, headers=(), base=_JSON_HEADERS):
        start_response(_STATUS_LINES[status],
                       [*base, ("Content-Length", str(len(body))), *headers])
        return [] if method == "HEAD" else [body]


def query_args(query_string: str) -> dict[str, str]:
    """The query's arguments, the first value of each name (as ``request.args.get`` answers).

    A WSGI server hands the query string over as bytes decoded as Latin-1 (PEP 3333); clients
    that send Chinese unescaped send UTF-8, so it is re-read as UTF-8 first, as Werkzeug does."""
    if not query_string.isascii():
        query_string = query_string.encode("latin-1", "replace").decode("utf-8", "replace")
    args: dict[str, str] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        args.setdefault(name, value)
    return args


def mount(app, *, at: str, before):
    """A WSGI callable that sends requests for exactly the path ``at`` to ``app`` and every other
    request to ``before``."""

    def dispatch(environ, start_response):
        if environ.get("PATH_INFO") == at:
            return app(environ, start_response)
        return before(environ, start_response)

    return dispatch
