"""queues and routing: agent skills and capacity, queue configs, callback/after-hours/message columns on calls

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('skills', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('capacity', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('closed_reason', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('callback', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('callback_phone', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('callback_ready_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('rejoined_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('message', sa.Text(), nullable=True))
    op.create_table('queues',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('updated_by', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('queues')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        for column in ('message', 'rejoined_at', 'callback_ready_at', 'callback_phone', 'callback', 'closed_reason',
                       'priority'):
            batch_op.drop_column(column)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('capacity')
        batch_op.drop_column('skills')
