"""search indexes: (filter, created_at, id) on adapter so filtered newest-first pages need no sort

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:55:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_adapter_namespace_id_newest": ["namespace_id", "created_at", "id"],
    "ix_adapter_task_newest": ["task", "created_at", "id"],
    "ix_adapter_method_newest": ["method", "created_at", "id"],
    "ix_adapter_base_model_newest": ["base_model", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "adapter", columns, unique=False)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="adapter")
