"""Annual statistics, second part: the annual and social responsibility reports' sections (a
year's list, admin-defined, in ``statistics_years.sections``; each filing's texts and PDF
attachments in ``statistics_filings.report`` / ``attachments``), the year's opening date and SAMR
check deadline, the admin's table of review groups by professional field, and the institutions'
``national_center`` flag (owns a 国家质检中心: files the social responsibility report).

Revision ID: 0018
Revises: 0017
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('statistics_review_groups',
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'], name=op.f('fk_statistics_review_groups_authority_id_authorities')),
    sa.PrimaryKeyConstraint('field', name=op.f('pk_statistics_review_groups'))
    )
    with op.batch_alter_table('statistics_years', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opens_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('check_by', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('sections', sa.JSON(), nullable=True))
    with op.batch_alter_table('statistics_filings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('attachments', sa.JSON(), nullable=True))
    with op.batch_alter_table('institutions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('national_center', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('institutions', schema=None) as batch_op:
        batch_op.drop_column('national_center')
    with op.batch_alter_table('statistics_filings', schema=None) as batch_op:
        batch_op.drop_column('attachments')
        batch_op.drop_column('report')
    with op.batch_alter_table('statistics_years', schema=None) as batch_op:
        batch_op.drop_column('sections')
        batch_op.drop_column('check_by')
        batch_op.drop_column('opens_on')
    op.drop_table('statistics_review_groups')
