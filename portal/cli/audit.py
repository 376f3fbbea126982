"""The complaint audit chain and the admin log: ``audit verify``."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..extensions import registry

audit = AppGroup("audit", help="Check the tamper evidence of complaint trails, the admin log and the statistics trail.")


@audit.command("verify")
def audit_verify():
    """Walk the HMAC chain of complaint events, then the admin log's and the statistics filings';
    exit 1 naming the first bad event or entry, 0 when all are intact."""
    reg = registry()
    with reg.sessions() as session:
        result = reg.audit_chain.verify(session)
        admin = reg.admin_log.verify(session)
        filings = reg.statistics_trail.verify(session)
    head = f"seq {result.head[0]}" if result.head else "missing"
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} events, last seq {result.last_seq}, head {head}")
        _admin_log_report(admin, also=filings)
        _admin_log_report(filings, name="statistics trail")
        return
    _admin_log_report(admin, quiet=True)
    _admin_log_report(filings, quiet=True, name="statistics trail")
    first = result.first
    if first.event_id is not None:
        where = f"event {first.event_id}"
    elif first.complaint_id is not None:
        where = f"complaint {first.complaint_id}"
    else:
        where = "chain head"
    click.echo(f"audit chain BROKEN at {where}: {first.message}", err=True)
    for problem in result.problems[1:20]:
        click.echo(f"  also: {problem.message}", err=True)
    click.echo(f"{result.checked} sealed events checked, {len(result.problems)} problems", err=True)
    sys.exit(1)


def _admin_log_report(check, *, quiet: bool = False, name: str = "admin log", also=None) -> None:
    """One line for the admin log (or its sibling, the statistics trail); exit 1 when it is broken
    (after the complaint chain's report, and after ``also``'s report when that is given)."""
    head = f"seq {check.head[0]}" if check.head else "missing"
    if check.ok:
        if not quiet:
            click.echo(f"{name} intact: {check.checked} entries, last seq {check.last_seq}, head {head}")
        return
    first = check.problems[0]
    where = f"entry {first.entry_id}" if first.entry_id is not None else "log head"
    click.echo(f"{name} BROKEN at {where}: {first.message}", err=True)
    for problem in check.problems[1:20]:
        click.echo(f"  also: {problem.message}", err=True)
    if not quiet:
        if also is not None:
            _admin_log_report(also, quiet=True, name="statistics trail")
        sys.exit(1)
