"""Onboarding on both stacks: an institution asks on the public page with its USCC, a CMA
certificate on record and an address verified by link; its reviewing authority's officer
approves or refuses with a reason (sealed in the admin log); a bureau creates accounts in bulk
from a certificate list. Every message read from a real SMTP server."""
from __future__ import annotations

import io

from registry.accounts.models import AdminLogEntry
from tests.builders import make_institution
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    PASSWORD, csrf_token, login, portal_app, preg)
from tests.mailbox import link_in, text_of

ADDRESS = "it@lab.example.cn"


def lab_with_certificate(preg, **kwargs):
    with preg.sessions() as session:
        inst = make_institution(session, **kwargs)
        number = inst.certificates[0].number
        authority = inst.review_authority.code
        session.expunge(inst)
    preg.refresh()
    return inst, number, authority


def ask(client, **fields):
    token = csrf_token(client, "/onboarding")
    return client.post("/onboarding", data={"csrf_token": token, **fields})


def local(link: str) -> str:
    return link[link.index("/", link.index("//") + 2):]


def test_request_verify_approve_and_the_owner_sets_the_password(portal_app, preg, mailbox):
    inst, certificate, authority = lab_with_certificate(preg)
    other, other_certificate, _ = lab_with_certificate(preg)
    public = portal_app.test_client()
    # a certificate of another institution, a bad USCC, a bad address: refused, nothing stored
    for fields in ({"uscc": inst.uscc, "certificate": other_certificate}, {"uscc": "123", "certificate": certificate},
                   {"uscc": inst.uscc, "certificate": certificate, "email": "not-an-address"}):
        refused = ask(public, **{"username": "lab-it", "email": ADDRESS, **fields})
        assert refused.status_code == 400, fields
        if fields["certificate"] == other_certificate:
            assert "资质认定证书" in refused.get_data(as_text=True)
    sent = ask(public, uscc=inst.uscc.lower(), certificate=certificate, username="lab-it", email=ADDRESS)
    assert sent.status_code == 200 and 'id="confirmation"' in sent.get_data(as_text=True)
    verify = mailbox.wait_for(ADDRESS)[0]
    assert "请验证账号申请" in verify["Subject"] and inst.name in text_of(verify)
    officer = preg.accounts.create(username="reviewer", password=PASSWORD, role="regulator", authority_code=authority)
    desk = portal_app.test_client()
    assert login(desk, officer.username).status_code == 302
    assert "lab-it" not in desk.get("/regulator/onboarding").get_data(as_text=True)  # not verified yet
    assert public.get(local(link_in(verify, "/onboarding/verify/"))).status_code == 200
    assert public.get(local(link_in(verify, "/onboarding/verify/"))).status_code == 404  # once
    queue = desk.get("/regulator/onboarding").get_data(as_text=True)
    assert "lab-it" in queue and certificate in queue
    request_id = preg.onboarding.pending(authority_id=officer.authority_id, national=False)[0].id
    token = csrf_token(desk, "/regulator/onboarding")
    assert desk.post(f"/regulator/onboarding/{request_id}/approve", data={"csrf_token": token}).status_code == 400
    done = desk.post(f"/regulator/onboarding/{request_id}/approve", data={"csrf_token": token, "reason": "证书有效"})
    assert done.status_code == 303
    ready = mailbox.wait_for(ADDRESS, 2)[1]
    assert "账号已开通" in ready["Subject"] and "Your account is ready" in ready["Subject"]
    owner = portal_app.test_client()
    path = local(link_in(ready, "/account/reset/"))
    reset_token = csrf_token(owner, path)
    assert owner.post(path, data={"csrf_token": reset_token, "new": "our own long secret",
                                  "confirm": "our own long secret"}).status_code == 303
    assert login(owner, "lab-it", "our own long secret").status_code == 302
    assert owner.get("/institution/").status_code == 200
    # refused, with the reason told; both decisions sealed in the admin log
    ask(public, uscc=inst.uscc, certificate=certificate, username="lab-two", email="two@lab.example.cn")
    public.get(local(link_in(mailbox.wait_for("two@lab.example.cn")[0], "/onboarding/verify/")))
    second = preg.onboarding.pending(authority_id=officer.authority_id, national=False)[0].id
    desk.post(f"/regulator/onboarding/{second}/refuse", data={"csrf_token": token, "reason": "非本机构人员"})
    refused = mailbox.wait_for("two@lab.example.cn", 2)[1]
    assert "未获批准" in refused["Subject"] and "非本机构人员" in text_of(refused)
    with preg.sessions() as session:
        actions = [(e.action, e.actor, e.target) for e in session.query(AdminLogEntry).order_by(AdminLogEntry.seq)]
    assert ("onboard_approve", "reviewer", "lab-it") in actions and ("onboard_refuse", "reviewer", "lab-two") in actions
    result = portal_app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


def test_another_authority_cannot_decide_and_bulk_creation_from_a_certificate_list(portal_app, preg, mailbox):
    inst, certificate, authority = lab_with_certificate(preg, province="15")
    far, far_certificate, _ = lab_with_certificate(preg, province="19")
    row, token = preg.onboarding.request(uscc=inst.uscc, certificate=certificate, username="lab-x",
                                         email="x@lab.example.cn")
    preg.onboarding.verify(token)
    stranger = preg.accounts.create(username="gd-officer", password=PASSWORD, role="regulator", authority_code="19")
    desk = portal_app.test_client()
    assert login(desk, stranger.username).status_code == 302
    assert "lab-x" not in desk.get("/regulator/onboarding").get_data(as_text=True)
    token = csrf_token(desk, "/regulator/onboarding")
    assert desk.post(f"/regulator/onboarding/{row.id}/approve",
                     data={"csrf_token": token, "reason": "x"}).status_code == 403
    # the bureau of province 19 creates accounts from its list: its own certificate, not another's
    listing = f"证书编号,电子邮件地址\n{far_certificate},far@lab.example.cn\n{certificate},x2@lab.example.cn\nNOPE,n@x.cn\n"
    page = desk.post("/regulator/onboarding/bulk", data={"csrf_token": token, "file": (io.BytesIO(listing.encode()), "list.csv")},
                     content_type="multipart/form-data")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "已创建 1 个账号，跳过 2 行" in body
    made = mailbox.wait_for("far@lab.example.cn")[0]
    assert f"cma-{far_certificate}".lower() in text_of(made) and "/account/reset/" in text_of(made)
    assert mailbox.to("x2@lab.example.cn") == []
