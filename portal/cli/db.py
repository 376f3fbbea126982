"""The database and the demo data: ``init-db``, ``seed-authorities``, ``demo-data``."""
from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from registry.institutions.authorities import seed_authorities
from registry.institutions.models import Authority, Institution

from ..extensions import registry

DEMO_PASSWORD = "registry-demo-2026"


@click.command("init-db")
@with_appcontext
def init_db():
    """Create or migrate the database to the newest schema."""
    from registry.infra.migrate import upgrade  # Alembic is loaded only by this command

    upgrade(registry().engine)
    click.echo("database migrated to head")


@click.command("seed-authorities")
@with_appcontext
def seed_authorities_cmd():
    """Insert SAMR, the provincial bureaus, review groups and CNAS (idempotent)."""
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
    from workflows.demo_statistics import load_demo_statistics

    stats = load_demo_statistics(reg.statistics, reg.sessions, reg.registration, today=reg.clock().astimezone().date(),
                                 numbers_per_quarter=numbers_per_quarter)
    if stats.years:
        click.echo(f"demo statistics: {stats.filings} filings over the years {', '.join(map(str, stats.years))}")
    for username, role, binding in _demo_accounts(reg):
        click.echo(f"demo account {username} ({role}{', ' + binding if binding else ''}), password {DEMO_PASSWORD}")


def _demo_accounts(reg):
    """Accounts to try the portals with; only the demo data creates them."""
    with reg.sessions() as session:
        lab = session.scalars(select(Institution).order_by(Institution.id)).first()
        province = session.get(Authority, lab.review_authority_id)
    made = [
        ("demo-lab", "institution", dict(institution_uscc=lab.uscc), lab.name),
        ("demo-province", "regulator", dict(authority_code=province.code), province.name),
        ("demo-samr", "regulator", dict(authority_code="00"), "SAMR"),
        ("demo-admin", "admin", {}, ""),
    ]
    for username, role, binding, label in made:
        reg.accounts.create(username=username, password=DEMO_PASSWORD, role=role, **binding)
    return [(u, r, label) for u, r, _, label in made]


COMMANDS = (init_db, seed_authorities_cmd, demo_data)
