"""recordings: the recording state and paused spans of each call record, a row per recorded file (checksum,
tracks, retention) and the audit log of every access to a recording

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('recording_paused', sa.JSON(), nullable=True))
    op.create_table('recordings',
    sa.Column('call_id', sa.String(length=32), nullable=False),
    sa.Column('storage_key', sa.String(length=512), nullable=False),
    sa.Column('container', sa.String(length=16), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=True),
    sa.Column('agent', sa.String(length=128), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('tracks', sa.JSON(), nullable=False),
    sa.Column('paused_spans', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=True),
    sa.Column('deleted_reason', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('call_id')
    )
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recordings_queue'), ['queue'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_started_at'), ['started_at'], unique=False)
    op.create_table('recording_access',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=32), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('principal', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('byte_range', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recording_access', schema=None) as batch_op:
        batch_op.create_index('ix_recording_access_call', ['call_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recording_access', schema=None) as batch_op:
        batch_op.drop_index('ix_recording_access_call')
    op.drop_table('recording_access')
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recordings_started_at'))
        batch_op.drop_index(batch_op.f('ix_recordings_queue'))
    op.drop_table('recordings')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('recording_paused')
        batch_op.drop_column('recording')
