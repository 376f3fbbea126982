"""Every /institution/, /admin/ and upload-API route, enumerated from the URL map (a new route
cannot escape), for each kind of caller: anonymous, another institution, a regulator, the owner,
an admin. Only the right ones succeed: anonymous → login redirect (HTML) or 401 (API); a wrong
role → 403; another institution → 404 for the owner's records."""
from __future__ import annotations

import io
import re

import pytest

from registry.accounts.tokens import TokenService
from registry.complaints.holidays import HolidayService
from tests.builders import make_institution, register
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    CSV, confirm, csrf_token, login, make_account, portal_app, preg, upload_file)

# Blueprints anyone may use; every other blueprint must be guarded (guard_blueprint).
PUBLIC_BLUEPRINTS = {"public", "api", "health", "complaints", "auth", "site", "log"}
TOKEN_BLUEPRINTS = {"upload_api"}
# Guarded by the caller's network or a bearer token (METRICS_ALLOW, METRICS_TOKEN), not by a role.
NETWORK_BLUEPRINTS = {"metrics"}
PLATFORM_BLUEPRINTS = {"snapshot_api"}  # a platform key (rnrp_…), never a browser session


def _guarded_rules(app):
    rules = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".", 1)[0] if "." in rule.endpoint else None
        if rule.rule.startswith(("/institution", "/admin")) or blueprint in TOKEN_BLUEPRINTS | {"institution", "admin"}:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                rules.append((rule, method, blueprint))
    return rules


def test_every_non_public_blueprint_is_guarded(portal_app):
    for name, blueprint in portal_app.blueprints.items():
        if name in PUBLIC_BLUEPRINTS | TOKEN_BLUEPRINTS | NETWORK_BLUEPRINTS | PLATFORM_BLUEPRINTS:
            continue
        assert getattr(blueprint, "guarded_roles", None), f"blueprint {name!r} has no guard_blueprint(...)"
    assert portal_app.blueprints["institution"].guarded_roles == {"institution"}
    assert portal_app.blueprints["admin"].guarded_roles == {"admin"}


@pytest.fixture
def world(portal_app, preg):
    """An owner with an upload, a batch, tokens; another institution; a regulator; an admin."""
    with preg.sessions() as session:
        owner_inst = make_institution(session)
        other_inst = make_institution(session)
    users = {
        "owner": make_account(preg, institution=owner_inst),
        "other": make_account(preg, institution=other_inst),
        "regulator": make_account(preg, "regulator", authority="11"),
        "admin": make_account(preg, "admin"),
    }
    spare = make_account(preg, "regulator", authority="11")
    clients = {"anonymous": portal_app.test_client()}
    for role, account in users.items():
        clients[role] = portal_app.test_client()
        assert login(clients[role], account.username).status_code == 302
    owner = clients["owner"]
    batch_url = confirm(owner, upload_file(owner, CSV).headers["Location"]).headers["Location"]
    upload_url = upload_file(owner, CSV.replace(b"0004", b"0009")).headers["Location"]
    tokens = TokenService(sessions=preg.sessions, clock=preg.clock)
    _, owner_token = tokens.create(institution_id=owner_inst.id, name="lims", created_by="t")
    spare_token, _ = tokens.create(institution_id=owner_inst.id, name="spare", created_by="t")
    holiday = HolidayService(sessions=preg.sessions).add(day=__import__("datetime").date(2027, 2, 6), name="春节")
    platform, platform_key = preg.platforms.create(name="某平台", per_minute=10, per_day=100)
    preg.statistics.open_year(2026, actor="t")
    filing = preg.statistics.filing_for(owner_inst.id, 2026, actor="t").filing
    from tests.functional.test_statistics_reports import make_pdf

    attachment = preg.statistics.add_attachment(owner_inst.id, 2026, "integrity_statement", io.BytesIO(make_pdf()),
                                                "a.pdf", actor="t")
    with preg.sessions() as session:
        from tests.regulator_builders import officer

        proposer = officer(session, "11", "matrix-proposer")
    sanction = preg.sanctions.propose(proposer, owner_inst.id, measure="warning", ground="late_filing", reason="t")
    ids = {
        "batch_id": int(batch_url.rsplit("/", 1)[1]),
        "upload_id": int(upload_url.rsplit("/", 1)[1]),
        "token_id": spare_token.id,
        "account_id": spare.id,
        "holiday_id": holiday.id,
        "platform_id": platform.id,
        "year": 2026,
        "filing_id": filing.id,
        "attachment_id": attachment["id"],
        "platform_key": platform_key,  # not a URL argument: the credential of the platform-key routes
        "sanction_id": sanction.id,
    }
    return clients, ids, owner_token


def _call(client, rule, method, ids, headers=None):
    url = rule.build({k: v for k, v in ids.items() if k in rule.arguments}, append_unknown=False)[1]
    if rule.rule.startswith("/api/"):
        kwargs = {"json": {"quarter": "2026Q3", "numbers": ["M-1"], "reason": "作废"}}
        if rule.endpoint.endswith("create_batch"):
            kwargs = {"data": {"quarter": "2026Q3", "file": (io.BytesIO(b"M-2\n"), "m.txt")},
                      "content_type": "multipart/form-data"}
        return client.open(url, method=method, headers=headers or {}, **kwargs)
    if method == "POST":
        return client.post(url, data={"csrf_token": csrf_token(client, "/login"), "quarter": "2026Q3",
                                      "name": "x", "number": "WT2026-0001", "reason": "r"})
    return client.get(url + ("?number=A-1" if "qr." in url else ""))


def _succeeded(response) -> bool:
    response.close()
    if response.status_code in (401, 403, 404):
        return False
    return not (response.status_code in (302, 303) and "/login" in response.headers.get("Location", ""))


def test_platform_key_routes_need_a_platform_key(portal_app, world, preg):
    """/api/v1/snapshot…: no browser session (any role) and no institution token is a platform key."""
    clients, ids, owner_token = world
    key = ids["platform_key"]
    rules = [r for r in portal_app.url_map.iter_rules() if r.endpoint.split(".")[0] in PLATFORM_BLUEPRINTS]
    assert {r.rule for r in rules} == {"/api/v1/snapshot", "/api/v1/snapshot/deltas"}
    assert preg.snapshots.tick(force=True) is not None
    since = preg.snapshots.snapshot().manifest["delta"]
    for rule in rules:
        url = rule.rule + (f"?since={since}" if "deltas" in rule.rule else "")
        for actor, client in clients.items():
            response = client.get(url)
            assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized", (url, actor)
        for header in (f"Bearer {owner_token}", "Bearer rnrp_forged", key):  # a token, a guess, no scheme
            assert clients["anonymous"].get(url, headers={"Authorization": header}).status_code == 401, (url, header)
        response = clients["anonymous"].get(url, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200 and response.mimetype == "application/vnd.rnr.snapshot", url


def test_access_matrix(portal_app, world):
    clients, ids, owner_token = world
    rules = _guarded_rules(portal_app)
    assert {r.endpoint.split(".")[0] for r, _, _ in rules} == {"institution", "admin", "upload_api"}
    checked = 0
    for rule, method, blueprint in rules:
        where = f"{method} {rule.rule}"
        if blueprint == "upload_api":
            for actor in ("anonymous", "other", "regulator", "owner", "admin"):
                response = _call(clients[actor], rule, method, ids)  # a browser session is no credential
                assert response.status_code == 401, (where, actor)
                assert response.get_json()["error"]["code"] == "unauthorized"
            response = _call(clients["anonymous"], rule, method, ids, headers={"Authorization": f"Bearer {owner_token}"})
            assert _succeeded(response) and response.status_code < 500, (where, response.status_code)
            checked += 1
            continue
        anonymous = _call(clients["anonymous"], rule, method, ids)
        assert anonymous.status_code == 302 and "/login?next=" in anonymous.headers["Location"], where
        allowed = "institution" if blueprint == "institution" else "admin"
        for actor in ("other", "regulator", "owner", "admin"):
            response = _call(clients[actor], rule, method, ids)
            role = "institution" if actor in ("owner", "other") else actor
            response.close()
            if role != allowed:
                assert response.status_code == 403, (where, actor, response.status_code)
            elif actor == "other" and set(rule.arguments) & {"batch_id", "upload_id", "token_id", "filing_id", "sanction_id"}:
                assert response.status_code == 404, (where, actor, response.status_code)
            else:
                assert _succeeded(response) and response.status_code < 500, (where, actor, response.status_code)
        checked += 1
    assert checked == len(rules) >= 25


def test_login_redirect_keeps_the_page_and_refuses_open_redirects(portal_app, preg):
    with preg.sessions() as session:
        inst = make_institution(session)
    account = make_account(preg, institution=inst)
    client = portal_app.test_client()
    response = client.get("/institution/tokens")
    assert response.headers["Location"].endswith("/login?next=/institution/tokens")
    token = csrf_token(client, "/login")
    ok = client.post("/login?next=/institution/tokens", data={"csrf_token": token, "username": account.username,
                                                               "password": "correct horse battery"})
    assert ok.headers["Location"] == "/institution/tokens"
    client = portal_app.test_client()
    token = csrf_token(client, "/login")
    evil = client.post("/login?next=//evil.example/", data={"csrf_token": token, "username": account.username,
                                                             "password": "correct horse battery"})
    assert evil.headers["Location"] == "/institution/"
    assert re.match(r"^/", evil.headers["Location"])


def test_every_route_of_the_site_blueprint_is_open_to_everyone(portal_app, world):
    """/privacy and whatever else says who runs the site: the same page for every caller."""
    clients, _ids, _token = world
    rules = [r for r in portal_app.url_map.iter_rules() if r.endpoint.startswith("site.")]
    assert {r.rule for r in rules} >= {"/privacy", "/docs/api"}
    for rule in rules:
        for actor, client in clients.items():
            response = client.get(rule.rule)
            response.close()
            assert response.status_code == 200, (rule.rule, actor)


# The public API routes (docs/contract.md; described in docs/openapi.json): no login, no token.
PUBLIC_API_ROUTES = {"/api/v1/openapi.json", "/api/v1/institutions/suggest?q=x", "/api/v1/verify?number=A-1",
                     "/api/v1/verify?number=A-1&proof=1", "/healthz", "/readyz", "/log/checkpoint", "/log/key",
                     "/log/proof?index=0&size=1", "/log/consistency?from=1&to=1", "/log/entries?start=0&end=1",
                     "/api/v1/snapshot/key"}


def test_the_public_api_routes_are_open_to_everyone(portal_app, world):
    clients, _ids, _token = world
    api_rules = {r.rule for r in portal_app.url_map.iter_rules()
                 if r.rule.startswith("/api/") and r.endpoint.split(".")[0] not in TOKEN_BLUEPRINTS | PLATFORM_BLUEPRINTS}
    assert api_rules == {"/api/v1/openapi.json", "/api/v1/institutions/suggest", "/api/v1/snapshot/key"}, api_rules
    log_rules = {r.rule for r in portal_app.url_map.iter_rules() if r.endpoint.startswith("log.")}
    assert log_rules == {"/log/checkpoint", "/log/key", "/log/proof", "/log/consistency", "/log/entries"}, log_rules
    portal_app.extensions["registry"].tlog.integrate()
    for path in PUBLIC_API_ROUTES:
        for actor, client in clients.items():
            response = client.get(path)
            response.close()
            assert response.status_code == 200, (path, actor)


def test_the_verdict_pages_log_evidence_is_open_to_everyone_with_the_pages_ticket(portal_app, world, preg):
    """/verify/log: the transparency log's evidence of a verdict page (its browser check), for any
    caller holding the page's signed ticket — and for nobody without one."""
    clients, _ids, _token = world
    with preg.sessions() as session:
        lab = make_institution(session)
    register(preg, lab, ["LOG-ACCESS-1"])
    preg.tlog.integrate()
    html = clients["anonymous"].get(f"/verify?number=LOG-ACCESS-1&institution={lab.uscc}").get_data(as_text=True)
    url = re.search(r'data-evidence-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    for actor, client in clients.items():
        response = client.get(url)
        assert response.status_code == 200 and response.get_json()["entries"], actor
        refused = client.get("/verify/log")
        assert refused.status_code == 400, actor


def test_every_route_of_the_metrics_blueprint_is_refused_to_outside_addresses(portal_app, world):
    """Signed in or not, any role: from outside METRICS_ALLOW, /metrics answers 403 and shows nothing."""
    clients, _ids, _token = world
    rules = [r for r in portal_app.url_map.iter_rules() if r.endpoint.startswith("metrics.")]
    assert {r.rule for r in rules} == {"/metrics"}
    for rule in rules:
        for actor, client in clients.items():
            outside = client.get(rule.rule, environ_base={"REMOTE_ADDR": "198.51.100.7"})
            assert outside.status_code == 403 and b"rnr_" not in outside.data, (rule.rule, actor)
            inside = client.get(rule.rule)  # the test client's 127.0.0.1 is in the default METRICS_ALLOW
            assert inside.status_code == 200 and b"rnr_http_requests_total" in inside.data, (rule.rule, actor)


def test_account_pages_open_to_every_signed_in_role_and_nobody_else(portal_app, preg):
    """/account/ (e-mail, two-factor set-up, sessions, notification choices): each role its own
    account; anonymous → the login page ("sign out everywhere", which ends the caller's session,
    last)."""
    with preg.sessions() as session:
        inst = make_institution(session)
    users = {"institution": make_account(preg, institution=inst), "regulator": make_account(preg, "regulator", authority="11"),
             "admin": make_account(preg, "admin")}
    rules = [(rule, method) for rule in portal_app.url_map.iter_rules() if rule.endpoint.startswith("account.")
             for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    rules.sort(key=lambda pair: pair[0].rule == "/account/sessions/end")
    clients = {}
    for role, account in users.items():
        clients[role] = portal_app.test_client()
        assert login(clients[role], account.username).status_code == 302
    assert {r.rule for r, _ in rules} == {"/account/", "/account/sessions/end", "/account/2fa", "/account/2fa/recovery",
                                          "/account/2fa/disable", "/account/notifications"}, rules  # a new one: list it
    for rule, method in rules:
        anonymous = portal_app.test_client()
        response = anonymous.open(rule.rule, method=method, data={"csrf_token": csrf_token(anonymous, "/login")})
        assert response.status_code == 302 and "/login?next=" in response.headers["Location"], (method, rule.rule)
        for role, client in clients.items():
            token = csrf_token(client, "/account/")
            response = client.open(rule.rule, method=method, data={"csrf_token": token, "email": "a@b.example.cn",
                                                                   "code": "123456", "password": "x"})
            signed_out = rule.rule == "/account/sessions/end" and response.headers.get("Location", "").endswith("/login")
            assert (_succeeded(response) or signed_out) and response.status_code < 500, \
                (method, rule.rule, role, response.status_code)
            if method == "POST":  # without the CSRF token: refused, nothing changed
                assert client.post(rule.rule).status_code == 400 or rule.rule == "/account/sessions/end", rule.rule


def test_two_factor_is_required_of_regulators_and_admins_when_require_2fa_is_on(stack, mailbox):
    from portal import create_app

    app = create_app({**stack, "REQUIRE_2FA": True})
    reg = app.extensions["registry"]
    try:
        with reg.sessions() as session:
            inst = make_institution(session)
        for role, kwargs, home in (("regulator", {"authority": "11"}, "/regulator/"), ("admin", {}, "/admin/")):
            account = make_account(reg, role, **kwargs)
            client = app.test_client()
            assert login(client, account.username).status_code == 302
            refused = client.get(home)
            assert refused.status_code == 302 and refused.headers["Location"].endswith("/account/2fa"), role
            assert client.get("/account/2fa").status_code == 200  # where they set it up
            assert client.get("/account/").status_code == 200
        lab = make_account(reg, institution=inst)
        client = app.test_client()
        assert login(client, lab.username).status_code == 302
        assert client.get("/institution/").status_code == 200  # optional for institutions
    finally:
        reg.close()
