"""The Bloom index: ``bloom rebuild``, ``bloom check``, ``bloom snapshot``."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from registry.bloom import RebuildInProgress
from registry.bloom.snapshot import SnapshotUnavailable

from ..extensions import registry
from .common import no_final_collection

bloom = AppGroup("bloom", help="Maintain the Bloom index of registered numbers.")


@bloom.command("rebuild")
@click.option("--capacity", type=int, default=None, help="capacity of the new generation (default: grown as needed)")
def bloom_rebuild(capacity: int | None):
    """Build a new generation from the database and switch to it without downtime."""
    try:
        figures = registry().bloom.rebuild(capacity=capacity)
    except RebuildInProgress:
        click.echo("error: another rebuild is running; try again when it has finished", err=True)
        sys.exit(1)
    no_final_collection()
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


@bloom.command("snapshot")
def bloom_snapshot():
    """Take an offline-snapshot checkpoint now (and the delta to it), without waiting for the hour."""
    reg = registry()
    reg.wait_until_trusted(timeout=10)
    try:
        figures = reg.snapshots.tick(force=True)
    except SnapshotUnavailable as exc:
        click.echo(f"error: no checkpoint now: {exc}", err=True)
        sys.exit(1)
    if figures is None:
        click.echo("error: another process is taking a checkpoint; try again when it has finished", err=True)
        sys.exit(1)
    click.echo(" ".join(f"{k}={v}" for k, v in figures.items()))
