"""CLI commands (``flask --app wsgi <command>``) of the public contract, one module per domain.

Exit status: 0 every row registered (or already registered); 1 some rows rejected (the valid
rows registered together); 2 the input was refused and nothing changed. Errors are one line
naming the file (and line), never a traceback. Commands are thin: they parse options, ask the
app's services (``registry()``) and the workflows, and print.
"""
from __future__ import annotations

from flask import Flask

from . import accounts, audit, backup, bloom, db, institutions, numbers, platforms, retention, statistics, tlog


def register_commands(app: Flask) -> None:
    for module in (db, numbers, institutions, accounts, platforms, statistics):
        for command in module.COMMANDS:
            app.cli.add_command(command)
    app.cli.add_command(bloom.bloom)
    app.cli.add_command(audit.audit)
    app.cli.add_command(backup.backup)
    app.cli.add_command(retention.retention)
    app.cli.add_command(tlog.tlog)
