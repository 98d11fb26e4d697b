"""queue claims that expire, the queue's event log, and the indexes its listing walks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("queue_items") as batch:
        batch.add_column(sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            batch.f("ix_queue_items_priority_due_at_id"), ["priority", "due_at", "id"]
        )
        batch.create_index(
            batch.f("ix_queue_items_state_claim_expires_at"), ["state", "claim_expires_at"]
        )
    op.create_table(
        "queue_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("item_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["queue_items.id"],
            name=op.f("fk_queue_events_item_id_queue_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_events")),
    )
    with op.batch_alter_table("queue_events") as batch:
        batch.create_index(batch.f("ix_queue_events_item_id_id"), ["item_id", "id"])


def downgrade() -> None:
    with op.batch_alter_table("queue_events") as batch:
        batch.drop_index(batch.f("ix_queue_events_item_id_id"))
    op.drop_table("queue_events")
    with op.batch_alter_table("queue_items") as batch:
        batch.drop_index(batch.f("ix_queue_items_state_claim_expires_at"))
        batch.drop_index(batch.f("ix_queue_items_priority_due_at_id"))
        batch.drop_column("claim_expires_at")
