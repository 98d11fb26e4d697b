"""The retrospective report: what the feedback of a period says, as figures, charts and CSV.

:func:`build_report` reads the database once: volume by day, channel, category and
language; incidents with their size and duration; SLA met and missed per priority and
team; time to the first acknowledgment and to resolution; survey answers and reopenings;
the phrases that recur in each category. :func:`write_report` writes it as a standalone
HTML page (charts drawn by matplotlib, inline SVG, no script, nothing fetched) beside one
CSV file per table; the web server renders the same page at ``/report``.

Counts are of feedback records received in the period (repeats included: volume is what
arrived), and of queue items created in it; a record received before the period and
resolved within it is not counted.
"""

from __future__ import annotations

import csv
import itertools
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from .pipeline.hints import HINT_HEADER
from .storage.schema import (
    feedback_records,
    incidents,
    outbox,
    queue_events,
    queue_items,
    resolution_notices,
)
from .survey import SURVEY_ANSWER

#: Phrases shown per category, and how many records must share one for it to recur.
TOP_PHRASES: Final = 5
MIN_PHRASE_RECORDS: Final = 2
_WORD: Final = re.compile(r"[^\W\d_]{3,}")
_CJK_RUN: Final = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]{2,}")
#: Words too common to make a phrase (a few languages; the rest fall to the record count).
_STOPWORDS: Final = frozenset(
    {
        "the",
        "and",
        "for",
        "you",
        "your",
        "our",
        "this",
        "that",
        "with",
        "have",
        "has",
        "are",
        "was",
        "not",
        "but",
        "from",
        "can",
        "please",
        "hello",
        "thanks",
        "thank",
        "what",
        "when",
        "how",
        "will",
        "would",
        "there",
        "been",
        "they",
        "them",
        "its",
        "into",
        "about",
        "que",
        "los",
        "las",
        "por",
        "para",
        "una",
        "con",
        "del",
        "pero",
        "como",
        "está",
        "esta",
        "não",
        "com",
        "uma",
        "pelo",
        "les",
        "des",
        "pour",
        "pas",
        "une",
        "est",
        "avec",
        "dans",
        "sur",
        "vous",
        "nous",
        "mon",
        "mes",
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "ich",
        "mit",
        "bei",
        "auf",
        "ein",
        "eine",
        "что",
        "как",
        "это",
        "для",
        "мне",
        "все",
        "уже",
        "при",
    }
)


@dataclass(frozen=True, slots=True)
class VolumeRow:
    """Records received on ``day`` through ``channel``, of ``category``, in ``language``."""

    day: date
    channel: str
    category: str
    language: str
    records: int


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """An incident seen in the period: its size and how long reports kept coming."""

    id: int
    title: str
    category: str
    status: str
    reports: int
    first_seen: datetime
    last_seen: datetime
    duration_h: float


@dataclass(frozen=True, slots=True)
class SlaRow:
    """Items of one priority and team: resolved in time, late (resolved or not), still in time."""

    priority: str
    team: str
    met: int
    missed: int
    open_in_time: int


@dataclass(frozen=True, slots=True)
class TimingRow:
    """How long ``measure`` took for the items of ``group``: count, median, 90th percentile."""

    measure: str
    group: str
    count: int
    median_h: float
    p90_h: float


@dataclass(frozen=True, slots=True)
class SatisfactionRow:
    """Resolution notices and survey answers, and how often resolved items reopened."""

    notices: int
    surveys: int
    answered: int
    solved: int
    not_solved: int
    ratings: int
    mean_rating: float | None
    resolved_items: int
    reopened_items: int

    @property
    def reopen_rate(self) -> float | None:
        """Reopened items per resolved item."""
        return self.reopened_items / self.resolved_items if self.resolved_items else None

    @property
    def solved_rate(self) -> float | None:
        """Answers saying "solved" per answer with a verdict."""
        verdicts = self.solved + self.not_solved
        return self.solved / verdicts if verdicts else None


@dataclass(frozen=True, slots=True)
class PhraseRow:
    """A phrase found in ``records`` records of ``category``."""

    category: str
    phrase: str
    records: int


@dataclass(frozen=True, slots=True)
class HintRow:
    """Acknowledgments that linked the help-centre article ``url`` (the rule ``hint``)."""

    hint: str
    url: str
    sent: int


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the report shows for ``[since, until)``."""

    since: datetime
    until: datetime
    volume: tuple[VolumeRow, ...]
    incidents: tuple[IncidentRow, ...]
    sla: tuple[SlaRow, ...]
    timings: tuple[TimingRow, ...]
    satisfaction: SatisfactionRow
    phrases: tuple[PhraseRow, ...]
    ratings: Mapping[int, int]
    hints: tuple[HintRow, ...] = ()

    def total(self, key: str) -> dict[str, int]:
        """Records per value of the volume column ``key`` (``channel``, ``category``…)."""
        totals: Counter[str] = Counter()
        for row in self.volume:
            totals[str(getattr(row, key))] += row.records
        return dict(totals.most_common())


async def build_report(engine: AsyncEngine, *, since: datetime, until: datetime) -> Report:
    """Read the report of ``[since, until)`` (aware UTC times) in one transaction."""
    async with engine.connect() as conn:
        satisfaction, ratings = await _satisfaction(conn, since, until)
        return Report(
            since=since,
            until=until,
            volume=await _volume(conn, since, until),
            incidents=await _incidents(conn, since, until),
            sla=await _sla(conn, since, until),
            timings=(
                *await _acknowledgment_times(conn, since, until),
                *await _resolution_times(conn, since, until),
            ),
            satisfaction=satisfaction,
            phrases=await _phrases(conn, since, until),
            ratings=ratings,
            hints=await _hints(conn, since, until),
        )


async def earliest_record(engine: AsyncEngine) -> datetime | None:
    """When the oldest stored record was received (a report of everything starts there)."""
    async with engine.connect() as conn:
        found: datetime | None = await conn.scalar(select(func.min(feedback_records.c.received_at)))
    return found


def _in(column: ColumnElement[datetime], since: datetime, until: datetime) -> ColumnElement[bool]:
    return (column >= since) & (column < until)


async def _volume(conn: AsyncConnection, since: datetime, until: datetime) -> tuple[VolumeRow, ...]:
    rows = await conn.execute(
        select(
            feedback_records.c.received_at,
            feedback_records.c.channel,
            feedback_records.c.category,
            feedback_records.c.language,
        ).where(_in(feedback_records.c.received_at, since, until))
    )
    counts = Counter((at.date(), channel, cat, lang) for at, channel, cat, lang in rows.all())
    return tuple(VolumeRow(*key, records) for key, records in sorted(counts.items()))


async def _incidents(
    conn: AsyncConnection, since: datetime, until: datetime
) -> tuple[IncidentRow, ...]:
    rows = await conn.execute(
        select(incidents)
        .where(incidents.c.last_seen >= since, incidents.c.first_seen < until)
        .order_by(incidents.c.report_count.desc(), incidents.c.id)
    )
    return tuple(
        IncidentRow(
            row.id,
            row.title,
            row.category or "",
            row.status,
            row.report_count,
            row.first_seen,
            row.last_seen,
            _hours((row.last_seen - row.first_seen).total_seconds()),
        )
        for row in rows.all()
    )


async def _sla(conn: AsyncConnection, since: datetime, until: datetime) -> tuple[SlaRow, ...]:
    rows = await conn.execute(
        select(
            queue_items.c.priority,
            queue_items.c.team,
            queue_items.c.state,
            queue_items.c.due_at,
            queue_items.c.resolved_at,
        ).where(_in(queue_items.c.created_at, since, until))
    )
    tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for priority, team, state, due_at, resolved_at in rows.all():
        tally[(priority, team)][_sla_outcome(state, due_at, resolved_at, until)] += 1
    return tuple(
        SlaRow(priority, team, c["met"], c["missed"], c["open_in_time"])
        for (priority, team), c in sorted(tally.items())
    )


def _sla_outcome(
    state: str, due_at: datetime, resolved_at: datetime | None, until: datetime
) -> str:
    if state == "resolved" and resolved_at is not None:
        return "met" if resolved_at <= due_at else "missed"
    return "missed" if due_at < until else "open_in_time"


async def _acknowledgment_times(
    conn: AsyncConnection, since: datetime, until: datetime
) -> list[TimingRow]:
    notices = select(resolution_notices.c.outbox_id).where(
        resolution_notices.c.outbox_id.is_not(None)
    )
    first_sent = (
        select(outbox.c.record_id, func.min(outbox.c.sent_at).label("sent_at"))
        .where(outbox.c.state == "sent", outbox.c.id.not_in(notices))
        .group_by(outbox.c.record_id)
        .subquery()
    )
    rows = await conn.execute(
        select(feedback_records.c.channel, feedback_records.c.received_at, first_sent.c.sent_at)
        .join(first_sent, first_sent.c.record_id == feedback_records.c.id)
        .where(_in(feedback_records.c.received_at, since, until))
    )
    spans: dict[str, list[float]] = defaultdict(list)
    for channel, received_at, sent_at in rows.all():
        spans[channel].append(max((sent_at - received_at).total_seconds(), 0.0))
    return _timings("first acknowledgment", spans)


async def _resolution_times(
    conn: AsyncConnection, since: datetime, until: datetime
) -> list[TimingRow]:
    rows = await conn.execute(
        select(queue_items.c.priority, queue_items.c.created_at, queue_items.c.resolved_at).where(
            _in(queue_items.c.created_at, since, until), queue_items.c.resolved_at.is_not(None)
        )
    )
    spans: dict[str, list[float]] = defaultdict(list)
    for priority, created_at, resolved_at in rows.all():
        spans[priority].append(max((resolved_at - created_at).total_seconds(), 0.0))
    return _timings("resolution", spans)


def _timings(measure: str, spans: Mapping[str, list[float]]) -> list[TimingRow]:
    return [
        TimingRow(
            measure,
            group,
            len(values),
            _hours(statistics.median(values)),
            _hours(_percentile(values, 0.9)),
        )
        for group, values in sorted(spans.items())
    ]


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


async def _satisfaction(
    conn: AsyncConnection, since: datetime, until: datetime
) -> tuple[SatisfactionRow, dict[int, int]]:
    notices = (
        await conn.execute(
            select(
                resolution_notices.c.survey,
                resolution_notices.c.answered_at,
                resolution_notices.c.verdict,
                resolution_notices.c.rating,
            ).where(_in(resolution_notices.c.created_at, since, until))
        )
    ).all()
    ratings = Counter(row.rating for row in notices if row.rating is not None)
    resolved, reopened = await _resolved_and_reopened(conn, since, until)
    count = sum(ratings.values())
    row = SatisfactionRow(
        notices=len(notices),
        surveys=sum(1 for n in notices if n.survey),
        answered=sum(1 for n in notices if n.answered_at is not None),
        solved=sum(1 for n in notices if n.verdict == "solved"),
        not_solved=sum(1 for n in notices if n.verdict == "not_solved"),
        ratings=count,
        mean_rating=round(sum(k * v for k, v in ratings.items()) / count, 2) if count else None,
        resolved_items=resolved,
        reopened_items=reopened,
    )
    return row, {score: ratings.get(score, 0) for score in range(1, 6)}


async def _resolved_and_reopened(
    conn: AsyncConnection, since: datetime, until: datetime
) -> tuple[int, int]:
    """Items created in the period that were ever resolved, and those of them reopened."""
    rows = await conn.execute(
        select(queue_events.c.action, func.count(func.distinct(queue_events.c.item_id)))
        .join(queue_items, queue_items.c.id == queue_events.c.item_id)
        .where(
            _in(queue_items.c.created_at, since, until),
            queue_events.c.action.in_(("resolve", "reopen")),
        )
        .group_by(queue_events.c.action)
    )
    counts: dict[str, int] = {action: n for action, n in rows.all()}
    return int(counts.get("resolve", 0)), int(counts.get("reopen", 0))


async def _phrases(
    conn: AsyncConnection, since: datetime, until: datetime
) -> tuple[PhraseRow, ...]:
    rows = await conn.execute(
        select(feedback_records.c.category, feedback_records.c.subject, feedback_records.c.text)
        .where(_in(feedback_records.c.received_at, since, until))
        .where(feedback_records.c.duplicate_of.is_(None))
        .where(feedback_records.c.ack_code != SURVEY_ANSWER)  # "5, solved" says nothing new
    )
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for category, subject, text in rows.all():
        found[category].update(set(phrases_of(f"{subject}\n{text}")))
    return tuple(
        PhraseRow(category, phrase, records)
        for category in sorted(found)
        for phrase, records in _top(found[category])
    )


def _top(counts: Counter[str]) -> list[tuple[str, int]]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(p, n) for p, n in ranked if n >= MIN_PHRASE_RECORDS][:TOP_PHRASES]


def phrases_of(text: str) -> Iterable[str]:
    """The two-word phrases of ``text`` (two-character ones in Chinese, Japanese, Korean)."""
    lowered = text.casefold()
    for line in lowered.splitlines():
        words = [w for w in _WORD.findall(line) if w not in _STOPWORDS]
        yield from (f"{a} {b}" for a, b in itertools.pairwise(words))
    for run in _CJK_RUN.findall(lowered):
        yield from (run[i : i + 2] for i in range(len(run) - 1))


async def _hints(conn: AsyncConnection, since: datetime, until: datetime) -> tuple[HintRow, ...]:
    """Help-centre articles linked by the acknowledgments sent in the period."""
    rows = await conn.execute(
        select(outbox.c.payload).where(
            outbox.c.state == "sent", _in(outbox.c.created_at, since, until)
        )
    )
    counts: Counter[tuple[str, str]] = Counter()
    for (payload,) in rows.all():
        headers = payload.get("headers") if isinstance(payload, Mapping) else None
        hint = headers.get(HINT_HEADER) if isinstance(headers, Mapping) else None
        if isinstance(hint, str):
            name, _, url = hint.partition(" ")
            counts[(name, url)] += 1
    return tuple(HintRow(name, url, sent) for (name, url), sent in sorted(counts.items()))


# --- files ---------------------------------------------------------------------------


def write_csv_files(report: Report, folder: Path) -> list[Path]:
    """One CSV file per table of ``report`` in ``folder``; the paths written."""
    tables: dict[str, Sequence[Any]] = {
        "volume": report.volume,
        "incidents": report.incidents,
        "sla": report.sla,
        "timings": report.timings,
        "satisfaction": [report.satisfaction],
        "ratings": [{"rating": k, "answers": v} for k, v in report.ratings.items()],
        "phrases": report.phrases,
        "hints": report.hints,
    }
    written = []
    for name, rows in tables.items():
        path = folder / f"{name}.csv"
        _write_csv(path, rows, _columns(name, report))
        written.append(path)
    return written


def _columns(name: str, report: Report) -> list[str]:
    kinds: dict[str, type[Any]] = {
        "volume": VolumeRow,
        "incidents": IncidentRow,
        "sla": SlaRow,
        "timings": TimingRow,
        "satisfaction": SatisfactionRow,
        "phrases": PhraseRow,
        "hints": HintRow,
    }
    if name == "ratings":
        return ["rating", "answers"]
    columns = [f.name for f in fields(kinds[name])]
    if name == "satisfaction":
        columns += ["reopen_rate", "solved_rate"]
    return columns


def _write_csv(path: Path, rows: Sequence[Any], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(_csv_row(row, columns))


def _csv_row(row: object, columns: list[str]) -> dict[str, object]:
    values: dict[str, object] = dict(row) if isinstance(row, Mapping) else asdict(row)  # type: ignore[call-overload]
    values.update({c: getattr(row, c) for c in columns if c not in values})
    return {c: _csv_value(values[c]) for c in columns}


def _csv_value(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return "" if value is None else value
