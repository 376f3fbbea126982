"""The verify edge (portal/edge.py): /api/v1/verify in front of Flask, with the contract's answers."""
import pytest

from portal import create_app
from portal.security import HEADERS


@pytest.fixture
def app(tmp_path):
    from registry.infra.migrate import upgrade

    app = create_app({"INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "t", "DATABASE_URL": "", "REDIS_URL": "",
                      "BACKGROUND_INTERVAL": 0, "RATELIMIT_VERIFY": "3/minute"})
    upgrade(app.extensions["registry"].engine)
    yield app
    app.extensions["registry"].close()


def test_no_flask_on_the_verify_path(app):
    seen = []
    app.before_request(lambda: seen.append("before"))
    app.after_request(lambda response: (seen.append("after"), response)[1])
    response = app.test_client().get("/api/v1/verify?number=NOPE-1")
    assert response.status_code == 200 and response.get_json()["status"] == "not_found"
    assert seen == []  # neither hook ran: the edge answered before Flask
    app.test_client().get("/healthz")
    assert seen == ["before", "after"]


def test_a_json_answer_carries_each_header_once_and_in_full(app):
    response = app.test_client().get("/api/v1/verify?number=A-1")
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names)), names
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert response.headers["Cache-Control"] == "no-store"
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers.keys())
    for name, value in HEADERS.items():
        assert response.headers[name] == value


def test_edge_and_flask_answers_carry_the_same_security_headers(app):
    client = app.test_client()
    edge, flask = client.get("/api/v1/verify?number=NOPE-1"), client.get("/healthz")
    for name in HEADERS:
        assert edge.headers[name] == flask.headers[name]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_refused_as_json(app, method):
    response = app.test_client().open("/api/v1/verify?number=A-1", method=method)
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "invalid_request"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_head_and_options(app):
    client = app.test_client()
    head = client.head("/api/v1/verify?number=A-1")
    assert head.status_code == 200 and head.get_data() == b"" and int(head.headers["Content-Length"]) > 0
    assert client.options("/api/v1/verify").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/verify/", "/api/v1/verify/extra", "/api/v1/verifyx"])
def test_paths_below_or_beside_the_edge_are_not_found(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_an_unexpected_error_is_the_contracts_json_not_a_trace(app, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(app.extensions["registry"].verifier, "answer", broken)
    response = app.test_client().get("/api/v1/verify?number=A-1")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "error"
    assert "secret detail" not in response.get_data(as_text=True)


def test_api_and_pages_share_one_verify_budget(app):
    client = app.test_client()
    assert client.get("/api/v1/verify?number=B-1").headers["X-RateLimit-Remaining"] == "2"
    assert client.get("/verify?number=B-1").headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/v/91110000MA01ABCD1X/B-1").headers["X-RateLimit-Remaining"] == "0"
    refused = client.get("/api/v1/verify?number=B-1")
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limited"
    assert client.get("/verify?number=B-1").status_code == 429


def test_a_malformed_number_counts_on_the_budget_too(app):
    client = app.test_client()
    for remaining in ("2", "1", "0"):
        response = client.get("/api/v1/verify?number=%E2%98%83")
        assert response.status_code == 400 and response.headers["X-RateLimit-Remaining"] == remaining
    assert client.get("/api/v1/verify?number=%E2%98%83").status_code == 429


def test_behind_a_trusted_proxy_the_edge_sees_the_clients_own_address(tmp_path):
    from registry.infra.migrate import upgrade

    app = create_app({"INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "t", "BACKGROUND_INTERVAL": 0,
                      "RATELIMIT_VERIFY": "1/minute", "TRUSTED_PROXIES": 1})
    upgrade(app.extensions["registry"].engine)
    try:
        client = app.test_client()
        first = {"X-Forwarded-For": "203.0.113.7"}
        assert client.get("/api/v1/verify?number=P-1", headers=first).status_code == 200
        assert client.get("/api/v1/verify?number=P-1", headers=first).status_code == 429
        other = client.get("/api/v1/verify?number=P-1", headers={"X-Forwarded-For": "203.0.113.8"})
        assert other.status_code == 200  # another client behind the same proxy has its own budget
    finally:
        app.extensions["registry"].close()


@pytest.mark.parametrize("header", [("X-Note", "a\r\nSet-Cookie: stolen=1"), ("X-Note", "a\nb"), ("X\r\nY", "v"),
                                    ("X-Note", "nul\0")])
def test_a_json_response_refuses_a_header_that_would_split_the_response(header):
    from portal.jsonio import json_response

    with pytest.raises(ValueError):
        json_response({}, headers=[header])


def test_a_query_sent_as_raw_utf8_reads_as_werkzeug_reads_it(app):
    """curl sends Chinese unescaped: the server passes those bytes on decoded as Latin-1 (PEP 3333)."""
    from urllib.parse import quote

    raw = "number=（2020）沪检字第0123号&institution=上海".encode().decode("latin-1")
    escaped = "number=" + quote("（2020）沪检字第0123号") + "&institution=" + quote("上海")
    client = app.test_client()
    answers = [client.get("/api/v1/verify", environ_overrides={"QUERY_STRING": q}).get_json() for q in (raw, escaped)]
    assert answers[0]["number"] == answers[1]["number"] == "(2020)沪检字第0123号"
    assert answers[0]["status"] == answers[1]["status"] == "not_found"


QUERY_STRINGS = ["", "=", "number", "number=", "number=A-1", "number=A-1&number=B-2", "number=a=b", "&number=X",
                 "number=%E6%A3%80-1", "number=A+1", "institution=%20lab&number=X", "number=X&institution=",
                 "a;b=c", "number=\u00e6\u00a3\u0080"]


@pytest.mark.parametrize("query", QUERY_STRINGS)
def test_query_args_are_the_first_values_werkzeug_reads(query):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from portal.edge import query_args

    environ = EnvironBuilder().get_environ()
    environ["QUERY_STRING"] = query
    werkzeug_args = Request(environ).args
    assert query_args(query) == {name: werkzeug_args.get(name) for name in werkzeug_args}


def test_query_args_agree_with_werkzeug_on_any_ascii_query():
    from hypothesis import given, settings, strategies as st
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from portal.edge import query_args

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="ab=&%+;2F0", max_size=12))
    def agree(query):
        environ = EnvironBuilder().get_environ()
        environ["QUERY_STRING"] = query
        werkzeug_args = Request(environ).args
        assert query_args(query) == {name: werkzeug_args.get(name) for name in werkzeug_args}

    agree()
