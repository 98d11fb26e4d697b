"""The customer's answer to a resolution notice: "is it solved?" and a 1-5 rating.

:func:`read_answer` reads a short reply in any of the bundled languages (and emoji, stars,
keycaps, full-width and Arabic-Indic digits) as a verdict (``solved`` / ``not_solved``) and
a rating. A negation wins over the word it negates ("not solved" is not "solved"); a bare
"yes" or "no" counts only as the whole answer (as in "no problem, solved" it means
nothing); a long message is a new message, not an answer, and is left to the queue.

:func:`take_answers` runs in the ingest transaction: a new record from the person a notice
was sent to, on the notice's conversation (or privately, on a chat channel, where the
notice went by DM), that reads as an answer, is stored on the notice, logged in the item's
history and never acknowledged. "Not solved" reopens the item; any other answer leaves it
resolved, and the record joins the conversation without a queue item of its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .interfaces import FeedbackRecord
from .queue import log_event, reopen_item
from .storage.schema import feedback_records, resolution_notices

SOLVED: Final = "solved"
NOT_SOLVED: Final = "not_solved"
#: Longer replies are new messages, however they start (an answer is a word and a digit).
MAX_ANSWER_CHARS: Final = 160
#: A notice is answered within this time, or its answer is read as a new message.
ANSWER_WINDOW: Final = timedelta(days=14)
ACTOR: Final = "survey"
#: The acknowledgment code of a record that is a survey answer (never acknowledged).
SURVEY_ANSWER: Final = "survey answer"
#: How much shorter folding makes a text at most, spaces apart (a keycap emoji: 3 to 1).
_MAX_SHRINK: Final = 3

# Phrases found anywhere in a short reply; negations first, as each contains its positive.
_NEGATIVE: Final = (
    # en
    r"not (?:yet )?(?:solved|resolved|fixed|sorted|working)",
    r"unsolved|unresolved|still (?:not|broken|pending|waiting|stuck|missing|no)",
    r"(?:doesn't|does not|didn't|did not|isn't|is not|hasn't|has not|wasn't|won't)\b",
    r"nothing (?:changed|happened)|same (?:problem|issue)",
    # es, pt, fr, de
    r"no (?:está |esta |ha sido |se ha )?(?:resuelto|solucionado)|sin resolver|no funciona",
    r"todav[ií]a no|sigue sin",
    r"n[ãa]o (?:foi |est[áa] )?(?:resolvido|solucionado)|n[ãa]o funciona|ainda n[ãa]o",
    r"pas (?:encore )?(?:résolu|resolu|réglé|regle)|non résolu|toujours pas",
    r"ne (?:fonctionne|marche) (?:toujours )?pas",
    r"nicht (?:gelöst|geloest|erledigt|behoben)|ungelöst|funktioniert (?:immer noch )?nicht",
    r"immer noch|noch nicht",
    # ru, uk
    r"не (?:решен\w*|решён\w*|решил\w*|работает|исправ\w*|пришл\w*)|нерешен\w*",
    r"до сих пор|вс[её] ещ[её]|по-прежнему",
    r"не (?:вирішен\w*|працює|виправ\w*)|досі|як і раніше",  # noqa: RUF001 - Ukrainian
    # tr, vi, id
    r"çözülmedi|çözülemedi|düzelmedi|halledilmedi|hala|hâlâ|olmadı",  # noqa: RUF001 - Turkish
    r"chưa (?:được )?giải quyết|không được|vẫn chưa|vẫn (?:bị|lỗi|không)",
    r"belum|tidak (?:selesai|berhasil|beres|masuk)",
    r"masih (?:belum|error|gagal)",
    # zh, ja, ko, ar
    r"没有解决|没解决|未解决|沒有解決|沒解決|未解決|还没|還沒|仍然|依然|不行",
    r"解決していない|解決してない|解決しない|解決されていない|未解決|まだ",
    r"해결\s?안\s?(?:됨|됐|되)|해결되지\s?않|아직|안\s?됐",
    r"لم يتم|لم تحل|لم يحل|ما زال|لا تزال|لا يزال",
)
_POSITIVE: Final = (
    r"solved|resolved|fixed|sorted|works|working now|all good|problem gone",
    r"resuelto|solucionado|funciona|resolvido|résolu|resolu|réglé|fonctionne|ça marche",
    r"gelöst|geloest|erledigt|behoben|funktioniert",
    r"решен\w*|решён\w*|решил\w*|работает|исправ\w*|пришл\w*",
    r"вирішен\w*|працює|виправ\w*",
    r"çözüldü|halloldu|düzeldi|sorun yok",
    r"đã (?:được )?giải quyết|ổn rồi|được rồi|xong rồi",
    r"selesai|beres|berhasil|sudah bisa",
    r"已解决|解决了|已解決|解決了|好了|可以了|搞定",
    r"解決しました|解決した|解決済み|直りました",
    r"해결(?:됨|됐|되었|했)",
    r"تم الحل|تم حل|تم حلها|انحلت|حلت",
)
#: Whole answers that are only a yes or a no to "is it solved?".
_BARE_YES: Final = frozenset(
    {"yes", "yep", "yeah", "ok", "sí", "si", "sim", "oui", "ja", "да", "так", "evet", "có"}
    | {"vâng", "ya", "iya", "是", "是的", "对", "對", "はい", "네", "예", "نعم"}
)
_BARE_NO: Final = frozenset(
    {"no", "nope", "non", "nein", "нет", "ні", "hayır", "không", "tidak", "belum"}  # noqa: RUF001
    | {"不", "否", "没有", "沒有", "いいえ", "아니요", "아니오", "لا"}
)
#: Reply-policy codes of messages no person wrote (reply_policy.py): never an answer.
_AUTOMATED: Final = frozenset(
    {
        "out-of-office",
        "auto-submitted",
        "bulk/list",
        "noreply sender",
        "mailer-daemon bounce",
        "spam/phishing",
        "own address",
    }
)
_GOOD_EMOJI: Final = frozenset("👍👌✅✔🙂😊😀😃😄🥰😍🎉🙏💯❤💚")
_BAD_EMOJI: Final = frozenset("👎❌✖😡😠😞☹🙁😢😭💢")
_STARS: Final = frozenset("⭐★🌟")
_ARABIC_DIGITS: Final = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_SCALED: Final = re.compile(
    r"(?<![0-9])([1-5])\s*(?:/|out of|из|de|sur|von|su|dari|중|에서)\s*5(?![0-9])"
)
# A lone digit: not part of a number, a time, a reference (FB-1A2B-…) or an amount.
# A word after it must be a unit of ratings: "5 stars" is a rating, "4 hours" is not.
_LONE: Final = re.compile(
    r"(?<![0-9A-Za-z.,:/#-])([1-5])(?![0-9.,:%/-])"
    r"(?!\s*(?!(?:stars?|points?|sterne?|punkte?|звезд|балл|estrellas?|estrelas?|étoiles?"
    r"|yıldız|sao|bintang|نجوم|分|点|星|점|つ星))[^\W\d_])"  # noqa: RUF001 - Turkish
)
_DIGITS: Final = re.compile(r"[0-9]+")
_WORDS: Final = re.compile(r"[^\W\d_]+")


#: Letters of the alphabets that separate words with spaces (Latin, Greek, Cyrillic).
_ALPHABETIC: Final = "a-z\u00c0-\u024f\u0370-\u052f"


def _alternation(patterns: Sequence[str]) -> re.Pattern[str]:
    # Latin and Cyrillic words need boundaries ("solved" in "unsolved"); CJK has no spaces.
    return re.compile(rf"(?<![{_ALPHABETIC}])(?:" + "|".join(patterns) + r")", re.IGNORECASE)


_NEGATIVE_RE: Final = _alternation(_NEGATIVE)
_POSITIVE_RE: Final = _alternation(_POSITIVE)


@dataclass(frozen=True, slots=True)
class SurveyAnswer:
    """What a reply says: ``verdict`` (``solved``, ``not_solved`` or ``None``), ``rating``."""

    verdict: str | None
    rating: int | None

    def describe(self) -> str:
        """The answer in a line of the item's history."""
        parts = [self.verdict.replace("_", " ") if self.verdict else "no verdict"]
        if self.rating is not None:
            parts.append(f"rating {self.rating}/5")
        return "the customer answered the survey: " + ", ".join(parts)


def read_answer(text: str) -> SurveyAnswer | None:
    """The verdict and rating ``text`` gives, or ``None`` when it is not a survey answer."""
    if len(text) > _MAX_SHRINK * MAX_ANSWER_CHARS and len(" ".join(text.split())) > (
        _MAX_SHRINK * MAX_ANSWER_CHARS
    ):
        return None  # however it folds, it stays too long: spare the folding
    plain = _normalise(text)
    if not plain or len(plain) > MAX_ANSWER_CHARS:
        return None
    answer = SurveyAnswer(_verdict(plain), _rating(plain))
    if answer.verdict is None and answer.rating is None:
        return None
    return answer


def _normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).translate(_ARABIC_DIGITS).casefold()
    folded = folded.replace("\u20e3", "").replace("\ufe0f", "")  # keycaps: 5️⃣ -> 5
    return " ".join(folded.replace("\u2019", "'").split())


def _verdict(plain: str) -> str | None:
    if _NEGATIVE_RE.search(plain):
        return NOT_SOLVED
    if _POSITIVE_RE.search(plain):
        return SOLVED
    words = _WORDS.findall(plain)
    if len(words) == 1 and words[0] in _BARE_NO:
        return NOT_SOLVED
    if len(words) == 1 and words[0] in _BARE_YES:
        return SOLVED
    return _emoji_verdict(plain, bool(words))


def _emoji_verdict(plain: str, has_words: bool) -> str | None:
    good = sum(char in _GOOD_EMOJI for char in plain)
    bad = sum(char in _BAD_EMOJI for char in plain)
    if has_words or good == bad:
        return None  # emoji beside words we could not read say too little
    return SOLVED if good > bad else NOT_SOLVED


def _rating(plain: str) -> int | None:
    stars = sum(char in _STARS for char in plain)
    if 1 <= stars <= 5:
        return stars
    scaled = _SCALED.search(plain)
    if scaled:
        return int(scaled.group(1))
    lone = _LONE.findall(plain)
    if len(lone) == 1 and len(_DIGITS.findall(plain)) == 1:
        return int(lone[0])
    return None


# --- the answer's effect, inside the ingest transaction ----------------------------------


@dataclass(frozen=True, slots=True)
class _Notice:
    id: int
    item_id: int


async def take_answers(
    conn: AsyncConnection,
    new: Sequence[tuple[int, FeedbackRecord]],
    *,
    sla_s: Mapping[str, int],
    now: datetime,
) -> set[int]:
    """Store the survey answers among ``new`` records; the ids of the records taken.

    Those records get no queue item and no acknowledgment; a ``not_solved`` answer has
    reopened its item (the record joins it), any other leaves the item resolved. An
    automatic reply to a notice (out of office, a robot) is taken too, as no answer: it
    must not reopen the item as a person writing again would.
    """
    taken: set[int] = set()
    if not await _notices_open(conn, now):
        return taken  # nobody awaits an answer: no text needs reading
    candidates = []
    for record_id, record in new:
        automatic = record.ack.code in _AUTOMATED
        answer = None if automatic else read_answer(record.message.text)
        if answer is not None or automatic:
            candidates.append((record_id, record, answer))
    # Most batches hold no answer at all: one query tells which senders await one.
    waiting = await _senders_awaiting(conn, [record for _, record, _ in candidates], now)
    for record_id, record, answer in candidates:
        if (record.message.channel, record.message.sender.id) not in waiting:
            continue
        notice = await _open_notice(conn, record, now)
        if notice is None:
            continue
        if answer is not None:
            await _answer(conn, notice, (record_id, record), answer, sla_s=sla_s, now=now)
        taken.add(record_id)
    return taken


async def _answer(
    conn: AsyncConnection,
    notice: _Notice,
    new: tuple[int, FeedbackRecord],
    answer: SurveyAnswer,
    *,
    sla_s: Mapping[str, int],
    now: datetime,
) -> None:
    await _store(conn, notice, new[0], answer, now)
    if answer.verdict == NOT_SOLVED:
        await reopen_item(conn, notice.item_id, [new], sla_s=sla_s, now=now)


async def _notices_open(conn: AsyncConnection, now: datetime) -> bool:
    """Whether any notice still awaits its answer."""
    query = select(resolution_notices.c.id).where(
        resolution_notices.c.answered_at.is_(None),
        resolution_notices.c.created_at > now - ANSWER_WINDOW,
    )
    return (await conn.execute(query.limit(1))).first() is not None


async def _senders_awaiting(
    conn: AsyncConnection, records: Sequence[FeedbackRecord], now: datetime
) -> set[tuple[str, str]]:
    """The (channel, sender) of ``records`` that have an unanswered notice in the window."""
    senders = {record.message.sender.id for record in records}
    if not senders:
        return set()
    rows = await conn.execute(
        select(resolution_notices.c.channel, resolution_notices.c.sender_id)
        .where(
            resolution_notices.c.sender_id.in_(senders),
            resolution_notices.c.answered_at.is_(None),
            resolution_notices.c.created_at > now - ANSWER_WINDOW,
        )
        .distinct()
    )
    return {(channel, sender) for channel, sender in rows.all()}


async def _open_notice(
    conn: AsyncConnection, record: FeedbackRecord, now: datetime
) -> _Notice | None:
    """The newest unanswered notice ``record`` answers, if any."""
    message = record.message
    same_thread = resolution_notices.c.thread_key == message.thread_key
    private_chat = message.channel != "email" and not message.meta.get("public", False)
    rows = await conn.execute(
        select(resolution_notices.c.id, resolution_notices.c.item_id)
        .where(
            resolution_notices.c.channel == message.channel,
            resolution_notices.c.sender_id == message.sender.id,
            resolution_notices.c.answered_at.is_(None),
            resolution_notices.c.created_at > now - ANSWER_WINDOW,
            resolution_notices.c.created_at <= message.received_at + timedelta(minutes=5),
            true() if private_chat else same_thread,
        )
        .order_by(resolution_notices.c.id.desc())
        .limit(1)
    )
    found = rows.first()
    return _Notice(found.id, found.item_id) if found is not None else None


async def _store(
    conn: AsyncConnection, notice: _Notice, record_id: int, answer: SurveyAnswer, now: datetime
) -> None:
    await conn.execute(
        update(resolution_notices)
        .where(resolution_notices.c.id == notice.id)
        .values(
            answered_at=now,
            answer_record_id=record_id,
            verdict=answer.verdict,
            rating=answer.rating,
        )
    )
    await conn.execute(
        update(feedback_records)
        .where(feedback_records.c.id == record_id)
        .values(
            ack_decision="withheld",
            ack_reason="an answer to the resolution survey",
            ack_code=SURVEY_ANSWER,
        )
    )
    await log_event(conn, notice.item_id, ACTOR, "survey", answer.describe(), now=now)
