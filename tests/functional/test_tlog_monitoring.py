"""Monitoring the transparency log as CT domain owners do: an institution follows every entry
under its USCC in its portal (new entries are alerts until reviewed) and with its API token
(``GET /api/v1/log/mine``); the regulator console shows the log's size, newest checkpoint and
whether the consistency chain holds. Both stacks."""
from __future__ import annotations

import re

from sqlalchemy import update

from registry.accounts.tokens import TokenService
from registry.tlog.models import Tile
from tests.builders import make_institution, register
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    csrf_token, fixed_clock, login, make_account, portal_app, preg, signed_in)


def test_the_api_lists_the_token_holders_entries_only(portal_app, preg):
    with preg.sessions() as s:
        lab = make_institution(s)
        other = make_institution(s)
    register(preg, lab, ["MINE-1", "MINE-2"], source="api")
    register(preg, other, ["THEIRS-1"])
    preg.registration.withdraw(institution_id=lab.id, items=[(1, "MINE-1", "作废")], actor="rogue", source="api")
    preg.tlog.integrate()
    _, token = TokenService(sessions=preg.sessions, clock=preg.clock).create(institution_id=lab.id, name="lims",
                                                                            created_by="t")
    client = portal_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    body = client.get("/api/v1/log/mine", headers=headers).get_json()
    assert body["tree_size"] == 4 and body["next"] is None
    assert [(e["action"], e["number"]) for e in body["entries"]] == [
        ("register", n) for n in sorted(["MINE-1", "MINE-2"], key=lambda n: [e["number"] for e in body["entries"]].index(n))
    ] + [("withdraw", "MINE-1")]
    withdraw = body["entries"][-1]
    assert withdraw["by"] == "rogue" and withdraw["source"] == "api" and len(withdraw["salt"]) == 24
    assert "THEIRS-1" not in str(body)
    later = client.get("/api/v1/log/mine", query_string={"since": withdraw["leaf_index"]}, headers=headers).get_json()
    assert [e["leaf_index"] for e in later["entries"]] == [withdraw["leaf_index"]]
    assert client.get("/api/v1/log/mine?since=-1", headers=headers).status_code == 400
    assert client.get("/api/v1/log/mine?since=abc", headers=headers).get_json()["error"]["code"] == "invalid_request"
    assert client.get("/api/v1/log/mine").status_code == 401


def test_the_portal_shows_new_entries_as_alerts_until_reviewed(portal_app, preg):
    client, lab = signed_in(portal_app, preg)
    register(preg, lab, ["ALERT-1", "ALERT-2"])
    preg.tlog.integrate()
    page = client.get("/institution/log").get_data(as_text=True)
    assert "ALERT-1" in page and "ALERT-2" in page and 'id="log-alerts"' in page
    assert len(re.findall(r'<tr class="alert">', page)) == 2
    token = csrf_token(client, "/institution/log")
    assert client.post("/institution/log/seen", data={"csrf_token": token, "upto": "2"}).status_code == 303
    page = client.get("/institution/log").get_data(as_text=True)
    assert 'id="log-alerts"' not in page and '<tr class="alert">' not in page
    # a change made later under its name — by anyone — is an alert again
    preg.registration.withdraw(institution_id=lab.id, items=[(1, "ALERT-2", "?")], actor="someone", source="api")
    preg.tlog.integrate()
    page = client.get("/institution/log").get_data(as_text=True)
    assert len(re.findall(r'<tr class="alert">', page)) == 1 and "someone" in page
    assert client.post("/institution/log/seen", data={"upto": "3"}).status_code == 400  # no CSRF token


def test_the_regulator_sees_size_checkpoint_and_chain(portal_app, preg):
    with preg.sessions() as s:
        lab = make_institution(s)
    account = make_account(preg, "regulator", authority="11")
    client = portal_app.test_client()
    assert login(client, account.username).status_code == 302
    register(preg, lab, [f"REG-{i}" for i in range(10)])
    preg.tlog.integrate()
    register(preg, lab, ["REG-X"])
    page = client.get("/regulator/log").get_data(as_text=True)
    assert re.search(r"<dd class=\"mono\">10</dd>", page) and "registry.localhost/tlog\n10\n" in page
    assert "完好" in page and "已断裂" not in page
    with preg.sessions() as s:  # the stored tree rewritten under the checkpoint
        s.execute(update(Tile).where(Tile.level == 0, Tile.index == 0).values(hashes=bytes(32 * 10)))
        s.commit()
    page = client.get("/regulator/log").get_data(as_text=True)
    assert "已断裂" in page
