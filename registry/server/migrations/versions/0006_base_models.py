"""base models: Hub ids, aliases, module manifests, mirrored files; per version the engines and warnings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "base_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hub_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("revision", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("architecture", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("mirror", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_base_model_hub_id"), "base_model", ["hub_id"], unique=True)
    op.create_table(
        "base_alias",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["base_id"], ["base_model.id"]),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index(op.f("ix_base_alias_base_id"), "base_alias", ["base_id"], unique=False)
    op.create_table(
        "base_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["base_id"], ["base_model.id"]),
        sa.ForeignKeyConstraint(["sha256"], ["blob.sha256"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("base_id", "path"),
    )
    op.create_index(op.f("ix_base_file_base_id"), "base_file", ["base_id"], unique=False)
    with op.batch_alter_table("version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("engines", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("version", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("engines")
    op.drop_index(op.f("ix_base_file_base_id"), table_name="base_file")
    op.drop_table("base_file")
    op.drop_index(op.f("ix_base_alias_base_id"), table_name="base_alias")
    op.drop_table("base_alias")
    op.drop_index(op.f("ix_base_model_hub_id"), table_name="base_model")
    op.drop_table("base_model")
