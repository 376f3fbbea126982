"""Backups and their restore (docs/operations.md, "Backups and restore").

A backup is a folder:

- ``manifest.json`` — when, from which backend and schema revision, how many numbers and sealed
  events it holds, the heads of the sealed chains (the complaint audit chain, the admin log, the
  statistics trail: kept in Redis or under FILES_DIR, outside the database) and the *ids* of the
  keys that sealed them and of the transparency log's signing key — never a key;
- ``database.dump`` (PostgreSQL, ``pg_dump --format=custom``) or ``registry.db`` (SQLite, its
  online backup API: a consistent copy while the registry keeps serving);
- ``files/`` — FILES_DIR: uploads, complaint attachments, pending forms.

The chain heads are read before the database is dumped, so the restored database is never behind
its heads (events after a head are accepted when their seals chain; a head beyond the database
would read as a truncated trail). The Bloom index is not in it: after a restore it is rebuilt
from the database. Restore goes into an empty database only, migrates it to the current schema,
puts the heads and files back, rebuilds the Bloom index and runs the retention chore at once, so
nothing whose time was up comes back with the backup.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from registry.accounts.models import AdminLogEntry
from registry.complaints.models import ComplaintEvent
from registry.registration.models import ReportNumber

if TYPE_CHECKING:
    from .services import Services

FORMAT = 1
MANIFEST = "manifest.json"
PG_DUMP = "database.dump"
SQLITE_COPY = "registry.db"
FILES = "files"


class BackupRefused(Exception):
    """Nothing was changed: the message says why."""


@dataclass
class RestoreReport:
    numbers: int
    events: int
    missing_keys: list[str] = field(default_factory=list)  # key ids the backup names that are not configured
    retention: object = None


def _chains(services: Services) -> dict:
    return {"audit": services.audit_chain, "admin_log": services.admin_log,
            "statistics": getattr(services, "statistics_trail", None)}


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL for pg_dump/pg_restore and its environment: the password goes in PGPASSWORD,
    never on a command line that ``ps`` shows."""
    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _sqlite_path(engine: Engine) -> Path:
    return Path(engine.url.database)


def create(services: Services, path: Path) -> dict:
    """Write a backup into the new folder ``path``; return its manifest."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupRefused(f"{path} exists and is not an empty folder: give a new folder for the backup")
    engine = services.engine
    heads = {}
    for name, chain in _chains(services).items():
        if chain is not None:
            head = chain.head.read()  # before the dump: the database is then never behind its heads
            heads[name] = list(head) if head else None
    path.mkdir(parents=True, exist_ok=True)
    if engine.dialect.name == "postgresql":
        url, env = _libpq(services.settings.database_url)
        done = subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                               f"--file={path / PG_DUMP}", f"--dbname={url}"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            raise BackupRefused(f"pg_dump failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    else:
        with sqlite3.connect(_sqlite_path(engine)) as source, sqlite3.connect(path / SQLITE_COPY) as target:
            source.backup(target)
        source.close()
        target.close()
    files = services.settings.files_dir
    shutil.copytree(files, path / FILES, ignore=shutil.ignore_patterns("*.lock", "*.tmp"), dirs_exist_ok=True)
    with services.sessions() as session:
        numbers = int(session.scalar(select(func.count()).select_from(ReportNumber)) or 0)
        events = int(session.scalar(select(func.count()).select_from(ComplaintEvent)) or 0)
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    signer = getattr(getattr(services, "tlog", None), "signer", None)
    manifest = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "backend": engine.dialect.name,
        "revision": revision,
        "numbers": numbers,
        "complaint_events": events,
        "heads": heads,
        # ids only: the keys themselves are escrowed apart (docs/operations.md, "Keys and escrow")
        "key_ids": {"audit": services.audit_chain.key_ids,
                    "tlog": signer.verifier.text() if signer is not None else None},
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupRefused(f"{path} is not a backup (no readable {MANIFEST}: {exc.__class__.__name__})") from None
    if manifest.get("format") != FORMAT:
        raise BackupRefused(f"{path}: backup format {manifest.get('format')!r} is not one this version reads")
    return manifest


def restore(services: Services, path: Path) -> RestoreReport:
    """Restore the backup at ``path`` into this registry's empty database and FILES_DIR."""
    path = Path(path)
    manifest = read_manifest(path)
    engine = services.engine
    backend = engine.dialect.name
    if manifest["backend"] != backend:
        raise BackupRefused(f"{path} is a {manifest['backend']} backup; DATABASE_URL names a {backend} database")
    if inspect(engine).get_table_names():
        raise BackupRefused("the database is not empty: restore into a new, empty database "
                            "(createdb, or a new SQLite path) and point DATABASE_URL at it")
    engine.dispose()
    if backend == "postgresql":
        url, env = _libpq(services.settings.database_url)
        done = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                               f"--dbname={url}", str(path / PG_DUMP)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BackupRefused(f"pg_restore failed: {done.stderr.strip()[-500:]}")
    else:
        with sqlite3.connect(path / SQLITE_COPY) as source, sqlite3.connect(_sqlite_path(engine)) as target:
            source.backup(target)
        source.close()
        target.close()
    from registry.infra.migrate import upgrade  # Alembic only here: an older backup meets today's schema

    upgrade(engine)
    if (path / FILES).is_dir():
        shutil.copytree(path / FILES, services.settings.files_dir, dirs_exist_ok=True)
    for name, chain in _chains(services).items():
        head = manifest["heads"].get(name)
        if chain is not None and head:
            chain.head.advance(int(head[0]), str(head[1]))
    services.refresh(auto_rebuild=False)
    services.wait_until_trusted(timeout=600)  # the Bloom index, rebuilt from the restored rows
    figures = services.retention.run()  # the erasures due since the backup was taken, again
    with services.sessions() as session:
        numbers = int(session.scalar(select(func.count()).select_from(ReportNumber)) or 0)
        events = int(session.scalar(select(func.count()).select_from(ComplaintEvent)) or 0)
        # the keys the restored history was sealed with: without them it cannot be verified
        used = set(session.scalars(select(ComplaintEvent.key_id).where(ComplaintEvent.key_id.is_not(None))
                                  .distinct()))
        used |= set(session.scalars(select(AdminLogEntry.key_id).where(AdminLogEntry.key_id.is_not(None)).distinct()))
    missing = sorted(used - set(services.audit_chain.key_ids))
    return RestoreReport(numbers=numbers, events=events, missing_keys=missing, retention=figures)
