"""evaluation protocols: how each evaluation was run, its confusion matrix, and what a re-run verified

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable, no default: the evaluations already stored keep NULL (their protocol is unknown)
    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protocol", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("confusion_matrix", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("verification", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.drop_column("verification")
        batch_op.drop_column("confusion_matrix")
        batch_op.drop_column("protocol")
