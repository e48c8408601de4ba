"""alias tags: an alias made by the Hugging Face tag route never moves

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alias", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_tag", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("alias", schema=None) as batch_op:
        batch_op.drop_column("is_tag")
