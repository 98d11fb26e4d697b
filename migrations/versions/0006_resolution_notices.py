"""resolution notices: the agent's reply to a resolved item, the survey it asks, the answer

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resolution_notices",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("item_id", _ID, nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("outbox_id", _ID, nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("sender_id", sa.String(length=320), nullable=False),
        sa.Column("thread_key", sa.String(length=512), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("survey", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_record_id", _ID, nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["queue_items.id"],
            name=op.f("fk_resolution_notices_item_id_queue_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["feedback_records.id"],
            name=op.f("fk_resolution_notices_record_id_feedback_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox.id"],
            name=op.f("fk_resolution_notices_outbox_id_outbox"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["answer_record_id"],
            ["feedback_records.id"],
            name=op.f("fk_resolution_notices_answer_record_id_feedback_records"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resolution_notices")),
    )
    with op.batch_alter_table("resolution_notices") as batch:
        batch.create_index(
            batch.f("ix_resolution_notices_channel_sender_id_created_at"),
            ["channel", "sender_id", "created_at"],
        )
        batch.create_index(batch.f("ix_resolution_notices_item_id"), ["item_id"])
        batch.create_index(
            "ix_resolution_notices_awaiting",
            ["created_at"],
            sqlite_where=sa.text("answered_at IS NULL"),
            postgresql_where=sa.text("answered_at IS NULL"),
        )


def downgrade() -> None:
    op.drop_table("resolution_notices")
