"""The lean request cycle of the verify endpoints: known no-op hooks skipped there, kept elsewhere."""
import pytest

from portal import create_app
from portal.hotpath import HOT_ENDPOINTS, NO_OP_ON_HOT_PATH, hook_name


@pytest.fixture
def app(tmp_path):
    from registry.infra.migrate import upgrade

    app = create_app({"INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "t", "DATABASE_URL": "", "REDIS_URL": "",
                      "BACKGROUND_INTERVAL": 0})
    upgrade(app.extensions["registry"].engine)
    yield app
    app.extensions["registry"].close()


def _all_hooks(app):
    return {hook_name(f) for table in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
            for funcs in table.values() for f in funcs}


@pytest.mark.parametrize("url", ["/api/v1/verify?number=A-1", "/verify?number=A-1", "/v/91110000MA01ABCD1X/A-1"])
def test_hot_endpoints_skip_exactly_the_known_no_ops(app, url):
    assert NO_OP_ON_HOT_PATH <= _all_hooks(app)  # a renamed hook upstream would otherwise go unnoticed
    with app.test_request_context(url):
        from flask import request

        assert request.endpoint in HOT_ENDPOINTS
        hooks = app.hot_hooks(request.endpoint)
    kept = {hook_name(f) for f in (*hooks.before, *hooks.after, *hooks.teardown)}
    assert not kept & NO_OP_ON_HOT_PATH
    assert {"portal.security._secure", "portal.extensions.RegistryExtension.init_app.<locals>._start_background"} <= kept
    assert hooks.skipped == sorted(NO_OP_ON_HOT_PATH)


def test_other_endpoints_run_every_hook(app):
    with app.test_request_context("/complaints/new"):
        assert app.hot_hooks("complaints.new") is None
        assert app.hot_hooks(None) is None


def test_hot_and_cold_responses_carry_the_same_security_headers(app):
    client = app.test_client()
    hot = client.get("/api/v1/verify?number=NOPE-1")
    cold = client.get("/healthz")
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert hot.headers[name] == cold.headers[name]
    assert "X-RateLimit-Limit" in hot.headers


def test_after_this_request_still_runs_on_the_hot_path(app):
    from flask import after_this_request

    seen = []

    @app.before_request
    def _mark():  # registered late on purpose: the hot lists are computed at the first request
        @after_this_request
        def _after(response):
            seen.append(response.status_code)
            return response

    app.test_client().get("/api/v1/verify?number=NOPE-2")
    assert seen == [200]


def test_a_json_answer_carries_each_header_once_and_in_full(app):
    from portal.security import HEADERS

    response = app.test_client().get("/api/v1/verify?number=A-1")
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names)), names
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert response.headers["Cache-Control"] == "no-store"
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers.keys())
    for name, value in HEADERS.items():
        assert response.headers[name] == value


@pytest.mark.parametrize("header", [("X-Note", "a\r\nSet-Cookie: stolen=1"), ("X-Note", "a\nb"), ("X\r\nY", "v"),
                                    ("X-Note", "nul\0")])
def test_a_json_answer_refuses_a_header_that_would_split_the_response(header):
    from portal.jsonio import json_response

    with pytest.raises(ValueError):
        json_response({}, headers=[header])


def test_a_json_answer_with_a_location_gets_werkzeugs_treatment(app):
    from portal.jsonio import json_response

    with app.test_request_context("/"):
        response = json_response({"ok": True}, 201, headers=[("Location", "/api/v1/批次/1")])
        headers = response.get_wsgi_headers({"wsgi.url_scheme": "http", "HTTP_HOST": "x", "SERVER_NAME": "x",
                                              "SERVER_PORT": "80", "PATH_INFO": "/", "SCRIPT_NAME": ""})
        assert headers["Location"].isascii()  # made a URI, as werkzeug does for every other response
