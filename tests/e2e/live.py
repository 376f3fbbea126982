"""The app served on a free loopback port by werkzeug in a thread, and pages that record their
problems, for the browser tests."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import make_server


@contextmanager
def live_server(app, name: str = "e2e-server") -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL."""
    httpd = make_server("127.0.0.1", 0, _read_whole(app), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(5)
        httpd.server_close()


def _read_whole(app):
    """``app`` with each response read whole and its iterable closed before the server writes it.
    werkzeug's development server skips ``close()`` when the browser drops a connection while the
    server drains the request (a favicon fetch abandoned by a navigation): the static file it
    served then stayed open until the collector warned, in whichever test was running then."""

    def served(environ, start_response):
        body = app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return served


PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1366, "height": 900}


def new_page(browser, viewport, lang="zh"):
    """A page in its own context (a phone's when ``viewport`` is PHONE) whose ``problems`` collects
    script errors, page errors and failed subresources. A wrong tracking code answers 400/404 on
    purpose and Chromium logs any 4xx document as a console error, so failed loads are judged by
    their responses: only a failed subresource is a problem."""
    context = browser.new_context(viewport=viewport, locale="zh-CN" if lang == "zh" else "en-US",
                                  **({"device_scale_factor": 2, "is_mobile": True, "has_touch": True}
                                     if viewport == PHONE else {}))
    page = context.new_page()
    page.problems = []
    page.on("console", lambda msg: page.problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: page.problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    return context, page
