"""attachments: files exchanged in calls kept in the database (metadata and chunked bytes), so that every node of
a cluster reads them (gateway/store/attachments.py, DatabaseAttachments)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'attachments',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('call_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('mime', sa.String(length=64), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('uploaded_by', sa.String(length=128), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('owner', sa.String(length=520), nullable=True),
        sa.Column('scan', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_owner'), ['owner'], unique=False)
    op.create_table(
        'attachment_chunks',
        sa.Column('attachment_id', sa.String(length=16), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['attachment_id'], ['attachments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('attachment_id', 'seq'),
    )


def downgrade() -> None:
    op.drop_table('attachment_chunks')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_owner'))
        batch_op.drop_index(batch_op.f('ix_attachments_at'))
        batch_op.drop_index(batch_op.f('ix_attachments_call_id'))
    op.drop_table('attachments')
