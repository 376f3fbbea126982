"""The complaint audit chain: ``audit verify``."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..extensions import registry

audit = AppGroup("audit", help="Check the tamper evidence of complaint trails.")


@audit.command("verify")
def audit_verify():
    """Walk the HMAC chain of complaint events; exit 1 naming the first bad event, 0 when intact."""
    reg = registry()
    with reg.sessions() as session:
        result = reg.audit_chain.verify(session)
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
