"""Report numbers: ``import-numbers`` (a file → one batch) and ``withdraw-numbers``."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from importers.errors import FileRefused
from registry.numbers.quarters import Quarter
from registry.registration.service import RegistrationRefused
from workflows.numbers import register_number_file
from workflows.withdrawals import withdraw_file

from ..extensions import registry
from .common import Progress, echo_problems, institution, open_input, refuse


@click.command("import-numbers")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--institution", "uscc", required=True, help="USCC of the institution")
@click.option("--quarter", required=True, help="quarter like 2020Q4")
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
def import_numbers(file: str, uscc: str, quarter: str, rejected_csv: str | None):
    """Register the report numbers of FILE for an institution and quarter."""
    reg = registry()
    try:
        q = Quarter.parse(quarter)
    except ValueError as exc:
        refuse(f"--quarter: {exc}")
    with reg.sessions() as session:
        inst = institution(session, uscc)
    try:
        reg.registration.check_quarter(q)
    except RegistrationRefused as exc:
        refuse(f"--quarter {q}: {exc.message_en}")
    reg.wait_until_trusted()
    name = Path(file).name
    with open_input(file) as fh:
        progress = Progress(name)
        try:
            done = register_number_file(
                reg.registration, fh, file_name=name, institution_id=inst.id, quarter=q, source="file",
                created_by="cli", max_bytes=reg.settings.max_upload_bytes, progress=progress,
                rejected_csv=rejected_csv)
        except FileRefused as exc:
            progress.close()
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
        except RegistrationRefused as exc:
            progress.close()
            refuse(f"{name}: {exc.message_en}")
        progress.close()
    receipt = done.receipt
    if receipt.repeated:
        click.echo(f"{name}: already registered as batch {receipt.batch_id} on {receipt.created_at:%Y-%m-%d}; nothing changed")
        click.echo(f"accepted {receipt.accepted}, duplicates {receipt.duplicates}, rejected {receipt.rejected}")
        sys.exit(0)
    for w in done.warnings:
        click.echo(f"{name}: warning: {w.message_en} / {w.message_zh}", err=True)
    echo_problems(name, done.problems)
    click.echo(
        f"{name}: batch {receipt.batch_id} for {inst.name} {q}{' (late)' if receipt.late else ''}: "
        f"registered {receipt.accepted:,}, already registered {receipt.already_registered:,}, "
        f"duplicate in file {receipt.in_file_duplicates:,}, rejected {len(done.problems):,}"
    )
    sys.exit(1 if done.problems else 0)


@click.command("withdraw-numbers")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--institution", "uscc", required=True)
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
def withdraw_numbers(file: str, uscc: str, rejected_csv: str | None):
    """Withdraw the numbers of voided reports listed in FILE (number and reason per row)."""
    reg = registry()
    with reg.sessions() as session:
        inst = institution(session, uscc)
    name = Path(file).name
    with open_input(file) as fh:
        try:
            done = withdraw_file(reg.registration, fh, file_name=name, institution_id=inst.id,
                                 rejected_csv=rejected_csv)
        except FileRefused as exc:
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
    echo_problems(name, done.problems)
    result = done.result
    click.echo(f"{name}: withdrawn {result.withdrawn:,}, already withdrawn {result.already_withdrawn:,}, "
               f"rejected {len(done.problems):,}")
    sys.exit(1 if done.problems else 0)


COMMANDS = (import_numbers, withdraw_numbers)
