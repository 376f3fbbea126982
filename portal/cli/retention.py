"""Retention of personal data: ``retention run`` (the daily chore, at once)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from ..extensions import registry

retention = AppGroup("retention", help="Drop query-log days and erase complainants' contacts past their keeping.")


@retention.command("run")
def retention_run():
    """Drop query-log days older than QUERY_LOG_DAYS, erase the contact data of complaints
    closed longer than COMPLAINT_CONTACT_DAYS ago (as sealed redaction events), delete e-mails
    sent or failed more than OUTBOX_DAYS ago and ended sign-in sessions."""
    reg = registry()
    figures = reg.retention.run()
    if not figures.ran:
        click.echo("retention: another process is running it now; nothing done")
        return
    click.echo(f"query log: keeping {reg.retention.query_log_days} days; {figures.partitions_dropped} day partitions "
               f"dropped, {figures.query_rows_deleted} rows deleted, {figures.partitions_created} partitions created")
    click.echo(f"complaints: contact data erased from {figures.contacts_erased} complaints closed more than "
               f"{reg.retention.complaint_contact_days} days ago")
    click.echo(f"outbox: {figures.messages_deleted} sent or failed e-mails older than {reg.retention.outbox_days} days "
               f"deleted; sign-in: {figures.sessions_deleted} ended sessions and stale failure counts deleted")
