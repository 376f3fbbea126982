"""Backups: ``backup create PATH`` and ``backup restore PATH`` (docs/operations.md, "Backups and restore").

Exit status: 0 done; 1 restored, but the history was sealed with keys this registry is not
configured with (add them to AUDIT_KEYS from escrow, then ``audit verify``); 2 refused, nothing
changed (a folder that is not new or not a backup, a database that is not empty, pg_dump failing).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from workflows import backup as backups

from ..extensions import registry
from .common import refuse

backup = AppGroup("backup", help="Back the registry up to a folder, or restore one into an empty registry.")


@backup.command("create")
@click.argument("path", type=click.Path(path_type=Path))
def backup_create(path: Path):
    """Write the database, FILES_DIR and the chains' heads and key ids (never the keys) to the new folder PATH."""
    try:
        manifest = backups.create(registry(), path)
    except backups.BackupRefused as exc:
        refuse(str(exc))
    click.echo(f"backup written to {path}: {manifest['backend']}, {manifest['numbers']} numbers, "
               f"{manifest['complaint_events']} complaint events, schema {manifest['revision']}")
    click.echo(f"keys needed to verify it (escrowed apart, not in the backup): audit key ids "
               f"{', '.join(manifest['key_ids']['audit'])}"
               + (f"; transparency log {manifest['key_ids']['tlog']}" if manifest["key_ids"]["tlog"] else ""))


@backup.command("restore")
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
def backup_restore(path: Path):
    """Restore the backup folder PATH into this registry's empty database and FILES_DIR; the Bloom
    index is rebuilt and the retention chore re-applied before it returns."""
    try:
        report = backups.restore(registry(), path)
    except backups.BackupRefused as exc:
        refuse(str(exc))
    click.echo(f"restored from {path}: {report.numbers} numbers, {report.events} complaint events; "
               f"Bloom index rebuilt; retention re-applied ({report.retention})")
    if report.missing_keys:
        click.echo(f"error: the restored history was sealed with key ids {', '.join(report.missing_keys)}, which "
                   "are not configured: add them to AUDIT_KEYS from escrow, then run `audit verify`", err=True)
        sys.exit(1)
