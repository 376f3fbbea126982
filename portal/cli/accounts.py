"""Portal accounts: ``create-account``."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from registry.accounts.accounts import AccountError

from ..extensions import registry
from .common import refuse


@click.command("create-account")
@with_appcontext
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["institution", "regulator", "admin"]))
@click.option("--institution", "uscc", help="USCC of the institution (role institution)")
@click.option("--authority", "authority_code", help="authority code, e.g. 11 (role regulator)")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
def create_account(username: str, role: str, uscc: str | None, authority_code: str | None, password_stdin: bool):
    """Create a portal account; the password comes from a prompt (or stdin)."""
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
    try:
        account = registry().accounts.create(username=username, password=password, role=role,
                                             institution_uscc=uscc, authority_code=authority_code)
    except AccountError as exc:
        refuse(f"{username}: {exc.message_en}")
    click.echo(f"account {account.username} created (role {account.role})")


COMMANDS = (create_account,)
