"""listing indexes: a folder's live children in every listing order

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LIVE = "trashed_at IS NULL"
# One per listing order: folder, kind, the sort key, then name and id as tie-breakers, so a page is a
# range of one index in either direction (folders and files are read one after the other).
LISTING_INDEXES = {
    "ix_nodes_live_children_name": ["parent_id", "kind", "name", "id"],
    "ix_nodes_live_children_size": ["parent_id", "kind", "size", "name", "id"],
    "ix_nodes_live_children_modified": ["parent_id", "kind", "modified_at", "name", "id"],
    "ix_nodes_live_children_type": ["parent_id", "kind", "media_type", "name", "id"],
}


def upgrade() -> None:
    for name, columns in LISTING_INDEXES.items():
        op.create_index(
            name, "nodes", columns, unique=False, sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE)
        )


def downgrade() -> None:
    for name in reversed(LISTING_INDEXES):
        op.drop_index(name, table_name="nodes")
