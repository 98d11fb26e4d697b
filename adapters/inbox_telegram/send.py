"""Acknowledgments posted into the chat they answer.

In a group the reply answers the message (``reply_to``) with the short public text the
templates write for ``meta["public"]`` (no personal data: the reference and the ticket link);
in a private chat it is the full acknowledgment.

Idempotency: ``messages.sendMessage`` carries a ``random_id`` that Telegram keeps per account and
refuses to use twice (``RANDOM_ID_DUPLICATE``). It is derived from the source name and the
outbox row id, so a retry of a send whose answer was lost cannot post a second message; the
duplicate refusal is reported as sent. (After a crash the core marks a ``sending`` Telegram row
``unknown`` and never resends it.)
"""

from __future__ import annotations

import hashlib
import logging
import struct

from telethon import errors
from telethon.tl import functions
from telethon.tl import types as tl

from inbox_daemon.interfaces import OutboundReply, SendResult

from .normalise import TLObject

logger = logging.getLogger(__name__)

#: Telegram refuses longer messages (MESSAGE_TOO_LONG).
MAX_MESSAGE_CHARS = 4096
#: What Telegram answers when the message a reply answers no longer exists.
_ANSWERED_GONE = frozenset({"MSG_ID_INVALID", "REPLY_MESSAGE_ID_INVALID", "REPLY_TO_INVALID"})


def random_id_for(source: str, idempotency_key: str) -> int:
    """The ``random_id`` of a reply: the same for every attempt at one outbox row."""
    digest = hashlib.sha256(f"{source}\0{idempotency_key}".encode()).digest()
    return int(struct.unpack("<q", digest[:8])[0])


def replied_message_id(reply: OutboundReply) -> int | None:
    """The id of the message answered, when it is in the chat the reply goes to."""
    if not reply.in_reply_to:
        return None
    chat, _, message_id = reply.in_reply_to.rpartition(":")
    if chat != reply.recipient.id or not message_id.isdigit():
        return None
    return int(message_id)


async def post_reply(
    client: TLObject, peer: TLObject, reply: OutboundReply, *, source: str
) -> SendResult:
    """Send ``reply`` to ``peer`` as an answer to the message it acknowledges."""
    if len(reply.text) > MAX_MESSAGE_CHARS:
        return SendResult.failed(f"reply of {len(reply.text)} characters is over Telegram's 4096")
    random_id = random_id_for(source, reply.idempotency_key)
    answered = replied_message_id(reply)
    try:
        try:
            result = await client(_request(peer, reply.text, random_id, answered))
        except errors.BadRequestError as exc:
            if answered is None or exc.message not in _ANSWERED_GONE:
                raise
            # The message answered was deleted: the acknowledgment still goes to the chat.
            result = await client(_request(peer, reply.text, random_id, None))
    except errors.RandomIdDuplicateError:
        return SendResult.sent(f"{reply.recipient.id}:random-{random_id & 0xFFFFFFFF:08x}")
    except errors.FloodError as exc:
        seconds = float(getattr(exc, "seconds", 0) or 0)
        return SendResult.retry(f"Telegram asks to wait {seconds:.0f} s", defer_s=seconds or None)
    except (errors.ServerError, errors.TimedOutError) as exc:
        return SendResult.retry(f"Telegram failed for now: {exc.message}")
    except errors.RPCError as exc:  # blocked by the user, no right to write, deleted account…
        return SendResult.failed(f"Telegram refused the reply: {exc.message}")
    except (ConnectionError, OSError, TimeoutError) as exc:
        return SendResult.retry(f"{type(exc).__name__}: {exc}")
    sent = sent_message_id(result, random_id)
    return SendResult.sent(f"{reply.recipient.id}:{sent}" if sent else reply.recipient.id)


def _request(peer: TLObject, text: str, random_id: int, answered: int | None) -> TLObject:
    return functions.messages.SendMessageRequest(
        peer=peer,
        message=text,
        random_id=random_id,
        no_webpage=True,
        reply_to=tl.InputReplyToMessage(reply_to_msg_id=answered) if answered else None,
    )


def sent_message_id(result: TLObject, random_id: int) -> int | None:
    """The id Telegram gave the message sent with ``random_id``."""
    if isinstance(result, tl.UpdateShortSentMessage):
        return int(result.id)
    for update in getattr(result, "updates", ()):
        if isinstance(update, tl.UpdateMessageID) and update.random_id == random_id:
            return int(update.id)
    for update in getattr(result, "updates", ()):
        if isinstance(update, tl.UpdateNewMessage | tl.UpdateNewChannelMessage):
            return int(update.message.id)
    return None
