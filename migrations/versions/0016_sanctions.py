"""Measures against institutions for their reporting duties, with the institution heard
(registry/compliance/sanctions.py).

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
    op.create_table('sanctions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('measure', sa.String(length=24), nullable=False),
    sa.Column('ground', sa.String(length=24), nullable=False),
    sa.Column('year', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('proposed_by', sa.String(length=100), nullable=False),
    sa.Column('proposed_at', UTCDateTime(), nullable=False),
    sa.Column('hearing_due', sa.Date(), nullable=False),
    sa.Column('statement', sa.Text(), nullable=True),
    sa.Column('stated_at', UTCDateTime(), nullable=True),
    sa.Column('decided_by', sa.String(length=100), nullable=True),
    sa.Column('decided_at', UTCDateTime(), nullable=True),
    sa.Column('decision', sa.Text(), nullable=True),
    sa.Column('lifted_by', sa.String(length=100), nullable=True),
    sa.Column('lifted_at', UTCDateTime(), nullable=True),
    sa.Column('lift_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'], name=op.f('fk_sanctions_authority_id_authorities')),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_sanctions_institution_id_institutions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sanctions'))
    )
    with op.batch_alter_table('sanctions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sanctions_institution_id'), ['institution_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sanctions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sanctions_institution_id'))

    op.drop_table('sanctions')
