"""indexes for work that grows with history: the open queue items, an incident's reports

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The open items: listing them, most urgent first, read past every resolved item before.
_OPEN_ITEMS = {
    "sqlite_where": sa.text("state != 'resolved'"),
    "postgresql_where": sa.text("state != 'resolved'"),
}
_OPEN_INDEXES = {
    "ix_queue_items_open_priority_due_at_id": ["priority", "due_at", "id"],
    "ix_queue_items_open_team_priority_due_at_id": ["team", "priority", "due_at", "id"],
}


def upgrade() -> None:
    # Each batch recounts the reports of the incidents it extends: without the index, a scan
    # of every record per incident, and ingest slowed down as the table grew.
    with op.batch_alter_table("feedback_records") as batch:
        batch.create_index(batch.f("ix_feedback_records_incident_id"), ["incident_id"])
    with op.batch_alter_table("queue_items") as batch:
        for name, columns in _OPEN_INDEXES.items():
            batch.create_index(name, columns, **_OPEN_ITEMS)


def downgrade() -> None:
    with op.batch_alter_table("queue_items") as batch:
        for name in _OPEN_INDEXES:
            batch.drop_index(name)
    with op.batch_alter_table("feedback_records") as batch:
        batch.drop_index(batch.f("ix_feedback_records_incident_id"))
