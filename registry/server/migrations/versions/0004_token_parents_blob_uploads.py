"""token parents and blob uploads: children revoked with their parent; publishing a blob needs proof of possession

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 00:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_token_parent_id"), ["parent_id"], unique=False)
        batch_op.create_foreign_key("fk_token_parent_id_token", "token", ["parent_id"], ["id"])
    # no rows to backfill: who uploaded a stored blob was never recorded, and its owners can still
    # publish it through the versions they may read
    op.create_table(
        "blob_upload",
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["blob.sha256"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("sha256", "user_id"),
    )
    with op.batch_alter_table("blob_upload", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blob_upload_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("blob_upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blob_upload_user_id"))
    op.drop_table("blob_upload")
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_constraint("fk_token_parent_id_token", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_token_parent_id"))
        batch_op.drop_column("parent_id")
