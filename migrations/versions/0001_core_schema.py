"""Core schema: authorities, institutions, certificates, batches, report numbers, query log.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 03:21:13.052731
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime

from registry.registration.models import REPORT_NUMBER_PARTITIONS


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('authorities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=2), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('name_en', sa.String(length=120), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_authorities')),
    sa.UniqueConstraint('code', name=op.f('uq_authorities_code'))
    )
    op.create_table('query_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('number', sa.String(length=200), nullable=False),
    sa.Column('institution_text', sa.Text(), nullable=True),
    sa.Column('institution_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_query_log'))
    )
    with op.batch_alter_table('query_log', schema=None) as batch_op:
        batch_op.create_index('ix_query_log_number_at', ['number', 'at'], unique=False)

    op.create_table('registry_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_registry_state'))
    )
    op.create_table('report_numbers',
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('quarter', sa.String(length=6), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=False),
    sa.Column('registered_at', UTCDateTime(), nullable=False),
    sa.Column('withdrawn_at', UTCDateTime(), nullable=True),
    sa.Column('withdraw_reason', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('number', 'institution_id', name=op.f('pk_report_numbers')),
    postgresql_partition_by='HASH (number)'
    )
    if op.get_bind().dialect.name == "postgresql":
        # A lookup by number prunes to one partition (docs/architecture.md, "Beyond one machine").
        for i in range(REPORT_NUMBER_PARTITIONS):
            op.execute(
                f"CREATE TABLE report_numbers_p{i:02d} PARTITION OF report_numbers "
                f"FOR VALUES WITH (MODULUS {REPORT_NUMBER_PARTITIONS}, REMAINDER {i})"
            )
    with op.batch_alter_table('report_numbers', schema=None) as batch_op:
        batch_op.create_index('ix_report_numbers_institution_quarter', ['institution_id', 'quarter'], unique=False)

    op.create_table('institutions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_key', sa.String(length=200), nullable=False),
    sa.Column('review_authority_id', sa.Integer(), nullable=False),
    sa.Column('abnormal', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['review_authority_id'], ['authorities.id'], name=op.f('fk_institutions_review_authority_id_authorities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_institutions')),
    sa.UniqueConstraint('uscc', name=op.f('uq_institutions_uscc'))
    )
    with op.batch_alter_table('institutions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_institutions_name_key'), ['name_key'], unique=False)

    op.create_table('batches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('quarter', sa.String(length=6), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_batches_institution_id_institutions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('institution_id', 'quarter', 'sha256', name='uq_batches_institution_quarter_sha256')
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batches_institution_id'), ['institution_id'], unique=False)

    op.create_table('certificates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=12), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('issuing_authority_id', sa.Integer(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=True),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_certificates_institution_id_institutions')),
    sa.ForeignKeyConstraint(['issuing_authority_id'], ['authorities.id'], name=op.f('fk_certificates_issuing_authority_id_authorities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates')),
    sa.UniqueConstraint('number', name=op.f('uq_certificates_number'))
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificates_institution_id'), ['institution_id'], unique=False)

    op.create_table('institution_addresses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_institution_addresses_institution_id_institutions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_institution_addresses'))
    )
    with op.batch_alter_table('institution_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_institution_addresses_institution_id'), ['institution_id'], unique=False)

    op.create_table('institution_names',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_key', sa.String(length=200), nullable=False),
    sa.Column('valid_from', UTCDateTime(), nullable=False),
    sa.Column('valid_to', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_institution_names_institution_id_institutions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_institution_names'))
    )
    with op.batch_alter_table('institution_names', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_institution_names_institution_id'), ['institution_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_institution_names_name_key'), ['name_key'], unique=False)

    op.create_table('certificate_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('changed_at', UTCDateTime(), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_certificate_events_certificate_id_certificates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate_events'))
    )
    with op.batch_alter_table('certificate_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_events_certificate_id'), ['certificate_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('certificate_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_events_certificate_id'))

    op.drop_table('certificate_events')
    with op.batch_alter_table('institution_names', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_institution_names_name_key'))
        batch_op.drop_index(batch_op.f('ix_institution_names_institution_id'))

    op.drop_table('institution_names')
    with op.batch_alter_table('institution_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_institution_addresses_institution_id'))

    op.drop_table('institution_addresses')
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificates_institution_id'))

    op.drop_table('certificates')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batches_institution_id'))

    op.drop_table('batches')
    with op.batch_alter_table('institutions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_institutions_name_key'))

    op.drop_table('institutions')
    with op.batch_alter_table('report_numbers', schema=None) as batch_op:
        batch_op.drop_index('ix_report_numbers_institution_quarter')

    op.drop_table('report_numbers')
    op.drop_table('registry_state')
    with op.batch_alter_table('query_log', schema=None) as batch_op:
        batch_op.drop_index('ix_query_log_number_at')

    op.drop_table('query_log')
    op.drop_table('authorities')
