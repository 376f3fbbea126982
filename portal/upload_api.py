"""The upload API for lab systems (``/api/v1``): files, continuous registration, withdrawals
and their undoing (restorations), and the institution's own entries in the transparency log.

Authenticated by a per-institution token (``Authorization: Bearer rnr_…``), exempt from CSRF
(no cookies are read), rate-limited per token. Errors use the contract's JSON codes.
"""
from __future__ import annotations

import hashlib

from flask import Blueprint, current_app, g, request

from importers.errors import FileRefused
from registry.numbers.normalize import InvalidValue, clean_text, normalize_document_sha256, normalize_number
from registry.numbers.quarters import Quarter
from registry.registration.service import RegistrationRefused
from workflows.numbers import NoValidNumber, register_number_file
from workflows.problems import problem_json
from workflows.withdrawals import read_withdrawal_file

from .errors import api_error
from .extensions import limiter, registry
from .jsonio import json_response

bp = Blueprint("upload_api", __name__, url_prefix="/api/v1")

MAX_NUMBERS_PER_CALL = 10_000
MAX_PROBLEMS_SHOWN = 100
DEFAULT_LIMIT = "120/minute;20000/day"


def authenticated_token():
    """The live token of this request (cached on ``g``), or None."""
    if "api_token" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        check = registry().tokens.check(value.strip()) if scheme.lower() == "bearer" else None
        g.api_token = check.token if check is not None else None
        g.api_token_refusal = check.reason if check is not None else None
    return g.api_token


def token_key() -> str:
    """Rate-limit key: the token's id (anonymous callers share one key per address)."""
    token = authenticated_token()
    return f"token:{token.id}" if token is not None else f"anon:{request.remote_addr}"


def upload_limit() -> str:
    return current_app.config.get("RATELIMIT_UPLOAD_API", DEFAULT_LIMIT)


@bp.before_request
def _require_token():
    if authenticated_token() is None:
        if g.api_token_refusal == "expired":
            return api_error(401, "unauthorized", "the API token has expired: create a new one under "
                             "/institution/tokens (API 令牌已过期，请在“API 令牌”页面创建新令牌)")
        return api_error(401, "unauthorized", "a valid API token is required: Authorization: Bearer <token>")
    return None


def _refused(exc: RegistrationRefused):
    return api_error(400, "invalid_request", exc.message_en, reason=exc.code)


def _quarter(text):
    try:
        return Quarter.parse(text if isinstance(text, str) else "")
    except ValueError:
        return None


@bp.post("/batches")
@limiter.limit(upload_limit, key_func=token_key)
def create_batch():
    """A whole file for one quarter → the batch's receipt (the same file again: the same receipt)."""
    token = g.api_token
    quarter = _quarter(request.form.get("quarter"))
    storage = request.files.get("file")
    if quarter is None:
        return api_error(400, "invalid_request", "form field 'quarter' must be a quarter like 2020Q4")
    if storage is None or not storage.filename:
        return api_error(400, "invalid_request", "multipart field 'file' is required")
    reg = registry()
    try:
        reg.registration.check_quarter(quarter)
        done = register_number_file(
            reg.registration, storage.stream, file_name=storage.filename, institution_id=token.institution_id,
            quarter=quarter, source="api", created_by=f"token:{token.name}"[:100],
            max_bytes=current_app.config["MAX_UPLOAD_BYTES"], refuse_empty=True, sandbox=reg.sandbox)
    except NoValidNumber as exc:
        return api_error(422, "invalid_file", "the file holds no valid report number",
                         problems=[problem_json(p) for p in exc.problems[:MAX_PROBLEMS_SHOWN]],
                         rejected=len(exc.problems))
    except FileRefused as exc:
        return api_error(422, "invalid_file", exc.message_en, reason=exc.code, problems=[])
    except RegistrationRefused as exc:
        return _refused(exc)
    if done.receipt.repeated:
        return json_response({**done.receipt.to_json(), "problems": []}, 200)
    body = {**done.receipt.to_json(), "problems": [problem_json(p) for p in done.problems[:MAX_PROBLEMS_SHOWN]],
            "warnings": [{"code": w.code, "message": w.message_en} for w in done.warnings]}
    return json_response(body, 201)


@bp.post("/numbers")
@limiter.limit(upload_limit, key_func=token_key)
def register_numbers():
    """Continuous registration: ``{"quarter", "numbers": [...]}`` (≤ 10,000), gathered into one
    batch per day and quarter; idempotent through the ``Idempotency-Key`` header. An item may be
    ``{"number", "sha256"}``: the number with its report file's SHA-256 (docs/contract.md)."""
    token = g.api_token
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 200:
        return api_error(400, "invalid_request", "Idempotency-Key is longer than 200 characters")
    raw = request.get_data(cache=True)
    fingerprint = hashlib.sha256(raw).hexdigest()
    idempotency = registry().idempotency
    if key:
        stored = idempotency.find(token_id=token.id, key=key)
        if stored is not None:
            return _replay(stored, fingerprint)
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return api_error(400, "invalid_request", "the body must be a JSON object {\"quarter\", \"numbers\"}")
    quarter = _quarter(payload.get("quarter"))
    numbers = payload.get("numbers")
    if quarter is None:
        return api_error(400, "invalid_request", "'quarter' must be a quarter like 2020Q4")
    if not isinstance(numbers, list) or not numbers:
        return api_error(400, "invalid_request", "'numbers' must be a non-empty list of report numbers")
    if len(numbers) > MAX_NUMBERS_PER_CALL:
        return api_error(413, "payload_too_large", f"at most {MAX_NUMBERS_PER_CALL} numbers per call")
    valid, problems, documents = [], [], {}
    for index, value in enumerate(numbers):
        # a number, or {"number", "sha256"}: the number with its document fingerprint
        number, document = (value.get("number"), value.get("sha256")) if isinstance(value, dict) else (value, None)
        try:
            normal = normalize_number(number)
            if document is not None:
                document = normalize_document_sha256(document)
                if documents.setdefault(normal, document) != document:
                    raise InvalidValue("sha256_conflict", "an earlier item gave this number a different 'sha256'")
            valid.append(normal)
        except InvalidValue as exc:
            problems.append({"index": index, "value": number if isinstance(number, str) else repr(number),
                             "code": exc.code, "reason": str(exc)})
    if not valid:
        return api_error(400, "invalid_number", "no valid report number in 'numbers'",
                         problems=problems[:MAX_PROBLEMS_SHOWN], rejected=len(problems))
    reg = registry()
    try:
        receipt, counts = reg.registration.register_continuous(
            institution_id=token.institution_id, quarter=quarter, numbers=valid,
            created_by=f"token:{token.name}"[:100], documents=documents)
    except RegistrationRefused as exc:
        return _refused(exc)
    reg.registration.add_rejected(batch_id=receipt.batch_id, rejected=len(problems))
    body = {
        "batch": {**receipt.to_json(), "rejected": receipt.rejected + len(problems)},
        "accepted": counts.accepted,
        "duplicates": counts.duplicates,
        "rejected": len(problems),
        "problems": problems[:MAX_PROBLEMS_SHOWN],
    }
    if key:
        stored = idempotency.save(token_id=token.id, key=key, request_sha256=fingerprint, status=200, body=body)
        return _replay(stored, fingerprint) if stored.body != body else json_response(body, 200)
    return json_response(body, 200)


def _replay(stored, fingerprint: str):
    if stored.request_sha256 != fingerprint:
        return api_error(400, "invalid_request", "this Idempotency-Key was used with a different request body")
    response = json_response(stored.body, stored.status)
    response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.post("/withdrawals")
@limiter.limit(upload_limit, key_func=token_key)
def withdraw():
    """Withdraw numbers of voided reports: JSON ``{"numbers": [...], "reason"}`` or
    ``{"items": [{"number", "reason"}]}``, or a multipart withdrawal file."""
    return _change(restore=False)


@bp.post("/restorations")
@limiter.limit(upload_limit, key_func=token_key)
def restore():
    """Restore numbers withdrawn by mistake: the same request as a withdrawal, the reason
    optional → ``{"restored", "not_withdrawn", "rejected", "problems"}``."""
    return _change(restore=True)


@bp.get("/log/mine")
@limiter.limit(upload_limit, key_func=token_key)
def log_mine():
    """The token's institution's entries in the transparency log from leaf ``since`` on (at most
    1,000), with numbers, salts and who made each change: a monitor sees at once a number
    registered or withdrawn under its name that it did not make (docs/transparency.md)."""
    raw = request.args.get("since", "0")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return api_error(400, "invalid_request", "the query parameter 'since' must be a leaf index (a whole number ≥ 0)")
    entries, following, size = registry().tlog.mine(g.api_token.institution_id, since=int(raw))
    return json_response({"entries": [e.to_json() for e in entries], "next": following, "tree_size": size})


def _change(*, restore: bool):
    token = g.api_token
    problems: list[dict] = []
    storage = request.files.get("file")
    if storage is not None and storage.filename:
        try:
            items, rejected = read_withdrawal_file(storage.stream, storage.filename, restore=restore,
                                                   max_bytes=current_app.config["MAX_UPLOAD_BYTES"],
                                                   sandbox=registry().sandbox)
        except FileRefused as exc:
            return api_error(422, "invalid_file", exc.message_en, reason=exc.code, problems=[])
        problems = [problem_json(p) for p in rejected]
    else:
        items, problems, error = _withdrawal_items(request.get_json(silent=True), restore=restore)
        if error is not None:
            return error
    if len(items) > 1_000_000:
        return api_error(413, "payload_too_large", "too many numbers")
    registration, actor = registry().registration, f"token:{token.name}"[:100]
    if restore:
        result = registration.restore(institution_id=token.institution_id, items=items, actor=actor, source="api")
    else:
        result = registration.withdraw(institution_id=token.institution_id, items=items, actor=actor, source="api")
    problems += [{"line": line, "value": number, "code": "not_registered",
                  "reason": "this institution has not registered this number"}
                 for line, number in result.not_registered]
    counts = ({"restored": result.restored, "not_withdrawn": result.not_withdrawn} if restore else
              {"withdrawn": result.withdrawn, "already_withdrawn": result.already_withdrawn})
    return json_response({**counts, "rejected": len(problems), "problems": problems[:MAX_PROBLEMS_SHOWN]}, 200)


def _withdrawal_items(payload, *, restore: bool = False):
    """(items, problems, error response) from a JSON withdrawal (or restore) request."""
    if not isinstance(payload, dict):
        return [], [], api_error(400, "invalid_request", "send a JSON object or a multipart 'file'")
    if "items" in payload:
        entries = payload["items"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return [], [], api_error(400, "invalid_request", "'items' must be a list of {\"number\", \"reason\"}")
        pairs = [(e.get("number"), e.get("reason")) for e in entries]
    else:
        numbers = payload.get("numbers")
        if not isinstance(numbers, list):
            return [], [], api_error(400, "invalid_request", "'numbers' must be a list of report numbers")
        pairs = [(n, payload.get("reason")) for n in numbers]
    if not pairs:
        return [], [], api_error(400, "invalid_request", f"no number to {'restore' if restore else 'withdraw'}")
    if len(pairs) > MAX_NUMBERS_PER_CALL:
        return [], [], api_error(413, "payload_too_large", f"at most {MAX_NUMBERS_PER_CALL} numbers per call")
    items, problems = [], []
    for index, (number, reason) in enumerate(pairs):
        reason = " ".join(clean_text(reason).split()) if isinstance(reason, str) else ""
        if not reason and not restore:
            problems.append({"index": index, "value": number, "code": "reason_missing",
                             "reason": "every withdrawal needs a reason"})
            continue
        try:
            items.append((None, normalize_number(number), reason[:500]))
        except InvalidValue as exc:
            problems.append({"index": index, "value": number if isinstance(number, str) else repr(number),
                             "code": exc.code, "reason": str(exc)})
    return items, problems, None
