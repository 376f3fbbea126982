"""The transparency log: ``tlog integrate`` (the key holder only) and ``tlog verify``."""
from __future__ import annotations

import sys
import time

import click
from flask.cli import AppGroup

from registry.tlog.note import KeyFormatError, parse_verifier
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


@tlog.command("verify")
@click.option("--key", "keys", multiple=True, help="a verifier key to trust (repeatable); default: the key this "
              "host signs with, else the keys the database lists")
def tlog_verify(keys: tuple[str, ...]):
    """Check every stored entry against its registration, the stored tree and the signed
    checkpoints, and every registration against the log; exit 1 naming the first bad index, 0
    when the log is intact."""
    reg = registry()
    try:
        verifiers = [parse_verifier(k) for k in keys]
    except KeyFormatError as exc:
        click.echo(f"error: --key: {exc}", err=True)
        sys.exit(2)
    if not verifiers and reg.tlog.signer is not None:
        verifiers = [reg.tlog.signer.verifier]
    if not verifiers:
        verifiers = [parse_verifier(k) for k in reg.tlog.keys()]
        click.echo("note: trusting the verifier keys the database lists (give --key to pin the published one)")
    result = reg.tlog.verify(verifiers)
    if result.ok:
        click.echo(f"log intact: {result.entries} entries, {result.checkpoints} checkpoints, "
                   f"{reg.tlog.pending_count()} pending")
        return
    first = result.first
    click.echo(f"log BROKEN at index {first.index}: {first.message}", err=True)
    for problem in sorted(result.problems)[1:20]:
        click.echo(f"  also at index {problem.index}: {problem.message}", err=True)
    click.echo(f"{result.entries} entries checked, {len(result.problems)} problems", err=True)
    sys.exit(1)
