"""``inbox-daemon triage``: the real pipeline over a file of messages, for evaluation.

Each line of the input is a JSON object in the format of the triage development set
(``id``, ``channel``, ``subject``, ``text``, ``sender``; optional ``headers``,
``received_at``, and ``public``, false for a direct message). The messages go through
normalisation, redaction, deduplication, classification and the reply decision, in input
order, and are stored in an in-memory database exactly as the daemon stores them; one JSON
object per input line comes out.
Without ``received_at`` the lines are one minute apart, in file order. Nothing is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings, load_settings
from .errors import ConfigError
from .interfaces import FeedbackRecord, Identity, InboundMessage
from .pipeline.dedupe import DedupeIndex
from .pipeline.normalise import clean_text, visible_text
from .pipeline.reply_policy import ReplyContext
from .pipeline.triage import Triage, load_triage
from .storage.batch import BatchPlan, SenderLimits, commit_batch
from .storage.engine import create_engine, database_url
from .storage.migrate import upgrade
from .storage.repository import acquire_lease
from .storage.schema import feedback_records, incidents

_SOURCE: Final = "triage"
_START: Final = datetime(2026, 11, 23, tzinfo=UTC)
_CHUNK: Final = 1000
_MESSAGE_ID: Final = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True, slots=True)
class Line:
    """One input message and where its result comes from."""

    id: str
    message: InboundMessage


def settings_for(config_dir: Path | None) -> Settings:
    """The settings of ``config_dir/inbox.toml``, or the defaults with that folder's rules."""
    if config_dir is not None and (config_dir / "inbox.toml").is_file():
        return load_settings(config_dir / "inbox.toml")
    folder = (config_dir or Path.cwd()).resolve()
    triage: dict[str, Any] = {}
    replies: dict[str, Any] = {}
    for key, name in (("rules_file", "rules.toml"), ("reply_rules_file", "reply_rules.toml")):
        if config_dir is not None and (folder / name).is_file():
            triage[key] = folder / name
    if config_dir is not None and (folder / "templates").is_dir():
        replies["templates_dir"] = folder / "templates"
    return Settings.model_validate(
        {
            "config_version": 1,
            "config_path": folder / "inbox.toml",
            "triage": triage,
            "replies": replies,
        }
    )


async def triage_file(source: TextIO, out: TextIO, *, settings: Settings) -> int:
    """Triage every line of ``source``, write the results to ``out``; returns the line count."""
    lines = list(read_lines(source))
    triage = load_triage(settings)
    engine = create_engine(database_url("sqlite:///:memory:", settings.config_dir))
    try:
        await upgrade(engine)
        records = _triage_all(lines, triage, settings)
        await _store(engine, list(records.values()), settings)
        results = await _results(engine, lines, records)
    finally:
        await engine.dispose()
    for result in results:
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return len(lines)


def read_lines(source: TextIO) -> Iterator[Line]:
    """The messages of a JSONL file, timed by ``received_at`` or one minute apart.

    Raises:
        ConfigError: a line is not a JSON object with ``id``, ``channel`` and ``text``.
    """
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            yield Line(
                str(item["id"]), message_from_line(item, _START + timedelta(minutes=number - 1))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"line {number}: not a message object: {exc}") from exc


def message_from_line(item: Mapping[str, Any], default_time: datetime) -> InboundMessage:
    """The message of one input line as the pipeline sees it (e-mail quotes removed)."""
    channel = str(item["channel"])
    headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
    full_text = clean_text(_valid_unicode(str(item["text"])))
    ids = _MESSAGE_ID.findall(headers.get("references", ""))
    in_reply_to = next(iter(_MESSAGE_ID.findall(headers.get("in-reply-to", ""))), None)
    message_id = next(iter(_MESSAGE_ID.findall(headers.get("message-id", ""))), None)
    external_id = message_id or str(item["id"])
    sender = str(item.get("sender") or "")
    received = item.get("received_at")
    return InboundMessage(
        external_id=external_id,
        channel=channel,
        received_at=datetime.fromisoformat(received) if received else default_time,
        sender=Identity(channel, sender.lower(), sender),
        subject=_valid_unicode(str(item.get("subject") or "")),
        text=visible_text(full_text) if channel == "email" else full_text,
        full_text=full_text,
        thread_key=(ids[0] if ids else in_reply_to) or external_id,
        raw_ref=f"line {item['id']}",
        in_reply_to=in_reply_to,
        references=tuple(ids),
        headers=headers,
        # A line without "public" is a post or group message on the social channels.
        meta={"public": bool(item.get("public", channel != "email"))},
    )


def _valid_unicode(text: str) -> str:
    # JSON may carry lone surrogates (\ud800); they cannot be stored or printed as UTF-8.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _triage_all(
    lines: Iterable[Line], triage: Triage, settings: Settings
) -> dict[str, FeedbackRecord]:
    """Each distinct message's record, keyed by external id (a repeat is stored once)."""
    index = DedupeIndex(triage.dedupe)
    own = frozenset(address.lower() for address in settings.replies.own_addresses)
    records: dict[str, FeedbackRecord] = {}
    for line in lines:
        if line.message.external_id in records:
            continue
        context = ReplyContext(
            can_send=True,
            own_addresses=own,
            loop_marker=settings.replies.loop_marker,
            max_ack_age_s=settings.replies.max_ack_age_s,
            dry_run=False,
            now=line.message.received_at,
            rules=triage.reply_rules,
        )
        records[line.message.external_id] = triage.record(
            line.message, source=_SOURCE, context=context, index=index
        )
    return records


async def _store(engine: AsyncEngine, records: list[FeedbackRecord], settings: Settings) -> None:
    now = records[-1].message.received_at if records else _START
    await acquire_lease(engine, _SOURCE, _SOURCE, ttl_s=10 * 365 * 86400, now=_START)
    limits = SenderLimits(settings.replies.per_sender_per_hour, settings.replies.per_sender_per_day)
    for start in range(0, len(records), _CHUNK):
        chunk = records[start : start + _CHUNK]
        plan = BatchPlan(
            source=_SOURCE,
            owner=_SOURCE,
            records=chunk,
            failures=(),
            cursor_version=start // _CHUNK or None,
            next_cursor={"line": start + len(chunk)},
            sla_s=settings.queue.sla_s,
            limits=limits,
        )
        await commit_batch(engine, plan, now=max(now, _START))


async def _results(
    engine: AsyncEngine, lines: list[Line], records: Mapping[str, FeedbackRecord]
) -> list[dict[str, Any]]:
    query = select(
        feedback_records.c.id,
        feedback_records.c.external_id,
        feedback_records.c.language,
        feedback_records.c.category,
        feedback_records.c.priority,
        feedback_records.c.team,
        feedback_records.c.ack_decision,
        feedback_records.c.ack_code,
        feedback_records.c.ack_reason,
        feedback_records.c.full_text,
        feedback_records.c.redactions,
        feedback_records.c.reasons,
        feedback_records.c.duplicate_of,
        incidents.c.key.label("incident"),
    ).outerjoin(incidents, incidents.c.id == feedback_records.c.incident_id)
    async with engine.connect() as conn:
        rows = {row.external_id: dict(row._mapping) for row in (await conn.execute(query)).all()}
    first_line: dict[str, str] = {}
    for line in lines:
        first_line.setdefault(line.message.external_id, line.id)
    line_of_id = {row["id"]: first_line[external_id] for external_id, row in rows.items()}
    return [_result(line, rows[line.message.external_id], first_line, line_of_id) for line in lines]


def _result(
    line: Line, row: Mapping[str, Any], first_line: Mapping[str, str], line_of_id: Mapping[int, str]
) -> dict[str, Any]:
    repeat = first_line[line.message.external_id] != line.id
    send = row["ack_decision"] == "send" and not repeat
    duplicate_of = (
        first_line[line.message.external_id] if repeat else line_of_id.get(row["duplicate_of"])
    )
    code = "duplicate" if repeat else (row["ack_code"] or None)
    return {
        "id": line.id,
        "language": row["language"],
        "category": row["category"],
        "priority": row["priority"],
        "team": row["team"],
        "should_autoreply": send,
        "autoreply_reason": None if send else code,
        "redacted_text": row["full_text"],
        "secrets_found": sorted(row["redactions"]),
        "duplicate_of": duplicate_of,
        "incident": row["incident"],
        "reasons": [*row["reasons"], f"acknowledgment: {row['ack_reason']}"],
    }
