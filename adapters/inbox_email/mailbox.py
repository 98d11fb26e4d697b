"""One folder's incremental fetch, and the cursor that says where it stopped.

The cursor rules (DESIGN.md, "Decisions that guard correctness"):

- no cursor (the first run): read what arrived since ``since`` (the backfill);
- a changed UIDVALIDITY: the old UIDs mean nothing any more, so read the folder again from
  the start with the same backfill rule (the records' Message-ID key absorbs what was seen);
- otherwise: the UIDs above the cursor's ``last_uid``.

The cursor returned never passes a message that still exists and was not returned, so a
batch that fails to be stored is simply fetched again. Nothing on the server is changed:
the folder is opened read-only unless the operator configured a post-ingest action, and
bodies are read with ``BODY.PEEK``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from inbox_daemon.errors import RetryableError

from .imap import FolderStatus, ImapSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FolderCursor:
    """Where reading a folder stopped: every UID up to ``last_uid`` was handled.

    Attributes:
        uidvalidity: the folder's UIDVALIDITY the UIDs belong to.
        last_uid: the highest UID handled (0 when none).
    """

    uidvalidity: int
    last_uid: int

    def to_json(self) -> dict[str, int]:
        """The cursor as stored: ``{"uidvalidity": n, "last_uid": n}``."""
        return {"uidvalidity": self.uidvalidity, "last_uid": self.last_uid}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FolderCursor:
        """Read a cursor written by :meth:`to_json`.

        Raises:
            ValueError: a key is missing or is not a non-negative integer.
        """
        values = [data.get(key) for key in ("uidvalidity", "last_uid")]
        if not all(type(value) is int and value >= 0 for value in values):
            raise ValueError(f"not an IMAP folder cursor: {dict(data)!r}")
        return cls(uidvalidity=int(data["uidvalidity"]), last_uid=int(data["last_uid"]))


@dataclass(frozen=True, slots=True)
class FetchedMail:
    """One message as read from a folder.

    Attributes:
        folder: the folder it was read from.
        uid: its UID there.
        uidvalidity: the folder's UIDVALIDITY when it was read.
        raw: the RFC 5322 bytes (only the first ``max_message_bytes`` when ``truncated``).
        size_bytes: the message's full size on the server.
        truncated: ``raw`` holds only the beginning of a message above the size limit.
    """

    folder: str
    uid: int
    uidvalidity: int
    raw: bytes
    size_bytes: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class FolderBatch:
    """What one :func:`fetch_folder` call read.

    Attributes:
        mails: the messages, in UID order.
        cursor: the folder's position after the last of them.
        more: the folder holds more messages past ``cursor`` right now.
        pending: the UIDs past ``cursor`` that the search found and this batch did not
            read, in UID order: the ``known`` of the next :func:`fetch_folder` call of the
            same poll.
    """

    mails: tuple[FetchedMail, ...]
    cursor: FolderCursor
    more: bool
    pending: tuple[int, ...] = ()


async def fetch_folder(
    session: ImapSession,
    folder: str,
    cursor: FolderCursor | None,
    *,
    limit: int,
    since: date | None,
    max_message_bytes: int,
    known: Sequence[int] | None = None,
) -> FolderBatch:
    """Read up to ``limit`` messages of ``folder`` that follow ``cursor``, in UID order.

    Args:
        session: a connected session.
        folder: the folder to read.
        cursor: where the last batch stopped; ``None`` on the first run.
        limit: the most messages to return (at least 1).
        since: the backfill: without a usable cursor only mail received on or after this
            day is read; ``None`` reads everything.
        max_message_bytes: larger messages are returned cut at this size, never skipped.
        known: the ``pending`` UIDs of the batch that returned ``cursor``, earlier in the
            same poll: they are read without opening and searching the folder again, which
            would list every UID still to come on each batch (quadratic in a backlog).
            Mail delivered since that search waits for the next poll, which searches.

    Raises:
        RetryableError: the connection failed, or a message that still exists could not be
            read; the cursor must not move.
        PermanentError: the folder does not exist or may not be read.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if known is not None and cursor is not None and not known:
        return FolderBatch(mails=(), cursor=cursor, more=False)
    status, found, backfill = await _pending_uids(session, folder, cursor, since, known)
    chosen = found[:limit]
    mails = await _fetch_mails(session, status, chosen, max_message_bytes)
    more = len(found) > limit
    next_cursor = _next_cursor(status, cursor, chosen, backfill=backfill, more=more)
    return FolderBatch(mails=mails, cursor=next_cursor, more=more, pending=tuple(found[limit:]))


async def _pending_uids(
    session: ImapSession,
    folder: str,
    cursor: FolderCursor | None,
    since: date | None,
    known: Sequence[int] | None,
) -> tuple[FolderStatus, Sequence[int], bool]:
    """The open folder, the UIDs to read after ``cursor`` and whether this is a backfill."""
    status = session.selected
    if status is None or status.folder != folder:
        status = await session.select(folder)
    elif known is None:
        status = await session.select(folder)  # a new poll: learn what changed
    backfill = _needs_backfill(status, cursor)
    if known is not None and not backfill:
        return status, known, False
    after_uid = None if backfill or cursor is None else cursor.last_uid
    found = await session.search_uids(after_uid=after_uid, since=since if backfill else None)
    return status, found, backfill


def _needs_backfill(status: FolderStatus, cursor: FolderCursor | None) -> bool:
    if cursor is None:
        return True
    if cursor.uidvalidity != status.uidvalidity:
        logger.warning(
            "folder %r changed UIDVALIDITY from %d to %d; reading it again from the start",
            status.folder,
            cursor.uidvalidity,
            status.uidvalidity,
        )
        return True
    return False


def _next_cursor(
    status: FolderStatus,
    cursor: FolderCursor | None,
    chosen: Sequence[int],
    *,
    backfill: bool,
    more: bool,
) -> FolderCursor:
    """The position after ``chosen``, each of which was returned or no longer exists."""
    start = 0 if backfill or cursor is None else cursor.last_uid
    last_uid = chosen[-1] if chosen else start
    if backfill and not more and status.uidnext is not None:
        # The backfill found everything it wanted: every older UID below UIDNEXT is mail from
        # before ``since``, which the first run deliberately leaves unread.
        last_uid = max(last_uid, status.uidnext - 1)
    return FolderCursor(uidvalidity=status.uidvalidity, last_uid=last_uid)


async def _fetch_mails(
    session: ImapSession, status: FolderStatus, uids: Sequence[int], max_message_bytes: int
) -> tuple[FetchedMail, ...]:
    if not uids:
        return ()
    sizes = await session.fetch_sizes(uids)
    bodies = await session.fetch_bodies(list(sizes), max_bytes=max_message_bytes)
    await _check_all_read(session, status.folder, uids, bodies)
    mails = []
    for uid in sorted(bodies):
        raw = bodies[uid]
        size_bytes = max(sizes.get(uid, 0), len(raw))
        truncated = size_bytes > len(raw)
        if truncated:
            logger.info(
                "UID %d in folder %r is %d bytes, above max_message_bytes: read the first %d",
                uid,
                status.folder,
                size_bytes,
                len(raw),
            )
        mails.append(
            FetchedMail(status.folder, uid, status.uidvalidity, raw, size_bytes, truncated)
        )
    return tuple(mails)


async def _check_all_read(
    session: ImapSession, folder: str, uids: Sequence[int], bodies: Mapping[int, bytes]
) -> None:
    """Make sure each UID asked for was read or has since been expunged.

    Raises:
        RetryableError: a message that still exists did not come back, so the cursor
            cannot move past it.
    """
    missing = [uid for uid in uids if uid not in bodies]
    if not missing:
        return
    still_there = set(await session.search_uids(after_uid=min(missing) - 1, since=None))
    unread = sorted(still_there.intersection(missing))
    if unread:
        raise _unread_error(folder, unread)
    logger.info("folder %r: %d message(s) were expunged while being read", folder, len(missing))


def _unread_error(folder: str, uids: Sequence[int]) -> RetryableError:
    shown = ", ".join(str(uid) for uid in uids[:10])
    return RetryableError(f"folder {folder!r}: the server returned no body for UID(s) {shown}")
