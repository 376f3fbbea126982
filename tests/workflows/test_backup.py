"""The backup → restore drill on both stacks: a registry with numbers, a withdrawn one, sealed
complaint trails, an admin-log entry, an upload's stored file and a complaint's attachment is
backed up; restored into an empty database, an empty FILES_DIR and an empty Bloom store, every
number answers as before, `audit verify` and `tlog verify` pass, the erasures due are applied again, and the
files are there byte for byte."""
from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from registry.complaints.models import Complaint, ComplaintEvent
from registry.complaints.service import store_attachment
from registry.infra.db import make_engine
from registry.numbers.quarters import Quarter
from tests.builders import make_institution, register
from tests.regulator_builders import make_complaint

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def answers(client, numbers) -> dict:
    out = {}
    for number in numbers:
        body = client.get(f"/api/v1/verify?number={number}").get_json()
        body.pop("checked_at", None)
        out[number] = body
    return out


def empty_target(stack, request, tmp_path):
    """The settings of an empty registry beside the source: a new database, instance and files
    folder (and, on the Redis stack, the same Redis db, flushed: the Bloom store is empty)."""
    instance = tmp_path / "restored"
    target = {**stack, "INSTANCE_DIR": str(instance), "FILES_DIR": str(instance / "files")}
    if stack["STACK"] == "postgres-redis":
        server = request.getfixturevalue("postgres_server_url")
        name = f"rnr_restore_{uuid.uuid4().hex[:8]}"
        admin = make_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop():
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        request.addfinalizer(drop)
        target["DATABASE_URL"] = make_url(server).set(database=name).render_as_string(hide_password=False)
    else:
        target["DATABASE_URL"] = f"sqlite:///{instance / 'registry.db'}"
    return target


@pytest.fixture
def signing_key() -> str:
    from registry.tlog.note import Signer

    return Signer.generate("registry.localhost/tlog").text()


@pytest.fixture
def signed_app(stack, signing_key):
    """The source registry, holding the transparency log's signing key (it integrates the log)."""
    from portal import create_app

    app = create_app({**stack, "TLOG_SIGNING_KEY": signing_key})
    assert app.extensions["registry"].wait_until_trusted()
    yield app
    app.extensions["registry"].close()


def test_backup_and_restore_drill(signed_app, stack, signing_key, request, tmp_path):
    from portal import create_app

    app, reg, client = signed_app, signed_app.extensions["registry"], signed_app.test_client()
    with reg.sessions() as s:
        lab = make_institution(s)
    numbers = [f"BK2026-{i:04d}" for i in range(60)]
    register(reg, lab, numbers)
    reg.registration.withdraw(institution_id=lab.id, items=[(1, numbers[0], "作废")], actor="test")
    upload = reg.uploads.store(io.BytesIO("\n".join(numbers).encode()), file_name="q3.csv", institution_id=lab.id,
                               quarter=Quarter.parse("2026Q3"), uploaded_by="lab")
    attachment = store_attachment(io.BytesIO(PNG), Path(stack["FILES_DIR"]))
    with reg.sessions() as s:
        make_complaint(s, institution=lab, attachment=(attachment.path, attachment.content_type))
        make_complaint(s, number="BK-OTHER")
        # closed four years ago: its contact is due for erasure, which the source has not run yet
        long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=4 * 365)
        old = make_complaint(s, number="BK-OLD", status="concluded", created_at=long_ago)
        s.add(ComplaintEvent(complaint_id=old.id, at=long_ago, kind="concluded", actor="officer", public=True))
        s.commit()
    reg.accounts.create(username="backup-admin-made", password="correct horse battery staple", role="admin",
                        actor="root")  # sealed in the admin log
    asked = numbers + ["BK-ABSENT-1", "BK-ABSENT-2"]
    before = answers(client, asked)
    assert before[numbers[1]]["status"] == "found" and before[numbers[0]]["status"] == "withdrawn"
    reg.tlog.integrate()  # the key holder's periodic chore: the registrations into a signed checkpoint
    runner = app.test_cli_runner()
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    assert runner.invoke(args=["tlog", "verify"]).exit_code == 0

    folder = tmp_path / "backup-1"
    made = runner.invoke(args=["backup", "create", str(folder)])
    assert made.exit_code == 0, made.output
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["numbers"] == 60 and manifest["heads"]["audit"] and manifest["key_ids"]["audit"]
    assert manifest["key_ids"]["tlog"].startswith("registry.localhost/tlog+")  # the public verifier key
    assert "test-audit-key" not in (folder / "manifest.json").read_text()  # ids, never the keys
    assert signing_key.rsplit("+", 1)[1] not in (folder / "manifest.json").read_text()
    again = runner.invoke(args=["backup", "create", str(folder)])
    assert again.exit_code == 2 and "not an empty folder" in again.output

    if stack["STACK"] == "postgres-redis":
        reg.redis.flushdb()  # the Bloom store and the chains' heads are gone with the old Redis
    target_settings = {**empty_target(stack, request, tmp_path), "TLOG_SIGNING_KEY": signing_key}
    target = create_app(target_settings)
    treg = target.extensions["registry"]
    try:
        result = target.test_cli_runner().invoke(args=["backup", "restore", str(folder)])
        assert result.exit_code == 0, result.output
        assert "60 numbers" in result.output and "Bloom index rebuilt" in result.output
        assert treg.bloom.status()["mode"] == "bloom"
        assert answers(target.test_client(), asked) == before
        verified = target.test_cli_runner().invoke(args=["audit", "verify"])
        assert verified.exit_code == 0 and "audit chain intact" in verified.output, verified.output
        logged = target.test_cli_runner().invoke(args=["tlog", "verify"])
        assert logged.exit_code == 0 and "log intact" in logged.output, logged.output
        # the restore re-applied the retention: the old complaint's contact is gone, as a sealed event
        with treg.sessions() as s:
            restored = s.scalar(select(Complaint).where(Complaint.number == "BK-OLD"))
            assert (restored.complainant_name, restored.complainant_contact) == (None, None)
        with reg.sessions() as s:  # (it was in the backup)
            assert s.scalar(select(Complaint.complainant_contact).where(Complaint.number == "BK-OLD"))
        files = Path(target_settings["FILES_DIR"])
        assert (files / attachment.path).read_bytes() == PNG
        assert (files / "uploads" / upload.stored_name).read_bytes() == "\n".join(numbers).encode()
        # a second restore into the now full database is refused, nothing changed
        refused = target.test_cli_runner().invoke(args=["backup", "restore", str(folder)])
        assert refused.exit_code == 2 and "not empty" in refused.output
    finally:
        treg.close()


def test_a_restore_without_the_keys_says_which_are_missing(app, reg, stack, request, tmp_path):
    from portal import create_app

    with reg.sessions() as s:
        make_complaint(s, number="BK-KEYS")
    folder = tmp_path / "backup-keys"
    assert app.test_cli_runner().invoke(args=["backup", "create", str(folder)]).exit_code == 0
    target = create_app({**empty_target(stack, request, tmp_path), "AUDIT_KEY": "some-other-key"})
    try:
        result = target.test_cli_runner().invoke(args=["backup", "restore", str(folder)])
        assert result.exit_code == 1 and "AUDIT_KEYS from escrow" in result.output, result.output
        assert target.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 1
    finally:
        target.extensions["registry"].close()


def test_what_is_not_a_backup_is_refused(app, tmp_path):
    (tmp_path / "nothing").mkdir()
    result = app.test_cli_runner().invoke(args=["backup", "restore", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "is not a backup" in result.output
