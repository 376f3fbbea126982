"""Report numbers: ``import-numbers`` (a file → one batch), ``withdraw-numbers`` and
``restore-numbers`` (undo a withdrawal; both with ``--dry-run``)."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from importers.errors import FileRefused
from registry.bloom import BloomStoreError
from registry.numbers.quarters import Quarter
from registry.registration.service import RegistrationRefused
from workflows.numbers import register_number_file
from workflows.problems import not_registered_problems, write_rejected_csv_or_error
from workflows.withdrawals import read_withdrawal_file, restore_items, withdraw_items

from ..extensions import registry
from .common import Progress, echo_problems, echo_rejected_csv_error, institution, no_final_collection, open_input, refuse


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
                rejected_csv=rejected_csv, sandbox=reg.sandbox)
        except FileRefused as exc:
            progress.close()
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
        except RegistrationRefused as exc:
            progress.close()
            refuse(f"{name}: {exc.message_en}")
        except BloomStoreError as exc:  # the batch rolled back: run the same command again
            progress.close()
            refuse(f"{name}: {exc}; nothing registered")
        progress.close()
    no_final_collection()
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
        + (f"; with a document fingerprint {receipt.documents:,}" if receipt.documents_given else "")
    )
    echo_rejected_csv_error(rejected_csv, done.rejected_csv_error, f"batch {receipt.batch_id} is registered")
    sys.exit(1 if done.problems else 0)


@click.command("withdraw-numbers")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--institution", "uscc", required=True)
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
@click.option("--dry-run", is_flag=True, help="say what would be withdrawn; change nothing")
def withdraw_numbers(file: str, uscc: str, rejected_csv: str | None, dry_run: bool):
    """Withdraw the numbers of voided reports listed in FILE (number and reason per row)."""
    _change_numbers(file, uscc, rejected_csv, dry_run=dry_run, restore=False)


@click.command("restore-numbers")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--institution", "uscc", required=True)
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
@click.option("--dry-run", is_flag=True, help="say what would be restored; change nothing")
def restore_numbers(file: str, uscc: str, rejected_csv: str | None, dry_run: bool):
    """Restore numbers withdrawn by mistake, listed in FILE (number, optional reason per row)."""
    _change_numbers(file, uscc, rejected_csv, dry_run=dry_run, restore=True)


def _change_numbers(file: str, uscc: str, rejected_csv: str | None, *, dry_run: bool, restore: bool) -> None:
    reg = registry()
    with reg.sessions() as session:
        inst = institution(session, uscc)
    name = Path(file).name
    with open_input(file) as fh:
        try:
            items, rejected = read_withdrawal_file(fh, name, restore=restore, sandbox=reg.sandbox)
        except FileRefused as exc:
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
    if dry_run:
        preview = reg.registration.preview_change(institution_id=inst.id, items=items, restore=restore)
        problems = rejected + not_registered_problems(preview.not_registered)
        csv_error = write_rejected_csv_or_error(rejected_csv, problems) if rejected_csv and problems else None
        echo_problems(name, problems)
        for number in preview.change:
            click.echo(f"{name}: would {'restore' if restore else 'withdraw'} {number}")
        click.echo(f"{name}: dry run, nothing changed: would {'restore' if restore else 'withdraw'} "
                   f"{len(preview.change):,}, {'not withdrawn' if restore else 'already withdrawn'} "
                   f"{len(preview.unchanged):,}, rejected {len(problems):,}")
        echo_rejected_csv_error(rejected_csv, csv_error, "dry run, nothing changed")
        sys.exit(1 if problems else 0)
    run = restore_items if restore else withdraw_items
    done = run(reg.registration, institution_id=inst.id, items=items, problems=rejected, rejected_csv=rejected_csv,
               actor="cli", source="cli")
    echo_problems(name, done.problems)
    result = done.result
    if restore:
        click.echo(f"{name}: restored {result.restored:,}, not withdrawn {result.not_withdrawn:,}, "
                   f"rejected {len(done.problems):,}")
    else:
        click.echo(f"{name}: withdrawn {result.withdrawn:,}, already withdrawn {result.already_withdrawn:,}, "
                   f"rejected {len(done.problems):,}")
    echo_rejected_csv_error(rejected_csv, done.rejected_csv_error,
                            f"the other rows are {'restored' if restore else 'withdrawn'}")
    sys.exit(1 if done.problems else 0)


COMMANDS = (import_numbers, withdraw_numbers, restore_numbers)
