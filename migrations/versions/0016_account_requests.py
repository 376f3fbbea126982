"""Onboarding: institutions' requests for a portal account (``account_requests``), each with the
certificate that proved it, the address verified by link, and the reviewing officer's decision.

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime


revision = '0016'
down_revision = '0015'
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



def downgrade() -> None:
    with op.batch_alter_table('account_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_requests_status'))
        batch_op.drop_index(batch_op.f('ix_account_requests_institution_id'))

    op.drop_table('account_requests')
