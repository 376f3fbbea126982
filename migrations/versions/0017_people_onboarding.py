"""Onboarding and notifications: institutions' requests for a portal account
(``account_requests``), each with the certificate that proved it, the address verified by link,
and the reviewing officer's decision; and the outbox's ``dedupe`` key (what a message is about:
never queued twice).

Revision ID: 0017
Revises: 0016
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('certificate_number', sa.String(length=12), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('verified_at', UTCDateTime(), nullable=True),
    sa.Column('decided_at', UTCDateTime(), nullable=True),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_requests_account_id_accounts')),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_account_requests_institution_id_institutions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_requests')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_requests_token_hash'))
    )
    with op.batch_alter_table('account_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_requests_institution_id'), ['institution_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_requests_status'), ['status'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedupe', sa.String(length=120), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_outbox_dedupe'), ['dedupe'])



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_outbox_dedupe'), type_='unique')
        batch_op.drop_column('dedupe')

    with op.batch_alter_table('account_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_requests_status'))
        batch_op.drop_index(batch_op.f('ix_account_requests_institution_id'))

    op.drop_table('account_requests')
