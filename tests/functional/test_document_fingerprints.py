"""Document fingerprints (issue 16): an institution registers the SHA-256 of the issued report file
with its number — a ``文件摘要`` / ``sha256`` column in number files (CSV, XLSX), a field of the
registration API — and ``/api/v1/verify?…&sha256=`` (and each bulk item) answers ``document``:
``match``, ``mismatch`` or ``none_registered``. The log's commitment includes the fingerprint:
``tools/tlog_verify.py`` and ``tlog verify`` check it, and a stored fingerprint changed afterwards
breaks the log at its registration. Both stacks."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from registry.accounts.tokens import TokenService
from registry.infra.settings import ROOT
from registry.registration.models import Batch, ReportNumber
from registry.tlog.models import LogEntry
from tests.builders import make_institution, register
from tests.importers.file_builders import xlsx_bytes

spec = importlib.util.spec_from_file_location("tlog_verify", ROOT / "tools" / "tlog_verify.py")
tlog_verify = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tlog_verify)

REPORT = b"%PDF-1.7 the issued report, as the institution sent it\n"
GENUINE = hashlib.sha256(REPORT).hexdigest()
ALTERED = hashlib.sha256(REPORT.replace(b"issued", b"altered")).hexdigest()
OTHER = hashlib.sha256(b"another report").hexdigest()
VERIFY_KEYS = {"number", "status", "institution", "institution_resolved", "quarter", "registered_at", "withdrawn_at",
               "candidates", "pending_since", "pending_until", "checked_at"}


def fingerprints(reg, *numbers: str) -> dict[str, str | None]:
    with reg.sessions() as s:
        return dict(s.execute(select(ReportNumber.number, ReportNumber.sha256)
                              .where(ReportNumber.number.in_(numbers))).all())


@pytest.fixture
def documented(runner, reg, tmp_path):
    """Numbers imported through the CLI from a CSV with a 文件摘要 column: one with the genuine
    report's fingerprint (given in capitals: stored in lowercase), one without, and rows whose
    fingerprint is malformed, given to a range, or contradicts an earlier row's — each rejected."""
    with reg.sessions() as s:
        lab = make_institution(s, name="上海市产品质量检验所")
        other = make_institution(s, name="广州市环境监测有限公司")
    csv = tmp_path / "q3.csv"
    csv.write_text("报告编号,文件摘要\n"
                   f"DOC-1,{GENUINE.upper()}\n"
                   "DOC-2,\n"
                   f"DOC-3,{GENUINE[:-1]}\n"
                   f"DOC-4~DOC-6,{GENUINE}\n"
                   f"DOC-7,{OTHER}\n"
                   f"DOC-7,{ALTERED}\n", encoding="utf-8")
    result = runner.invoke(args=["import-numbers", str(csv), "--institution", lab.uscc, "--quarter", "2026Q3"])
    assert result.exit_code == 1, result.output  # rows were rejected; the others registered
    assert "registered 3," in result.output and "rejected 3" in result.output, result.output
    for line, message in ((4, "64 hexadecimal digits"), (5, "not to a range"), (7, "a different document fingerprint")):
        assert f"q3.csv:line {line}: " in result.output and message in result.output, result.output
    register(reg, other, ["DOC-1"])  # the same number registered by another institution, no fingerprint
    reg.tlog.integrate()
    return lab, other


def test_the_cli_import_stores_fingerprints_and_rejects_bad_ones(reg, documented):
    lab, _ = documented
    with reg.sessions() as s:
        stored = dict(s.execute(select(ReportNumber.number, ReportNumber.sha256)
                                .where(ReportNumber.institution_id == lab.id)).all())
    assert stored == {"DOC-1": GENUINE, "DOC-2": None, "DOC-7": OTHER}


def test_an_xlsx_file_with_a_sha256_column(runner, reg, tmp_path):
    with reg.sessions() as s:
        lab = make_institution(s)
    path = tmp_path / "q3.xlsx"
    path.write_bytes(xlsx_bytes([["序号", "Report No.", "SHA-256"], [1, "X-1", GENUINE], [2, "X-2", ""],
                                 [3, "X-3", "not a digest"]]))
    result = runner.invoke(args=["import-numbers", str(path), "--institution", lab.uscc, "--quarter", "2026Q3"])
    assert result.exit_code == 1 and "q3.xlsx:Sheet1!C4: 'not a digest'" in result.output, result.output
    assert fingerprints(reg, "X-1", "X-2", "X-3") == {"X-1": GENUINE, "X-2": None}


def test_verify_compares_the_document(client, documented):
    lab, other = documented

    def verify(**params):
        return client.get("/api/v1/verify", query_string=params)

    plain = verify(number="DOC-1", institution=lab.uscc).get_json()
    assert set(plain) == VERIFY_KEYS  # no sha256 asked: no document key
    cases = [
        (dict(number="DOC-1", institution=lab.uscc, sha256=GENUINE), "found", "match"),
        (dict(number="DOC-1", institution=lab.uscc, sha256=GENUINE.upper()), "found", "match"),
        (dict(number="DOC-1", institution=lab.uscc, sha256=ALTERED), "found", "mismatch"),
        (dict(number="DOC-2", institution=lab.uscc, sha256=GENUINE), "found", "none_registered"),
        (dict(number="DOC-1", institution=other.uscc, sha256=GENUINE), "found", "none_registered"),
        (dict(number="DOC-7", institution=other.uscc, sha256=OTHER), "mismatch", "none_registered"),
        (dict(number="NEVER-1", sha256=GENUINE), "not_found", "none_registered"),
        (dict(number="DOC-1", sha256=GENUINE), "ambiguous", "match"),
        (dict(number="DOC-1", sha256=ALTERED), "ambiguous", "mismatch"),
    ]
    for params, status, document in cases:
        body = verify(**params).get_json()
        assert (body["status"], body["document"]) == (status, document), params
        assert set(body) == VERIFY_KEYS | {"document"}
    for bad in ("", "xyz", GENUINE[:-1], GENUINE + "0", "g" * 64):
        response = verify(number="DOC-1", sha256=bad)
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["code"] == "invalid_request"
    # a withdrawn number's document still matches the registration it was
    client.application.extensions["registry"].registration.withdraw(
        institution_id=lab.id, items=[(1, "DOC-1", "作废")])
    body = verify(number="DOC-1", institution=lab.uscc, sha256=GENUINE).get_json()
    assert (body["status"], body["document"]) == ("withdrawn", "match")


def test_bulk_items_answer_document(client, reg, documented):
    lab, _ = documented
    key = reg.platforms.create(name="某招标平台", per_minute=1000, per_day=10_000, days=30)[1]
    items = [{"number": "DOC-1", "institution": lab.uscc, "sha256": GENUINE},
             {"number": "DOC-1", "institution": lab.uscc, "sha256": ALTERED.upper()},
             {"number": "DOC-2", "institution": lab.uscc, "sha256": GENUINE},
             {"number": "DOC-1", "institution": lab.uscc},
             {"number": "NEVER-2", "sha256": GENUINE}]
    response = client.post("/api/v1/verify/bulk", json={"items": items}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert [r.get("document") for r in results] == ["match", "mismatch", "none_registered", None, "none_registered"]
    assert "document" not in results[3]
    bad = client.post("/api/v1/verify/bulk", json={"items": [{"number": "DOC-1", "sha256": "12"}]},
                      headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_request"


def test_the_api_registers_numbers_with_fingerprints(client, reg):
    with reg.sessions() as s:
        lab = make_institution(s)
    _, token = TokenService(sessions=reg.sessions, clock=reg.clock).create(institution_id=lab.id, name="lims",
                                                                          created_by="t")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"quarter": "2026Q3", "numbers": ["API-1", {"number": "api-2", "sha256": GENUINE.upper()},
                                             {"number": "API-3", "sha256": "zz"}, {"number": "API-4"},
                                             {"number": "API-5", "sha256": OTHER},
                                             {"number": "API-5", "sha256": ALTERED}]}
    response = client.post("/api/v1/numbers", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["accepted"] == 4 and answer["rejected"] == 2
    assert [(p["index"], p["code"]) for p in answer["problems"]] == [(2, "bad_sha256"), (5, "sha256_conflict")]
    assert fingerprints(reg, "API-1", "API-2", "API-3", "API-4", "API-5") == {
        "API-1": None, "API-2": GENUINE, "API-4": None, "API-5": OTHER}
    # the registration's fingerprint is for good: the number sent again with another one changes nothing
    again = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": [{"number": "API-2", "sha256": OTHER}]},
                        headers=headers).get_json()
    assert again["accepted"] == 0 and again["duplicates"] == 1
    assert fingerprints(reg, "API-2") == {"API-2": GENUINE}
    with reg.sessions() as s:  # the day's batch counts the two registered with a fingerprint
        assert s.scalar(select(Batch.documents).where(Batch.source == "api")) == 2
    reg.tlog.integrate()
    mine = client.get("/api/v1/log/mine", headers=headers).get_json()["entries"]
    assert {e["number"]: e["sha256"] for e in mine} == {"API-1": None, "API-2": GENUINE, "API-4": None,
                                                        "API-5": OTHER}


def test_the_commitment_includes_the_fingerprint(runner, client, reg, documented, tmp_path):
    """proof=1 names the fingerprint; tools/tlog_verify.py recomputes the commitment with it (and
    fails without it); the withdrawal's entry commits to it too; tlog verify holds."""
    lab, _ = documented
    reg.registration.withdraw(institution_id=lab.id, items=[(1, "DOC-1", "作废")])
    key = client.get("/log/key").get_data(as_text=True).split("\n")[0]
    pending = client.get("/api/v1/verify", query_string={"number": "DOC-1", "institution": lab.uscc,
                                                         "proof": 1}).get_json()
    assert [e.get("pending", False) for e in pending["log"]["entries"]] == [False, True]
    assert {e["sha256"] for e in pending["log"]["entries"]} == {GENUINE}
    reg.tlog.integrate()
    body = client.get("/api/v1/verify", query_string={"number": "DOC-1", "institution": lab.uscc, "proof": 1,
                                                      "sha256": GENUINE}).get_json()
    assert body["document"] == "match"
    entries = body["log"]["entries"]
    assert [json.loads(e["entry"])["action"] for e in entries] == ["register", "withdraw"]
    assert all(e["sha256"] == GENUINE and "inclusion" in e for e in entries)
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps(body), encoding="utf-8")
    assert tlog_verify.main(["--key", key, "--answer", str(answer)]) == 0
    for forged in (None, ALTERED):  # the fingerprint left out, or another document's
        changed = json.loads(json.dumps(body))
        changed["log"]["entries"][0]["sha256"] = forged
        answer.write_text(json.dumps(changed), encoding="utf-8")
        assert tlog_verify.main(["--key", key, "--answer", str(answer)]) == 1
    result = runner.invoke(args=["tlog", "verify"])
    assert result.exit_code == 0 and "log intact" in result.output, result.output


def test_a_changed_fingerprint_breaks_the_log(runner, reg, documented):
    lab, _ = documented
    with reg.sessions() as s:
        index = s.scalar(select(LogEntry.leaf_index).where(LogEntry.number == "DOC-2",
                                                           LogEntry.institution_id == lab.id))
        s.execute(update(ReportNumber).where(ReportNumber.number == "DOC-2", ReportNumber.institution_id == lab.id)
                  .values(sha256=ALTERED))
        s.commit()
    result = runner.invoke(args=["tlog", "verify"])
    assert result.exit_code == 1
    assert f"log BROKEN at index {index}: entry {index}'s commitment does not match" in result.output


def test_the_verdict_page_checks_the_document(client, reg, documented):
    """The page's form sends only the fingerprint (the file input has no name); the answer shows
    match / mismatch / none registered in the page's language; a mismatch offers the complaint
    form prefilled; a malformed fingerprint is the search page with the reason; every check counts
    on the verify budget."""
    lab, _ = documented
    page = client.get("/verify", query_string={"number": "DOC-1", "institution": lab.uscc})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "X-RateLimit-Remaining" in page.headers
    assert 'id="document-form"' in html and 'name="sha256"' in html and "document_check.js" in html
    assert re.search(r'<input type="file" id="document-file">', html)  # no name: the file is never sent
    assert "文件不会离开您的设备" in html and 'id="document-result"' not in html
    for lang, sha, state, words in (
            ("zh", GENUINE, "match", "文件一致"), ("en", GENUINE.upper(), "match", "The file matches"),
            ("zh", ALTERED, "mismatch", "文件不一致"), ("en", ALTERED, "mismatch", "The file does not match")):
        html = client.get("/verify", query_string={"number": "DOC-1", "institution": lab.uscc, "sha256": sha,
                                                   "lang": lang}).get_data(as_text=True)
        assert f'data-document="{state}"' in html and words in html, (lang, state)
        assert f'<span class="mono">{sha.lower()}</span>' in html  # the fingerprint as compared
    link = re.search(r'id="document-complaint" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "document=mismatch" in link and f"sha256={ALTERED}" in link and "number=DOC-1" in link
    form = client.get(link).get_data(as_text=True)
    assert 'value="DOC-1"' in form and f'value="{lab.uscc}"' in form
    assert re.search(r'<input checked id="category-\d" name="category" required type="radio" value="altered">', form)
    assert "did not match the fingerprint the issuing institution registered" in form and ALTERED in form
    html = client.get(f"/v/{lab.uscc}/DOC-2", query_string={"sha256": GENUINE, "lang": "en"}).get_data(as_text=True)
    assert 'data-document="none_registered"' in html and "No document fingerprint registered" in html
    bad = client.get("/verify", query_string={"number": "DOC-1", "sha256": "abc", "lang": "zh"})
    assert bad.status_code == 400 and "64 位十六进制数字" in bad.get_data(as_text=True)
    # a number the page names no registration for offers no document check
    assert 'id="document-form"' not in client.get("/verify", query_string={"number": "NEVER-9"}).get_data(as_text=True)


def test_the_verdict_page_lets_the_browser_fetch_its_log_evidence(client, reg, documented, monkeypatch):
    """The page costs its one verification and nothing more (its evidence is fetched afterwards
    with the page's signed ticket, no second verification); a ticket not signed here, or too
    old, is refused."""
    import portal.public

    lab, _ = documented
    html = client.get("/verify", query_string={"number": "DOC-1", "institution": lab.uscc}).get_data(as_text=True)
    assert 'id="log-check"' in html and "tlog_check.js" in html and 'data-key-url="/log/key"' in html
    assert f'data-usccs="{lab.uscc}"' in html and 'href="/docs/api#transparency"' in html
    url = re.search(r'data-evidence-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert url.startswith("/verify/log?ticket=")
    lookups = reg.verifier.lookups
    response = client.get(url)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert reg.verifier.lookups == lookups  # no second verification
    evidence = response.get_json()
    assert evidence["checkpoint"].startswith("registry.localhost/tlog\n")
    assert [(e["number"], e["uscc"], e["sha256"]) for e in evidence["entries"]] == [("DOC-1", lab.uscc, GENUINE)]
    forged = "/verify/log?ticket=" + URLSafeTimedSerializer("not-this-site", salt="verdict-log-evidence").dumps(
        ["DOC-1", [[lab.id, lab.uscc]]])
    for bad in ("/verify/log", "/verify/log?ticket=abc", forged):
        refused = client.get(bad)
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "invalid_request", bad
    monkeypatch.setattr(portal.public, "LOG_TICKET_SECONDS", -1)
    assert client.get(url).status_code == 400  # expired: the page asks to be reloaded
    # not found: no registration named, no log section, no ticket
    assert 'id="log-check"' not in client.get("/verify", query_string={"number": "NEVER-9"}).get_data(as_text=True)


def test_the_receipt_counts_fingerprints_and_warns_of_those_not_registered(runner, client, reg, documented, tmp_path):
    """The command's summary and the batch count the numbers registered with a fingerprint, on the
    direct path (a file of new numbers) and the careful one (a file that clashes); a fingerprint
    given to a number registered before is kept out and said so: the command's warning, the upload
    API's ``documents_kept``."""
    lab, _ = documented
    assert "with a document fingerprint" not in runner.invoke(args=["import-numbers", str(_csv(tmp_path, "n.csv", [
        ("NEW-0", "")])), "--institution", lab.uscc, "--quarter", "2026Q3"]).output  # a file without any says nothing
    fresh = _csv(tmp_path, "fresh.csv", [("NEW-1", GENUINE), ("NEW-2", ""), ("NEW-3", OTHER)])
    result = runner.invoke(args=["import-numbers", str(fresh), "--institution", lab.uscc, "--quarter", "2026Q3"])
    assert result.exit_code == 0 and "registered 3," in result.output, result.output
    assert "with a document fingerprint 2" in result.output and "warning" not in result.output
    # DOC-1 (registered with GENUINE) and DOC-2 (registered without) given fingerprints now; NEW-4 is new
    clash = _csv(tmp_path, "clash.csv", [("DOC-1", ALTERED), ("DOC-2", ALTERED), ("NEW-4", ALTERED), ("NEW-4", "")])
    result = runner.invoke(args=["import-numbers", str(clash), "--institution", lab.uscc, "--quarter", "2026Q3"])
    assert result.exit_code == 0 and "registered 1," in result.output, result.output
    assert "with a document fingerprint 1" in result.output
    assert "warning: 2 document fingerprint(s) (SHA-256) not registered" in result.output
    assert "2 个文件摘要（SHA-256）未登记" in result.output
    with reg.sessions() as s:  # DOC-1 is the other institution's too (without a fingerprint)
        stored = dict(s.execute(select(ReportNumber.number, ReportNumber.sha256).where(
            ReportNumber.institution_id == lab.id, ReportNumber.number.in_(["DOC-1", "DOC-2", "NEW-4"]))).all())
    assert stored == {"DOC-1": GENUINE, "DOC-2": None, "NEW-4": ALTERED}
    with reg.sessions() as s:
        counts = s.execute(select(Batch.file_name, Batch.documents).where(Batch.institution_id == lab.id)).all()
    assert {"q3.csv": 2, "n.csv": 0, "fresh.csv": 2, "clash.csv": 1}.items() <= dict(counts).items()

    _, token = TokenService(sessions=reg.sessions, clock=reg.clock).create(institution_id=lab.id, name="lims",
                                                                          created_by="t")
    body = f"报告编号,文件摘要\nDOC-7,{GENUINE}\nNEW-5,{GENUINE}\n".encode()
    response = client.post("/api/v1/batches", data={"quarter": "2026Q3", "file": (io.BytesIO(body), "api.csv")},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["accepted"] == 1
    assert [(w["code"], w["message"][:2]) for w in answer["warnings"]] == [("documents_kept", "1 ")]


def _csv(tmp_path, name: str, rows: list[tuple[str, str]]):
    path = tmp_path / name
    path.write_text("报告编号,文件摘要\n" + "".join(f"{number},{digest}\n" for number, digest in rows), encoding="utf-8")
    return path
