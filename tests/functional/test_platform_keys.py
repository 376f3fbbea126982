"""Platform keys issued from the regulator console (SAMR only) and the admin area: shown once,
working at once on bulk verification, revocable, and every issue and revoke sealed in the admin log."""
from __future__ import annotations

import re

from sqlalchemy import select

from registry.accounts.models import AdminLogEntry
from tests.functional.regulator_helpers import csrf, officer_client, rapp, rreg, sign_in  # noqa: F401 - fixtures

BULK = "/api/v1/verify/bulk"


def _issue(client, url, csrf_from=None, **fields):
    data = {"csrf_token": csrf(client, csrf_from or url), "name": "某招标平台", "per_minute": "100", "per_day": "1000",
            "days": "30", **fields}
    return client.post(url, data=data)


def _log(reg) -> list[AdminLogEntry]:
    with reg.sessions() as session:
        return list(session.scalars(select(AdminLogEntry).order_by(AdminLogEntry.seq)))


def test_samr_issues_lists_and_revokes_a_key_sealed_in_the_admin_log(rapp, rreg):
    samr = officer_client(rapp, rreg, "00")
    assert "/regulator/platforms" in samr.get("/regulator/").get_data(as_text=True)  # in SAMR's menu
    refused = _issue(samr, "/regulator/platforms", per_day="0")
    assert refused.status_code == 400 and "配额须为正整数。" in refused.get_data(as_text=True)
    assert not rreg.platforms.list() and not _log(rreg)  # nothing issued, nothing sealed
    page = _issue(samr, "/regulator/platforms", origins="https://shop.example")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    key = re.search(r'<code class="secret">(rnrp_[^<]+)</code>', page.get_data(as_text=True)).group(1)
    api = rapp.test_client()
    answer = api.post(BULK, json={"items": [{"number": "NONE-1"}]}, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.get_json()["results"][0]["status"] == "not_found"
    rreg.query_log.flush()
    listing = samr.get("/regulator/platforms").get_data(as_text=True)
    assert key not in listing  # shown once
    row = listing.split('data-platform="', 1)[1].split("</tr>", 1)[0]
    assert "某招标平台" in row and "100 / 1000" in row and "：1" in row and "100.0%" in row
    [use] = rreg.platforms.list()
    revoked = samr.post(f"/regulator/platforms/{use.key.id}/revoke", data={"csrf_token": csrf(samr, "/regulator/")})
    assert revoked.status_code == 303 and revoked.headers["Location"].endswith("/regulator/platforms")
    assert api.post(BULK, json={"items": [{"number": "NONE-1"}]},
                    headers={"Authorization": f"Bearer {key}"}).status_code == 401
    issue, revoke = _log(rreg)
    assert (issue.action, revoke.action) == ("platform_issue", "platform_revoke")
    assert issue.actor == revoke.actor and issue.actor.endswith("(00)")
    assert issue.target.startswith(use.key.prefix) and "某招标平台" in issue.target
    assert '"per_day": 1000' in issue.detail and "https://shop.example" in issue.detail and key not in issue.detail
    with rreg.sessions() as session:
        assert rreg.admin_log.verify(session).ok
    # revoking again changes nothing and seals nothing more; an unknown key is 404
    assert samr.post(f"/regulator/platforms/{use.key.id}/revoke",
                     data={"csrf_token": csrf(samr, "/regulator/")}).status_code == 303
    assert len(_log(rreg)) == 2
    assert samr.post("/regulator/platforms/999999/revoke", data={"csrf_token": csrf(samr, "/regulator/")}).status_code == 404


def test_a_provincial_officer_cannot_issue_or_revoke(rapp, rreg):
    key, _plain = rreg.platforms.create(name="某电商平台", per_minute=10, per_day=100)
    province = officer_client(rapp, rreg, "15")
    assert "/regulator/platforms" not in province.get("/regulator/").get_data(as_text=True)
    assert province.get("/regulator/platforms").status_code == 403
    assert _issue(province, "/regulator/platforms", csrf_from="/regulator/").status_code == 403
    assert province.post(f"/regulator/platforms/{key.id}/revoke",
                         data={"csrf_token": csrf(province, "/regulator/")}).status_code == 403
    assert [p.key.revoked_at for p in rreg.platforms.list()] == [None] and len(rreg.platforms.list()) == 1
    assert not _log(rreg)


def test_the_admin_path_and_the_cli_seal_too(rapp, rreg):
    admin = sign_in(rapp, rreg, "admin")
    assert _issue(admin, "/admin/platforms").status_code == 200
    [use] = rreg.platforms.list()
    assert admin.post(f"/admin/platforms/{use.key.id}/revoke",
                      data={"csrf_token": csrf(admin, "/admin/")}).status_code == 303
    result = rapp.test_cli_runner().invoke(args=["create-platform-key", "某平台", "--per-minute", "5", "--per-day", "50"])
    assert result.exit_code == 0, result.output
    entries = _log(rreg)
    assert [(e.action, e.actor) for e in entries][-1] == ("platform_issue", "cli")
    assert [e.action for e in entries[:2]] == ["platform_issue", "platform_revoke"]
    assert "签发平台密钥" in admin.get("/admin/log").get_data(as_text=True)
