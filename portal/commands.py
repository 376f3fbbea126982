"""CLI commands (``flask --app wsgi <command>``) of the public contract.

Exit status: 0 every row registered (or already registered); 1 some rows rejected (the valid
rows registered together); 2 the input was refused and nothing changed. Errors are one line
naming the file (and line), never a traceback.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from registry.numbers.normalize import InvalidValue
from registry.numbers.quarters import Quarter

from .extensions import registry


def register_commands(app) -> None:
    for command in (init_db, seed_authorities_cmd, demo_data, import_numbers, import_certificates, withdraw_numbers,
                    create_account):
        app.cli.add_command(command)
    app.cli.add_command(bloom)
    app.cli.add_command(audit)


def refuse(message: str) -> None:
    """Print one line and exit 2: the input was refused, nothing changed."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _institution(session, uscc: str):
    from registry.institutions.service import get_institution_by_uscc

    try:
        inst = get_institution_by_uscc(session, uscc)
    except InvalidValue as exc:
        refuse(f"--institution {uscc}: {exc}")
    if inst is None:
        refuse(f"--institution {uscc}: no institution with this unified social credit code is registered")
    return inst


def _open(path: str):
    try:
        return open(path, "rb")
    except OSError as exc:
        refuse(f"{path}: cannot open ({exc.strerror})")


def _write_rejected(path: str | None, problems) -> None:
    if not path or not problems:
        return
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "location", "value", "code", "reason", "reason_en"])
        for p in problems:
            writer.writerow([p.line or "", p.location or "", p.raw, p.code, p.message_zh, p.message_en])


def _echo_problems(filename: str, problems, limit: int = 20) -> None:
    for p in problems[:limit]:
        where = p.location or (f"line {p.line}" if p.line else "")
        click.echo(f"{filename}:{where}: {p.raw!r}: {p.message_en} / {p.message_zh}", err=True)
    if len(problems) > limit:
        click.echo(f"… and {len(problems) - limit} more rejected rows (use --rejected-csv to list them all)", err=True)


class _Progress:
    """A progress line on a terminal, nothing otherwise."""

    def __init__(self, label: str):
        self.enabled = sys.stderr.isatty()
        self.label = label

    def __call__(self, done: int) -> None:
        if self.enabled:
            click.echo(f"\r{self.label}: {done:,} numbers", err=True, nl=False)

    def close(self) -> None:
        if self.enabled:
            click.echo("", err=True)


@click.command("init-db")
@with_appcontext
def init_db():
    """Create or migrate the database to the newest schema."""
    from registry.infra.migrate import upgrade

    upgrade(registry().engine)
    click.echo("database migrated to head")


@click.command("seed-authorities")
@with_appcontext
def seed_authorities_cmd():
    """Insert SAMR, the provincial bureaus, review groups and CNAS (idempotent)."""
    from registry.institutions.authorities import seed_authorities

    with registry().sessions() as session:
        created = seed_authorities(session)
        session.commit()
    click.echo(f"authorities: {created} created")


@click.command("demo-data")
@with_appcontext
@click.option("--institutions", default=40, show_default=True, type=click.IntRange(1, 5000))
@click.option("--numbers-per-quarter", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
def demo_data(institutions: int, numbers_per_quarter: int):
    """Load realistic demo institutions, certificates and report numbers (once)."""
    from workflows.demo import load_demo_data

    reg = registry()
    reg.wait_until_trusted()
    summary = load_demo_data(reg.sessions, reg.registration, institutions=institutions,
                             numbers_per_quarter=numbers_per_quarter, today=reg.clock().astimezone().date())
    if not summary.created:
        click.echo("demo data already present; nothing changed")
        return
    click.echo(f"demo data: {summary.institutions} institutions, {summary.numbers:,} numbers in {summary.batches} batches")
    for username, role, binding in _demo_accounts(reg):
        click.echo(f"demo account {username} ({role}{', ' + binding if binding else ''}), password {DEMO_PASSWORD}")


DEMO_PASSWORD = "registry-demo-2026"


def _demo_accounts(reg):
    """Accounts to try the portals with; only the demo data creates them."""
    from sqlalchemy import select

    from registry.accounts.service import AccountService
    from registry.institutions.models import Authority, Institution

    with reg.sessions() as session:
        lab = session.scalars(select(Institution).order_by(Institution.id)).first()
        province = session.get(Authority, lab.review_authority_id)
    accounts = AccountService(sessions=reg.sessions, clock=reg.clock)
    made = [
        ("demo-lab", "institution", dict(institution_uscc=lab.uscc), lab.name),
        ("demo-province", "regulator", dict(authority_code=province.code), province.name),
        ("demo-samr", "regulator", dict(authority_code="00"), "SAMR"),
        ("demo-admin", "admin", {}, ""),
    ]
    for username, role, binding, label in made:
        accounts.create(username=username, password=DEMO_PASSWORD, role=role, **binding)
    return [(u, r, label) for u, r, _, label in made]


@click.command("import-numbers")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--institution", "uscc", required=True, help="USCC of the institution")
@click.option("--quarter", required=True, help="quarter like 2020Q4")
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
def import_numbers(file: str, uscc: str, quarter: str, rejected_csv: str | None):
    """Register the report numbers of FILE for an institution and quarter."""
    from importers.errors import FileRefused
    from importers.numbers import read_report_numbers
    from registry.registration.service import RegistrationRefused, sha256_of

    reg = registry()
    try:
        q = Quarter.parse(quarter)
    except ValueError as exc:
        refuse(f"--quarter: {exc}")
    with reg.sessions() as session:
        inst = _institution(session, uscc)
    try:
        reg.registration.check_quarter(q)
    except RegistrationRefused as exc:
        refuse(f"--quarter {q}: {exc.message_en}")
    reg.wait_until_trusted()
    name = Path(file).name
    with _open(file) as fh:
        digest = sha256_of(fh)
        repeat = reg.registration.find_repeat(institution_id=inst.id, quarter=q, sha256=digest)
        if repeat is not None:
            click.echo(f"{name}: already registered as batch {repeat.batch_id} on {repeat.created_at:%Y-%m-%d}; nothing changed")
            click.echo(f"accepted {repeat.accepted}, duplicates {repeat.duplicates}, rejected {repeat.rejected}")
            sys.exit(0)
        progress = _Progress(name)
        try:
            parsed = read_report_numbers(fh, name, max_bytes=current_app.config["MAX_UPLOAD_BYTES"])
            receipt = reg.registration.register(
                institution_id=inst.id, quarter=q, numbers=parsed.numbers(), sha256=digest, source="file",
                file_name=name, created_by="cli", rejected=lambda: len(parsed.problems), progress=progress,
            )
        except FileRefused as exc:
            progress.close()
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
        except RegistrationRefused as exc:
            progress.close()
            refuse(f"{name}: {exc.message_en}")
        progress.close()
    for w in parsed.warnings:
        click.echo(f"{name}: warning: {w.message_en} / {w.message_zh}", err=True)
    _echo_problems(name, parsed.problems)
    _write_rejected(rejected_csv, parsed.problems)
    click.echo(
        f"{name}: batch {receipt.batch_id} for {inst.name} {q}{' (late)' if receipt.late else ''}: "
        f"registered {receipt.accepted:,}, already registered {receipt.already_registered:,}, "
        f"duplicate in file {receipt.in_file_duplicates:,}, rejected {len(parsed.problems):,}"
    )
    sys.exit(1 if parsed.problems else 0)


@click.command("withdraw-numbers")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--institution", "uscc", required=True)
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
def withdraw_numbers(file: str, uscc: str, rejected_csv: str | None):
    """Withdraw the numbers of voided reports listed in FILE (number and reason per row)."""
    from importers.errors import FileRefused, RowProblem
    from importers.withdrawals import read_withdrawals

    reg = registry()
    with reg.sessions() as session:
        inst = _institution(session, uscc)
    name = Path(file).name
    with _open(file) as fh:
        try:
            parsed = read_withdrawals(fh, name)
            rows = [(w.line, w.number, w.reason) for w in parsed.rows()]
        except FileRefused as exc:
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
    result = reg.registration.withdraw(institution_id=inst.id, items=rows)
    problems = list(parsed.problems) + [
        RowProblem(line=line, location=None, raw=number, code="not_registered",
                   message_zh="该机构未登记此报告编号", message_en="this institution has not registered this number")
        for line, number in result.not_registered
    ]
    _echo_problems(name, problems)
    _write_rejected(rejected_csv, problems)
    click.echo(f"{name}: withdrawn {result.withdrawn:,}, already withdrawn {result.already_withdrawn:,}, rejected {len(problems):,}")
    sys.exit(1 if problems else 0)


@click.command("import-certificates")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rejected-csv", type=click.Path(dir_okay=False, writable=True))
def import_certificates(file: str, rejected_csv: str | None):
    """Upsert a certificate list (CSV/XLSX) as provincial bureaus send it."""
    from importers.certificates import read_certificates
    from importers.errors import FileRefused, RowProblem
    from registry.institutions.authorities import seed_authorities
    from registry.institutions.service import import_certificate_rows

    reg = registry()
    name = Path(file).name
    with _open(file) as fh, reg.sessions() as session:
        seed_authorities(session)
        try:
            parsed = read_certificates(fh, name)
            result = import_certificate_rows(session, parsed.rows(), source=f"file:{name}")
        except FileRefused as exc:
            session.rollback()
            refuse(f"{name}: {exc.message_en} / {exc.message_zh}")
        session.commit()
    problems = list(parsed.problems) + [
        RowProblem(line=line, location=None, raw=raw, code="rejected", message_zh=zh, message_en=en)
        for line, raw, zh, en in result.problems
    ]
    _echo_problems(name, problems)
    _write_rejected(rejected_csv, problems)
    click.echo(
        f"{name}: institutions created {result.institutions_created}, renamed {result.institutions_renamed}; "
        f"certificates created {result.certificates_created}, updated {result.certificates_updated} "
        f"({result.status_changes} status changes); rejected {len(problems)}"
    )
    sys.exit(1 if problems else 0)


bloom = AppGroup("bloom", help="Maintain the Bloom index of registered numbers.")


@bloom.command("rebuild")
@click.option("--capacity", type=int, default=None, help="capacity of the new generation (default: grown as needed)")
def bloom_rebuild(capacity: int | None):
    """Build a new generation from the database and switch to it without downtime."""
    from registry.bloom import RebuildInProgress

    try:
        figures = registry().bloom.rebuild(capacity=capacity)
    except RebuildInProgress:
        click.echo("error: another rebuild is running; try again when it has finished", err=True)
        sys.exit(1)
    click.echo(" ".join(f"{k}={v}" for k, v in figures.items()))


@bloom.command("check")
def bloom_check():
    """Report items, capacity, fill and FP rate; exit 1 if a registered number is missing."""
    reg = registry()
    reg.refresh(auto_rebuild=False)
    figures = reg.bloom.check()
    missing = figures.pop("missing", [])
    for key, value in figures.items():
        click.echo(f"{key}: {value}")
    if figures.get("missing_count"):
        for number in missing:
            click.echo(f"missing: {number}", err=True)
        sys.exit(1)


@click.command("create-account")
@with_appcontext
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["institution", "regulator", "admin"]))
@click.option("--institution", "uscc", help="USCC of the institution (role institution)")
@click.option("--authority", "authority_code", help="authority code, e.g. 11 (role regulator)")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
def create_account(username: str, role: str, uscc: str | None, authority_code: str | None, password_stdin: bool):
    """Create a portal account; the password comes from a prompt (or stdin)."""
    from registry.accounts.service import AccountError, AccountService

    if role == "institution" and not uscc:
        refuse("--institution USCC is required for an institution account")
    if role == "regulator" and not authority_code:
        refuse("--authority CODE is required for a regulator account")
    if (uscc and role != "institution") or (authority_code and role != "regulator"):
        refuse("--institution goes with --role institution, --authority with --role regulator")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    reg = registry()
    try:
        account = AccountService(sessions=reg.sessions, clock=reg.clock).create(
            username=username, password=password, role=role, institution_uscc=uscc, authority_code=authority_code)
    except AccountError as exc:
        refuse(f"{username}: {exc.message_en}")
    click.echo(f"account {account.username} created (role {account.role})")


audit = AppGroup("audit", help="Check the tamper evidence of complaint trails.")


@audit.command("verify")
def audit_verify():
    """Walk the HMAC chain of complaint events; exit 1 naming the first bad event, 0 when intact."""
    chain = current_app.extensions["audit_chain"]
    with registry().sessions() as session:
        result = chain.verify(session)
    head = f"seq {result.head[0]}" if result.head else "missing"
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} events, last seq {result.last_seq}, head {head}")
        return
    first = result.first
    where = f"event {first.event_id}" if first.event_id is not None else "chain head"
    click.echo(f"audit chain BROKEN at {where}: {first.message}", err=True)
    for problem in result.problems[1:20]:
        click.echo(f"  also: {problem.message}", err=True)
    click.echo(f"{result.checked} sealed events checked, {len(result.problems)} problems", err=True)
    sys.exit(1)
