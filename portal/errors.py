"""Errors: the contract's JSON on /api/, a friendly page elsewhere, never a trace."""
from __future__ import annotations

import logging

from flask import jsonify, make_response, render_template, request
from flask_babel import lazy_gettext as _l
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    413: "payload_too_large",
    422: "invalid_file",
    429: "rate_limited",
    503: "unavailable",
}

# (the page's text, through the catalogue; the English of the JSON body)
MESSAGES = {
    400: (_l("请求无效。"), "The request is not valid."),
    401: (_l("需要登录或有效的凭证。"), "Authentication is required."),
    403: (_l("您无权访问此页面。"), "You may not access this page."),
    404: (_l("页面不存在。"), "There is no such page."),
    405: (_l("不支持此请求方式。"), "This method is not allowed here."),
    413: (_l("提交的内容过大。"), "The request is too large."),
    422: (_l("文件无法处理。"), "The file cannot be processed."),
    429: (_l("查询过于频繁，请稍后再试。"), "Too many requests: please wait and try again."),
    500: (_l("服务器内部错误，请稍后再试。"), "Something went wrong on our side; please try again later."),
    503: (_l("服务暂时不可用，请稍后再试。"), "The service is temporarily unavailable; please try again later."),
}


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/log/"))


def api_error(status: int, code: str, message: str, **extra):
    body = {"error": {"code": code, "message": message}}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response(status: int, message: str | None = None, *, code: str | None = None, retry_after: int | None = None):
    zh, en = MESSAGES.get(status, MESSAGES[500])
    if wants_json():
        extra = {"retry_after": retry_after} if retry_after is not None else {}
        response = api_error(status, code or CODES.get(status, "error"), message or en, **extra)
    else:
        page = render_template("error.html", status=status, message=message or str(zh), retry_after=retry_after)
        response = make_response(page, status)
        response.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def register_error_handlers(app) -> None:
    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded):
        return error_response(429, retry_after=_retry_after(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        if status == 400 and exc.description and "CSRF" in str(exc.description):
            return error_response(400, str(_l("表单已过期或无效，请刷新页面后重新提交。")) if not wants_json() else "CSRF token missing or invalid")
        return error_response(status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500)


def _retry_after(exc: RateLimitExceeded) -> int:
    import time

    from flask import current_app

    limiter = current_app.extensions.get("limiter")
    try:
        limiter = next(iter(limiter)) if isinstance(limiter, (set, list, tuple)) else limiter
        stats = limiter.current_limit
        if stats is not None:
            return max(1, int(stats.reset_at - time.time()))
    except Exception:  # noqa: BLE001
        pass
    return max(1, int(exc.limit.limit.get_expiry()))
