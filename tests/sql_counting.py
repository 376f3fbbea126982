"""Counting the SQL a request costs: every statement through the engine, plus the lookups the
verification read path runs on its own driver cursor (counted by the service, in production too)."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event


@contextmanager
def count_sql(services):
    """Yields a list that holds, once the block ends, every statement the block ran."""
    statements: list[str] = []

    def _count(conn, cursor, statement, *args):
        statements.append(statement)

    lookups = services.verifier.lookups
    event.listen(services.engine, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        event.remove(services.engine, "before_cursor_execute", _count)
        statements.extend(["SELECT … FROM report_numbers WHERE number = ? (read path)"]
                          * (services.verifier.lookups - lookups))
