"""Institutions and certificates: ``import-certificates``."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from importers.errors import FileRefused
from workflows.certificates import import_certificate_file

from ..extensions import registry
from .common import echo_problems, echo_rejected_csv_error, open_input, refuse


@click.command("import-certificates")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
def import_certificates(file: str, rejected_csv: str | None):
    """Upsert a certificate list (CSV/XLSX) as provincial bureaus send it."""
    name = Path(file).name
    with open_input(file) as fh:
        try:
            done = import_certificate_file(registry().sessions, fh, file_name=name, rejected_csv=rejected_csv,
                                           sandbox=registry().sandbox)
        except FileRefused as exc:
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
    echo_problems(name, done.problems)
    result = done.result
    click.echo(
        f"{name}: institutions created {result.institutions_created}, renamed {result.institutions_renamed}; "
        f"certificates created {result.certificates_created}, updated {result.certificates_updated} "
        f"({result.status_changes} status changes); rejected {len(done.problems)}"
    )
    echo_rejected_csv_error(rejected_csv, done.rejected_csv_error, "the other rows are imported")
    sys.exit(1 if done.problems else 0)


COMMANDS = (import_certificates,)
