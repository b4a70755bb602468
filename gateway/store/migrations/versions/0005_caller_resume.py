"""records: the hash of the caller's resume token on each call record, so that a waiting caller resumes in place
after its node restarted or crashed

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('caller_resume', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_calls_caller_resume'), ['caller_resume'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_caller_resume'))
        batch_op.drop_column('caller_resume')
