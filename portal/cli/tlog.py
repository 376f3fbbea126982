"""The transparency log: ``tlog integrate`` (the key holder only) and ``tlog verify``."""
from __future__ import annotations

import sys
import time

import click
from flask.cli import AppGroup

from registry.tlog.service import LogBroken

from ..extensions import registry

tlog = AppGroup("tlog", help="Integrate and check the transparency log (docs/transparency.md).")


@tlog.command("integrate")
@click.option("--follow", is_flag=True, help="keep integrating every TLOG_INTERVAL seconds until stopped")
def tlog_integrate(follow: bool):
    """Append the pending entries to the log and sign a new checkpoint. Run it on the one host
    that holds TLOG_SIGNING_KEY; exit 2 without the key, 1 when the stored tree no longer
    reproduces the previous checkpoint (nothing is signed then)."""
    reg = registry()
    if not reg.tlog.integrates:
        click.echo("error: TLOG_SIGNING_KEY is not set: only the log's integrator holds it", err=True)
        sys.exit(2)
    while True:
        try:
            done = reg.tlog.integrate()
        except LogBroken as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        if done.added or not follow:
            click.echo(f"integrated {done.added} entries; tree size {done.size}"
                       + (f"; signed checkpoint {done.signed[-1]}" if done.signed else ""))
        if not follow:
            return
        time.sleep(max(1.0, reg.settings.tlog_interval))
