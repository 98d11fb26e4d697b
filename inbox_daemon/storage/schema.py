"""The database schema as SQLAlchemy Core tables; Alembic (``migrations/``) creates it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

#: Integer primary keys: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC timestamp on every backend (SQLite would otherwise drop the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(name: str, *, nullable: bool = True) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=nullable)


sources = Table(
    "sources",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False, default="idle"),
    _when("last_poll_at"),
    _when("last_success_at"),
    Column("last_error", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    _when("backoff_until"),
    Column("fetched_total", BigInteger, nullable=False, default=0),
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    _when("updated_at", nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    _when("expires_at", nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("title", Text, nullable=False),
    Column("key", String(255), nullable=False, unique=True),
    Column("category", String(32)),
    _when("first_seen", nullable=False),
    _when("last_seen", nullable=False),
    Column("report_count", Integer, nullable=False, default=1),
    Column("status", String(16), nullable=False, default="open"),
)

feedback_records = Table(
    "feedback_records",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("reference", String(16), nullable=False, unique=True),
    Column("source", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("external_id", String(512), nullable=False),
    _when("received_at", nullable=False),
    _when("ingested_at", nullable=False),
    Column("sender_id", String(320), nullable=False),
    Column("sender_handle", String(320), nullable=False),
    Column("sender_name", Text, nullable=False, default=""),
    Column("recipients", JSON, nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("text", Text, nullable=False),
    Column("full_text", Text, nullable=False),
    Column("thread_key", String(512), nullable=False),
    Column("in_reply_to", String(512)),
    Column("headers", JSON, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("attachments", JSON, nullable=False),
    Column("raw_ref", Text, nullable=False),
    Column("notes", JSON, nullable=False),
    Column("language", String(16), nullable=False),
    Column("category", String(32), nullable=False),
    Column("priority", String(2), nullable=False),
    Column("team", String(32), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("redactions", JSON, nullable=False),
    Column("entities", JSON, nullable=False),
    Column("duplicate_of", Id, ForeignKey("feedback_records.id", ondelete="SET NULL")),
    Column("incident_id", Id, ForeignKey("incidents.id", ondelete="SET NULL")),
    Column("status", String(16), nullable=False, default="new"),
    Column("ack_decision", String(16), nullable=False),
    Column("ack_reason", Text, nullable=False),
    Column("ack_code", String(32), nullable=False, server_default=""),
    # The version of the message stored (InboundMessage.revision): a higher one replaces it.
    Column("revision", BigInteger, nullable=False, server_default="0"),
    # Set when retention stripped the record of everything that identifies its sender.
    _when("anonymised_at"),
    UniqueConstraint("source", "external_id"),
    Index(None, "channel", "external_id"),
    Index(None, "channel", "sender_id", "received_at"),
    Index(None, "thread_key"),
    Index(None, "incident_id"),  # an incident's reports are counted at each batch
)

#: The WHERE of the partial indexes of open queue items, spelled as queue.UNRESOLVED is.
_OPEN_ITEMS: Final[dict[str, Any]] = {
    "sqlite_where": text("state != 'resolved'"),
    "postgresql_where": text("state != 'resolved'"),
}

queue_items = Table(
    "queue_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "record_id",
        Id,
        ForeignKey("feedback_records.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("state", String(16), nullable=False, default="new"),
    Column("team", String(32), nullable=False),
    Column("priority", String(2), nullable=False),
    Column("assignee", String(128)),
    _when("created_at", nullable=False),
    _when("due_at", nullable=False),
    _when("claimed_at"),
    _when("resolved_at"),
    Column("resolution_note", Text),
    # A claim ends here; an item still claimed after it is back in the queue (queue.py).
    _when("claim_expires_at"),
    Index(None, "state", "team", "priority", "due_at"),
    Index(None, "priority", "due_at", "id"),
    Index(None, "state", "claim_expires_at"),
    # The work still to do, in listing order, everyone's and a team's: resolved items pile
    # up for ever, and a listing of open items must not walk past them (queue.UNRESOLVED).
    Index("ix_queue_items_open_priority_due_at_id", "priority", "due_at", "id", **_OPEN_ITEMS),
    Index(
        "ix_queue_items_open_team_priority_due_at_id",
        "team",
        "priority",
        "due_at",
        "id",
        **_OPEN_ITEMS,
    ),
)

#: Every change of a queue item's state: who, when, from what to what (append-only).
queue_events = Table(
    "queue_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("item_id", Id, ForeignKey("queue_items.id", ondelete="CASCADE"), nullable=False),
    _when("at", nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Index(None, "item_id", "id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("record_id", Id, ForeignKey("feedback_records.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    _when("next_attempt_at", nullable=False),
    Column("last_error", Text),
    Column("external_id", String(512)),
    _when("created_at", nullable=False),
    _when("sent_at"),
    Index(None, "state", "next_attempt_at"),
)

reply_log = Table(
    "reply_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),
    Column("thread_key", String(512), nullable=False),
    Column("sender_id", String(320), nullable=False),
    Column("record_id", Id, ForeignKey("feedback_records.id", ondelete="CASCADE"), nullable=False),
    _when("created_at", nullable=False),
    UniqueConstraint("channel", "thread_key"),
    Index(None, "channel", "sender_id", "created_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("external_id", String(512), nullable=False),
    Column("raw_ref", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("replayed", Boolean, nullable=False, default=False),
    _when("created_at", nullable=False),
    UniqueConstraint("source", "external_id"),
)

#: Support staff: who may sign in, to which team they belong, and their role.
agents = Table(
    "agents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("team", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    _when("created_at", nullable=False),
    # A disabled agent keeps their row (the audit log names them) but can no longer act.
    _when("disabled_at"),
)

#: Agents' API tokens: a public ``token_id`` to find the row, the SHA-256 of the secret part.
agent_tokens = Table(
    "agent_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("agent_id", Id, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("token_id", String(32), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False),
    _when("created_at", nullable=False),
    _when("expires_at", nullable=False),
    _when("revoked_at"),
    Index(None, "agent_id"),
)

#: Who did what, when and from where: views, claims, exports, token changes, reloads,
#: retention and erasure. Append-only (triggers refuse UPDATE and DELETE); no foreign keys,
#: so a row outlives the item it names.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _when("at", nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("origin", String(255), nullable=False),
    Column("item_ref", String(16)),
    Column("detail", JSON, nullable=False),
    Index(None, "item_ref", "id"),
    Index(None, "actor", "id"),
)

#: One row per alert and target: P1 items and SLA breaches, each sent once.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("item_id", Id, ForeignKey("queue_items.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(16), nullable=False),
    Column("target", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    _when("next_attempt_at", nullable=False),
    Column("last_error", Text),
    _when("created_at", nullable=False),
    _when("sent_at"),
    UniqueConstraint("item_id", "event", "target"),
    Index(None, "state", "next_attempt_at"),
)

#: The reply an agent sent when resolving an item (one row per notice), whether it asked the
#: customer's verdict and rating, and the answer read from their reply (resolution.py).
resolution_notices = Table(
    "resolution_notices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("item_id", Id, ForeignKey("queue_items.id", ondelete="CASCADE"), nullable=False),
    Column("record_id", Id, ForeignKey("feedback_records.id", ondelete="CASCADE"), nullable=False),
    Column("outbox_id", Id, ForeignKey("outbox.id", ondelete="SET NULL")),
    Column("channel", String(16), nullable=False),
    Column("sender_id", String(320), nullable=False),
    Column("thread_key", String(512), nullable=False),
    Column("agent", String(128), nullable=False),
    Column("language", String(16), nullable=False),
    # Whether the notice asked "is it solved?" and for a rating (at most weekly per person).
    Column("survey", Boolean, nullable=False),
    _when("created_at", nullable=False),
    _when("answered_at"),
    Column("answer_record_id", Id, ForeignKey("feedback_records.id", ondelete="SET NULL")),
    # "solved" or "not_solved" (None: no verdict given, or no answer yet); rating 1-5.
    Column("verdict", String(16)),
    Column("rating", Integer),
    Index(None, "channel", "sender_id", "created_at"),
    Index(None, "item_id"),
    # Whether any notice awaits its answer, asked once per ingest batch (survey.py).
    Index(
        "ix_resolution_notices_awaiting",
        "created_at",
        sqlite_where=text("answered_at IS NULL"),
        postgresql_where=text("answered_at IS NULL"),
    ),
)
