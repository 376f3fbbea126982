"""Platform keys for bulk verification: ``create-platform-key``."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from registry.platforms.service import PlatformError

from ..extensions import registry
from .common import refuse


@click.command("create-platform-key")
@with_appcontext
@click.argument("name")
@click.option("--per-minute", type=int, required=True, help="items per minute")
@click.option("--per-day", type=int, required=True, help="items per day")
@click.option("--days", type=int, default=365, show_default=True, help="days until the key expires")
@click.option("--origin", "origins", multiple=True, help="a browser origin allowed to call bulk (repeatable)")
def create_platform_key(name: str, per_minute: int, per_day: int, days: int, origins: tuple[str, ...]):
    """Issue a platform key for POST /api/v1/verify/bulk; the key is printed once, alone on the last line."""
    try:
        key, plaintext = registry().platforms.create(name=name, per_minute=per_minute, per_day=per_day, days=days,
                                                     origins=origins, created_by="cli")
    except PlatformError as exc:
        refuse(f"{name}: {exc.message_en}")
    click.echo(f"platform key {key.id} issued to {key.name}: {per_minute}/minute, {per_day}/day, "
               f"expires {key.expires_at:%Y-%m-%d}; it is shown once, keep it now:")
    click.echo(plaintext)


COMMANDS = (create_platform_key,)
