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

import codecs
import gc
import logging
from contextlib import contextmanager
from time import perf_counter
from urllib.parse import parse_qsl, quote

import orjson
from redis import RedisError
from sqlalchemy.exc import SQLAlchemyError

from registry.infra.logs import new_request_id, request_id
from registry.numbers.normalize import DOCUMENT_SHA256, InvalidValue, clean_text, normalize_document_sha256
from registry.numbers.quarters import iso_local
from registry.verification.service import Unavailable, to_json_many

from . import cors
from .ratelimit import Decision, PlatformQuota, VerifyLimiter
from .security import SECURITY_HEADERS

log = logging.getLogger(__name__)

_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
                 405: "405 Method Not Allowed", 413: "413 Content Too Large", 429: "429 Too Many Requests", 500: "500 Internal Server Error",
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

    def __init__(self, *, services, limiter: VerifyLimiter, json_logs: bool = False) -> None:
        self.services = services  # the app's composition root: verifier, bloom, query log, Redis
        self.limiter = limiter
        self.json_logs = json_logs  # give each request an id for the JSON log lines (LOG_FORMAT=json)
        # this process's plain counters (registry/infra/metrics.py): a dict increment each, so
        # that counting costs the edge well under a microsecond (bench/edge_metrics.py)
        self.counts = services.metrics.requests
        self.refusals = services.metrics.refusals
        self.verdicts = services.metrics.verdicts
        self.observe = services.metrics.observe_verify

    def __call__(self, environ, start_response):
        started = perf_counter()
        status, body = self.respond(environ, start_response)
        self.counts[(self.PATH, status)] += 1
        if status == 429:
            self.refusals[self.PATH] += 1
        self.observe(perf_counter() - started)
        return body

    def respond(self, environ, start_response) -> tuple[int, list[bytes]]:
        """Answer the request: (its status, the body to return), uncounted."""
        if self.json_logs:
            request_id.set(new_request_id(environ.get("HTTP_X_REQUEST_ID")))
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":
            return 200, self._send(start_response, method, 200, b"", base=_PREFLIGHT_HEADERS)
        if method not in ("GET", "HEAD"):
            return 405, self._send(start_response, method, 405, self._error(405), [("Allow", _ALLOW)],
                                   base=_VERIFY_HEADERS)
        try:
            status, body, headers = self.verify(environ)
        except Exception:  # never a trace: log it, answer the contract's JSON
            log.exception("unhandled error on GET /api/v1/verify")
            status, body, headers = 500, self._error(500), []
        return status, self._send(start_response, method, status, body, headers, base=_VERIFY_HEADERS)

    def verify(self, environ) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Parse, count, verify, log: (status, JSON body, extra headers)."""
        services = self.services
        services.ensure_background()
        args = query_args(environ.get("QUERY_STRING", ""))
        client = environ.get("REMOTE_ADDR") or "unknown"
        raw_number = args.get("number", "")
        institution = clean_text(args.get("institution"), 500) or None  # no NUL/C0 into the log or the lookup
        document = args.get("sha256")  # a document fingerprint to compare: the answer says "document"
        try:
            if document is not None:
                document = normalize_document_sha256(document)
            if not raw_number.strip():
                raise InvalidValue("empty", "the query parameter 'number' is required")
            query = services.verifier.prepare(raw_number, institution, document)
        except InvalidValue as exc:  # still counts on the budget
            decision = self.limiter.hit(client)
            if not decision.allowed:
                return self._refused(decision)
            code = "invalid_request" if exc.code == "bad_sha256" else "invalid_number"
            return 400, self._error_body(code, str(exc)), decision.headers()
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
        self.verdicts[verdict.status] += 1
        proof = args.get("proof")
        if proof is None:
            return 200, orjson.dumps(verdict.to_json()), decision.headers()
        return self.with_log(verdict, proof, decision)

    def with_log(self, verdict, proof: str, decision: Decision) -> tuple[int, bytes, list[tuple[str, str]]]:
        """The answer with ``proof=1``: its ``log`` key holds the newest checkpoint and the
        transparency log's entries of the registrations the answer names, with their inclusion
        proofs (docs/transparency.md); ``proof=0`` is the plain answer."""
        if proof not in ("0", "1"):
            return 400, self._error_body("invalid_request", "the query parameter 'proof' is 1 or 0"), decision.headers()
        answer = verdict.to_json()
        if proof == "1":
            try:
                answer["log"] = self.services.tlog.evidence(named_registrations(verdict))
            except SQLAlchemyError:
                log.exception("the transparency log's evidence could not be read")
                return 503, self._error_body("unavailable", "the transparency log cannot be read now"), \
                    decision.headers()
        return 200, orjson.dumps(answer), decision.headers()

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


MAX_BULK_ITEMS = 1000
MAX_BULK_BYTES = 2 * 1024 * 1024  # 1,000 items with long institution names, read before parsing
_BULK_ALLOW = "POST, OPTIONS"


class BulkEdge(VerifyEdge):
    """``POST /api/v1/verify/bulk``: up to 1,000 verifications for a platform key (docs/contract.md,
    "Bulk verification"). The key's quota (items) and every item's Bloom probe travel in one Redis
    exchange; the possible hits are confirmed with one statement; every item is logged, flagged
    with the platform. The public per-client verify budget does not apply."""

    PATH = "/api/v1/verify/bulk"

    def __init__(self, *, services, quota: PlatformQuota, json_logs: bool = False) -> None:
        self.services = services
        self.quota = quota
        self.json_logs = json_logs
        self.counts = services.metrics.requests
        self.refusals = services.metrics.refusals
        self.verdicts = services.metrics.verdicts

    def __call__(self, environ, start_response):
        status, body = self.respond(environ, start_response)
        self.counts[(self.PATH, status)] += 1
        if status == 429:
            self.refusals[self.PATH] += 1
        return body

    def respond(self, environ, start_response) -> tuple[int, list[bytes]]:
        if self.json_logs:
            request_id.set(new_request_id(environ.get("HTTP_X_REQUEST_ID")))
        method = environ.get("REQUEST_METHOD", "GET")
        origin = environ.get("HTTP_ORIGIN")
        if method == "OPTIONS":  # a preflight carries no key: an origin some live key registered
            try:
                preflight = cors.bulk_preflight(origin, self.services.platforms.origin_registered)
            except Exception:  # noqa: BLE001 - the database is down: no CORS grant, never a trace
                log.exception("preflight of POST /api/v1/verify/bulk")
                preflight = cors.bulk_headers(origin, ())
            return 200, self._send(start_response, method, 200, b"", [("Allow", _BULK_ALLOW), *preflight])
        if method != "POST":
            return 405, self._send(start_response, method, 405, self._error(405),
                                   [("Allow", _BULK_ALLOW), *cors.bulk_headers(origin, ())])
        platform = None
        try:
            platform = self.authenticate(environ)
            with collection_paused():
                status, body, headers = self.verify_many(environ, platform)
        except Exception:  # never a trace: log it, answer the contract's JSON
            log.exception("unhandled error on POST /api/v1/verify/bulk")
            status, body, headers = 500, self._error(500), []
        # the answer is readable by a page only of an origin registered on this key (portal/cors.py)
        allowed = platform.origins if platform is not None else ()
        return status, self._send(start_response, method, status, body,
                                  [*headers, *cors.bulk_headers(origin, allowed)])

    def authenticate(self, environ):
        """The platform of the request's ``Authorization: Bearer`` key, or None."""
        scheme, _, key = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        return self.services.platforms.authenticate(key.strip()) if scheme.lower() == "bearer" else None

    def verify_many(self, environ, platform) -> tuple[int, bytes, list[tuple[str, str]]]:
        services = self.services
        services.ensure_background()
        if platform is None:
            return 401, self._error_body("unauthorized", "a valid platform key is required: Authorization: Bearer "
                                         "<key> (unknown, revoked or expired keys are refused)"), \
                [("WWW-Authenticate", "Bearer")]
        items, problem = read_bulk_body(environ)
        if problem is not None:
            return problem
        client = environ.get("REMOTE_ADDR") or "unknown"
        prepared: list = []  # a Query, or the item's error JSON
        institutions: list[str | None] = []
        for item in items:
            institution = item.get("institution")
            institution = clean_text(institution, 500) or None if institution is not None else None
            institutions.append(institution)
            number = item.get("number")
            document = item.get("sha256")  # validated with the body (read_bulk_body)
            try:
                if not isinstance(number, str):
                    raise InvalidValue("type", "the item's 'number' is required and must be a string")
                if not number.strip():
                    raise InvalidValue("empty", "the item's 'number' is empty")
                prepared.append(services.verifier.prepare(
                    number, institution, None if document is None else normalize_document_sha256(document)))
            except InvalidValue as exc:
                prepared.append({"number": number, "error": {"code": "invalid_number", "message": str(exc)}})
        queries = [p for p in prepared if not isinstance(p, dict)]
        decision, maybes = self.take_and_probe(platform, len(items), [q.number for q in queries])
        if not decision.allowed:
            return self._refused(decision)
        try:
            verdicts = services.verifier.answer_many(queries, maybes)
        except Unavailable as exc:
            return 503, self._error_body("unavailable", str(exc)), decision.headers()
        checked_at = verdicts[0].checked_at if verdicts else services.verifier.now()
        answers = iter(to_json_many(verdicts))
        results = [entry if isinstance(entry, dict) else next(answers) for entry in prepared]
        asked = [institution for entry, institution in zip(prepared, institutions) if not isinstance(entry, dict)]
        services.query_log.record_many(at=checked_at, client_address=client, platform_id=platform.id, entries=[
            (v.number, text, v.institution.id if v.institution else None, v.status) for v, text in zip(verdicts, asked)])
        for verdict in verdicts:
            self.verdicts[verdict.status] += 1
        body = orjson.dumps({"results": results, "checked_at": iso_local(checked_at)})
        return 200, body, decision.headers()

    def take_and_probe(self, platform, items: int, numbers: list[str]) -> tuple[Decision, list[bool | None]]:
        """The one Redis exchange of a bulk request: the quota's command and the Bloom probes of
        every number (a command per touched shard) in one write (local shards: the probes are
        answered at once, in one pass)."""
        probes = self.services.bloom.probe_many(numbers)
        commands = self.quota.commands(platform, items)
        if not probes.commands and not commands:
            return self.quota.take_on_host(platform, items), probes.results
        try:
            replies = self.services.hot_redis.exchange([*commands, *probes.commands])
        except RedisError as exc:
            decision = self.quota.failed(platform, items, exc) if commands else self.quota.take_on_host(platform, items)
            return decision, probes.failed(exc) if probes.commands else probes.results
        decision = self.quota.decide(platform, items, replies[:len(commands)])
        return decision, probes.answer(replies[len(commands):]) if probes.commands else probes.results


@contextmanager
def collection_paused():
    """Python's cyclic garbage collector paused for a bulk answer. Its thousand items make some
    30,000 containers (parsed items, verdicts, result dicts) that all live until the answer is
    encoded, so the collector, triggered every 700 allocations, would walk them again and again,
    and every few requests the whole heap of the app as well — 40 % of the request's CPU
    (bench/bulk.py). They hold no reference cycles and are freed by reference counting when the
    request's frame ends; collection resumes after it (the next allocation finds the little that
    survived). Left as it is when something else has paused it already."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def named_registrations(verdict) -> list[tuple[str, int, str]]:
    """(number, institution id, USCC) of each registration an answer names: the registrant of a
    found or withdrawn number, each candidate of an ambiguous one — never the registrant of a
    mismatch, whom the answer does not name."""
    if verdict.status in ("found", "withdrawn") and verdict.institution is not None:
        return [(verdict.number, verdict.institution.id, verdict.institution.uscc)]
    if verdict.status == "ambiguous":
        return [(verdict.number, c.id, c.uscc) for c in verdict.candidates]
    return []


def read_bulk_body(environ):
    """The items of a bulk request, or (None, the refusal): the body is bounded before it is parsed."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BULK_BYTES:
        return None, _bulk_refusal(413, "payload_too_large", f"the body is over {MAX_BULK_BYTES} bytes")
    stream = environ.get("wsgi.input")
    raw = stream.read(min(length, MAX_BULK_BYTES + 1) if length else MAX_BULK_BYTES + 1) if stream else b""
    if len(raw) > MAX_BULK_BYTES:
        return None, _bulk_refusal(413, "payload_too_large", f"the body is over {MAX_BULK_BYTES} bytes")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, _bulk_refusal(400, "invalid_request", 'the body is not JSON: {"items": [{"number": …}, …]}')
    items = payload.get("items") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None, _bulk_refusal(400, "invalid_request",
                                   'the body must be {"items": [{"number": "…", "institution": "…"}, …]}')
    if len(items) > MAX_BULK_ITEMS:
        return None, _bulk_refusal(413, "payload_too_large", f"at most {MAX_BULK_ITEMS} items per request")
    if not all(isinstance(item.get("institution"), str | None) for item in items):
        return None, _bulk_refusal(400, "invalid_request", "an item's 'institution' must be a string")
    fingerprints = [item["sha256"] for item in items if item.get("sha256") is not None]
    if not all(isinstance(f, str) and DOCUMENT_SHA256.fullmatch(f) for f in fingerprints):
        return None, _bulk_refusal(400, "invalid_request",
                                   "an item's 'sha256' must be the document's SHA-256: 64 hexadecimal digits")
    return items, None


def _bulk_refusal(status: int, code: str, message: str):
    return status, VerifyEdge._error_body(code, message), []


def _requote(error: UnicodeDecodeError) -> tuple[str, int]:
    """Percent-escapes that are not UTF-8 stay as they were sent (``%F0``), as Werkzeug keeps them."""
    return quote(error.object[error.start:error.end], safe=""), error.end


codecs.register_error("registry.url_requote", _requote)


def query_args(query_string: str) -> dict[str, str]:
    """The query's arguments, the first value of each name (as ``request.args.get`` answers).

    A WSGI server hands the query string over as bytes decoded as Latin-1 (PEP 3333); clients
    that send Chinese unescaped send UTF-8, so it is re-read as UTF-8 first, as Werkzeug does."""
    if not query_string.isascii():
        query_string = query_string.encode("latin-1", "replace").decode("utf-8", "replace")
    elif "%" not in query_string and "+" not in query_string and "&" not in query_string:
        # one plain argument (``number=…``, most verifications): what parse_qsl gives, 4 µs sooner
        name, has_value, value = query_string.partition("=")
        return {name: value} if name or has_value else {}
    args: dict[str, str] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True, errors="registry.url_requote"):
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
