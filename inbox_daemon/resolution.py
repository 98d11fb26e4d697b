"""Resolution notices: the agent's reply to the customer when an item is resolved.

``queue resolve REF --reply TEXT`` (and the API's and the page's resolve with a reply)
resolves the item and, in the same transaction, queues the reply in the outbox like an
acknowledgment: one row, delivered by the source's adapter, retried, never sent twice. The
text is the agent's, wrapped in the customer's language template
(``templates/resolution/<channel>/notice.<language>.txt``, ``default/`` for any channel), on
the channel and thread the feedback came from: e-mail threaded with ``In-Reply-To`` and
``References``; X always by DM (a resolution is nobody else's business). A resolve without a
reply sends nothing.

The notice asks whether the problem is solved and for a 1-5 rating, unless the same person
was asked within ``SURVEY_INTERVAL``; the answer is read by :mod:`.survey`. The
notice also takes the conversation's one acknowledgment (``reply_log``), so a reply to it is
never acknowledged: no loop with a customer's robot either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import queue
from .config import Settings
from .errors import ConfigError
from .interfaces import Identity, ReplyDraft
from .pipeline.templates import CheckedTemplates, RenderedReply, fallback_languages, split_subject
from .queue import InvalidInputError, QueueItem
from .storage.batch import upsert
from .storage.rows import draft_payload
from .storage.schema import feedback_records, outbox, queue_items, reply_log, resolution_notices
from .visibility import Scope

#: A person is asked for their verdict and rating at most once in this interval.
SURVEY_INTERVAL: Final = timedelta(days=7)
MAX_REPLY_CHARS: Final = 10_000
#: The channel whose replies are e-mails, with a Subject line; chats take the body only.
_EMAIL: Final = "email"
_FOLDER: Final = "resolution"

_SAMPLE: Final[Mapping[str, object]] = {
    "reference": "FB-0000-0000",
    "ticket_url": "https://support.example.com/new?ref=FB-0000-0000",
    "display_name": "Sample Customer",
    "subject": "Sample subject",
    "channel": "email",
    "language": "en",
    "reply": "Your withdrawal was credited.\nSorry for the delay.",
    "survey": True,
}
#: What each template is checked with at load: the sample, and without the optional parts.
_SAMPLES: Final = (_SAMPLE, {**_SAMPLE, "survey": False, "display_name": "", "subject": ""})


class NoticeTemplates:
    """The resolution notice templates of one folder, compiled and checked at load.

    Raises:
        ConfigError: the folder has no English fallback, or a template does not render.
    """

    def __init__(self, folder: Path, ticket_url: str) -> None:
        self._ticket_url = ticket_url
        self._templates = CheckedTemplates(folder, "*/notice.*.txt", _SAMPLES)
        if "default/notice.en.txt" not in self._templates.by_name:
            raise ConfigError(
                "no English notice template (default/notice.en.txt)", path=str(folder)
            )

    @property
    def languages(self) -> frozenset[str]:
        """The languages with a default notice template."""
        return frozenset(
            name.split(".")[1] for name in self._templates.by_name if name.startswith("default/")
        )

    def render(self, *, channel: str, language: str, values: Mapping[str, object]) -> RenderedReply:
        """Render the notice for ``channel`` in ``language`` (falling back to English); the
        subject is the e-mail's, empty on other channels.

        ``values`` holds ``reference``, ``display_name``, ``subject``, ``reply`` (the agent's
        text) and ``survey`` (ask for the verdict and rating).
        """
        template = self._templates.first(
            f"{folder}/notice.{lang}.txt"
            for lang in fallback_languages(language)
            for folder in (channel, "default")
        )
        if template is None:
            raise ConfigError("no English notice template (default/notice.en.txt)")
        reference = str(values["reference"])
        url = self._ticket_url.format(reference=quote(reference, safe=""))
        context = {**values, "channel": channel, "language": language, "ticket_url": url}
        rendered = split_subject(template.render(context))
        return rendered if channel == _EMAIL else RenderedReply("", rendered.text)


def load_notice_templates(settings: Settings) -> NoticeTemplates:
    """The notice templates of ``[replies] templates_dir`` (the bundled ones by default, or
    when that folder has no ``resolution/``).

    Raises:
        ConfigError: a template is invalid.
    """
    configured = settings.replies.templates_dir
    if configured is not None:
        folder = configured if configured.is_absolute() else settings.config_dir / configured
        if (folder / _FOLDER).is_dir():
            return NoticeTemplates(folder / _FOLDER, settings.replies.ticket_url)
    bundled = files("inbox_daemon.bundled_config") / "templates" / _FOLDER
    with as_file(bundled) as folder:
        return NoticeTemplates(folder, settings.replies.ticket_url)


_LOADED: dict[tuple[Path | None, Path, str], NoticeTemplates] = {}


async def notice_templates(settings: Settings) -> NoticeTemplates:
    """:func:`load_notice_templates`, read off the event loop once per folder and URL."""
    key = (settings.replies.templates_dir, settings.config_dir, settings.replies.ticket_url)
    if key not in _LOADED:
        _LOADED[key] = await asyncio.to_thread(load_notice_templates, settings)
    return _LOADED[key]


async def resolve_with_reply(
    engine: AsyncEngine,
    reference: str,
    agent: str,
    *,
    reply: str | None,
    templates: NoticeTemplates,
    loop_marker: str,
    note: str | None = None,
    now: datetime | None = None,
    scope: Scope | None = None,
    origin: str = "",
) -> QueueItem:
    """Resolve ``reference`` as :func:`~inbox_daemon.queue.resolve` does and, when ``reply``
    is given, queue the resolution notice carrying it in the same transaction.

    ``reply`` ``None`` resolves silently: nothing is sent.

    Raises:
        InvalidInputError: an empty reply, or one over 10,000 characters.
        NotFoundError, ConflictError: as :func:`~inbox_daemon.queue.resolve`.
    """
    if reply is None:
        return await queue.resolve(
            engine, reference, agent, note=note, now=now, scope=scope, origin=origin
        )
    text = _reply_text(reply)

    async def queue_notice(conn: AsyncConnection, item_id: int, at: datetime) -> None:
        await _queue_notice(conn, item_id, at, _Notice(agent, text, templates, loop_marker))

    return await queue.resolve(
        engine,
        reference,
        agent,
        note=note,
        now=now,
        scope=scope,
        origin=origin,
        then=queue_notice,
    )


@dataclass(frozen=True, slots=True)
class _Notice:
    agent: str
    reply: str
    templates: NoticeTemplates
    loop_marker: str


def _reply_text(reply: str) -> str:
    text = reply.strip()
    if not text:
        raise InvalidInputError("empty; resolve without a reply to send nothing", field="reply")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidInputError(f"longer than {MAX_REPLY_CHARS} characters", field="reply")
    return text


async def _queue_notice(conn: AsyncConnection, item_id: int, at: datetime, notice: _Notice) -> None:
    record = (
        await conn.execute(
            select(feedback_records)
            .join(queue_items, queue_items.c.record_id == feedback_records.c.id)
            .where(queue_items.c.id == item_id)
        )
    ).one()
    if record.channel != "twitter" and (record.meta or {}).get("public"):
        # Only X answers a public post privately (by DM); elsewhere the reply would be public.
        raise InvalidInputError(
            "the feedback was posted in a public chat, where a reply would be public too; "
            "answer the customer privately and resolve silently",
            field="reply",
        )
    survey = not await _surveyed_recently(conn, record.channel, record.sender_id, at)
    draft = await _draft(conn, record, notice, survey=survey)
    outbox_id = await _insert_outbox(conn, record, draft, at)
    await conn.execute(
        insert(resolution_notices).values(
            item_id=item_id,
            record_id=record.id,
            outbox_id=outbox_id,
            channel=record.channel,
            sender_id=record.sender_id,
            thread_key=record.thread_key,
            agent=notice.agent,
            language=draft.language,
            survey=survey,
            created_at=at,
        )
    )
    await _take_thread(conn, record, at)


async def _surveyed_recently(
    conn: AsyncConnection, channel: str, sender_id: str, at: datetime
) -> bool:
    asked = await conn.scalar(
        select(resolution_notices.c.id)
        .where(
            resolution_notices.c.channel == channel,
            resolution_notices.c.sender_id == sender_id,
            resolution_notices.c.survey.is_(True),
            resolution_notices.c.created_at > at - SURVEY_INTERVAL,
        )
        .limit(1)
    )
    return asked is not None


async def _draft(
    conn: AsyncConnection, record: Row[Any], notice: _Notice, *, survey: bool
) -> ReplyDraft:
    language = record.language if record.language in notice.templates.languages else "en"
    rendered = notice.templates.render(
        channel=record.channel,
        language=language,
        values={
            "reference": record.reference,
            "display_name": record.sender_name,
            "subject": record.subject,
            "reply": notice.reply,
            "survey": survey,
        },
    )
    return ReplyDraft(
        recipient=await _recipient(conn, record),
        subject=rendered.subject,
        text=rendered.text,
        language=language,
        thread_key=record.thread_key,
        in_reply_to=_answering(record.channel, record.external_id),
        references=_references(record.headers, record.external_id),
        headers={"X-Loop": notice.loop_marker},
    )


async def _recipient(conn: AsyncConnection, record: Row[Any]) -> Identity:
    """Whom the acknowledgment went to (e-mail Reply-To), else the sender."""
    payload = await conn.scalar(
        select(outbox.c.payload)
        .where(outbox.c.record_id == record.id)
        .order_by(outbox.c.id)
        .limit(1)
    )
    if isinstance(payload, Mapping) and isinstance(payload.get("recipient"), Mapping):
        return Identity(**payload["recipient"])
    return Identity(record.channel, record.sender_id, record.sender_handle, record.sender_name)


def _answering(channel: str, external_id: str) -> str:
    # The X adapter answers ``dm:…`` by a direct message to the recipient, anything else in
    # public: a resolution is always told privately, whether the feedback was a post or a DM.
    if channel == "twitter" and not external_id.startswith("dm:"):
        return f"dm:{external_id}"
    return external_id


def _references(headers: Mapping[str, Any], external_id: str) -> tuple[str, ...]:
    earlier = str(headers.get("references") or "").split()
    return tuple(dict.fromkeys([*earlier, external_id]))


async def _insert_outbox(
    conn: AsyncConnection, record: Row[Any], draft: ReplyDraft, at: datetime
) -> int:
    row = {
        "record_id": record.id,
        "source": record.source,
        "channel": record.channel,
        "recipient": draft.recipient.handle,
        "payload": {**draft_payload(draft), "kind": "resolution"},
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }
    outbox_id: int = (
        await conn.execute(insert(outbox).values(row).returning(outbox.c.id))
    ).scalar_one()
    return outbox_id


async def _take_thread(conn: AsyncConnection, record: Row[Any], at: datetime) -> None:
    """Claim the conversation's one acknowledgment, if it is still free (see module doc)."""
    await conn.execute(
        upsert(conn, reply_log)
        .values(
            channel=record.channel,
            thread_key=record.thread_key,
            sender_id=record.sender_id,
            record_id=record.id,
            created_at=at,
        )
        .on_conflict_do_nothing(index_elements=["channel", "thread_key"])
    )
