"""Annual statistics direct reporting: the survey years, each legal entity's filing, and the
filings' sealed trail (registry/statistics).

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('statistics_years',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('schema_version', sa.String(length=16), nullable=False),
    sa.Column('file_by', sa.Date(), nullable=False),
    sa.Column('review_by', sa.Date(), nullable=False),
    sa.Column('opened_at', UTCDateTime(), nullable=False),
    sa.Column('opened_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_statistics_years'))
    )
    op.create_table('statistics_filings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('comments', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('submitted_at', UTCDateTime(), nullable=True),
    sa.Column('approved_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_statistics_filings_institution_id_institutions')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['authorities.id'], name=op.f('fk_statistics_filings_reviewer_id_authorities')),
    sa.ForeignKeyConstraint(['year'], ['statistics_years.year'], name=op.f('fk_statistics_filings_year_statistics_years')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_statistics_filings')),
    sa.UniqueConstraint('year', 'institution_id', name=op.f('uq_statistics_filings_year'))
    )
    with op.batch_alter_table('statistics_filings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_statistics_filings_institution_id'), ['institution_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_statistics_filings_reviewer_id'), ['reviewer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_statistics_filings_year'), ['year'], unique=False)

    op.create_table('statistics_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('filing_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=100), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['filing_id'], ['statistics_filings.id'], name=op.f('fk_statistics_events_filing_id_statistics_filings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_statistics_events')),
    sa.UniqueConstraint('seq', name=op.f('uq_statistics_events_seq'))
    )
    with op.batch_alter_table('statistics_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_statistics_events_filing_id'), ['filing_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('statistics_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_statistics_events_filing_id'))

    op.drop_table('statistics_events')
    with op.batch_alter_table('statistics_filings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_statistics_filings_year'))
        batch_op.drop_index(batch_op.f('ix_statistics_filings_reviewer_id'))
        batch_op.drop_index(batch_op.f('ix_statistics_filings_institution_id'))

    op.drop_table('statistics_filings')
    op.drop_table('statistics_years')
