"""Deduplication over recent records: repeats by one person, and incidents across people.

The levels of DESIGN.md: (1) the same message fetched twice and (2) the same e-mail in two
mailboxes are absorbed by storage's unique keys. This module does the others, over an index
of the records of the last window:

- (3) + (5) **duplicate**: the same person writes again about the same problem. A person is
  known by their sender id and handle on any channel, by the UIDs and e-mail addresses they
  quote, and by the operator's list of identities known to be one person
  (``[[triage.people]]``), so a tweet and a later e-mail quoting the same UID are one person.
  "The same problem" is the same category, or a shared transaction, order or withdrawal id,
  or near-identical text.
- (4) **incident**: different people report the same problem within ``incident_window_s``:
  the same category and the same key (coin, network and direction for deposits and
  withdrawals; platform and symptom for app faults; market for trading). The first report
  joins the incident when the second arrives.
"""

from __future__ import annotations

import difflib
import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..interfaces import IncidentLink
from .entities import Entities


@dataclass(frozen=True, slots=True)
class DedupeSettings:
    """Windows and thresholds (``[dedupe]`` in the config)."""

    duplicate_window_s: float = 7 * 86400
    incident_window_s: float = 3600
    text_similarity: float = 0.85
    #: Identities (``channel:id``, ``uid:…``, ``email:…``) the operator knows to be one person,
    #: each mapped to that person's label.
    people: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the index keeps of one record."""

    reference: str
    received_at: datetime
    persons: frozenset[str]
    category: str
    entities: Entities
    text: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """The verdict on one record."""

    duplicate_of: str | None = None
    incident: IncidentLink | None = None


@dataclass(slots=True)
class _Incident:
    key: str
    title: str
    signature: tuple[str, ...]
    last_seen: datetime
    members: list[str] = field(default_factory=list)


def persons_of(
    channel: str,
    sender_id: str,
    entities: Entities,
    *,
    handle: str = "",
    people: Mapping[str, str] | None = None,
) -> frozenset[str]:
    """The keys that identify the writer.

    Their sender id and handle, the UIDs and e-mails they quote, and the person the operator
    listed any of those under (``people``: identity -> person label).
    """
    keys = {f"{channel}:{name.lower()}" for name in (sender_id, handle) if name}
    keys.update(f"uid:{uid}" for uid in entities.uids)
    keys.update(f"email:{address}" for address in entities.emails)
    if channel == "email" and sender_id:
        keys.add(f"email:{sender_id.lower()}")
    if people:
        keys.update(people[key] for key in list(keys) if key in people)
    return frozenset(keys)


def incident_signature(category: str, entities: Entities) -> tuple[str, ...] | None:
    """What makes two reports one incident; ``None`` when the record names too little."""
    if category == "deposit_withdrawal" and entities.networks and entities.directions:
        return (category, *entities.directions, *entities.coins, *entities.networks)
    if category == "bug_report" and entities.platforms and entities.symptoms:
        return (category, *entities.platforms, *entities.symptoms)
    if category == "trading" and entities.coins and entities.symptoms:
        return (category, *entities.coins, *entities.symptoms)
    return None


class DedupeIndex:
    """Recent records, reachable by person and by incident signature, and the open incidents."""

    def __init__(self, settings: DedupeSettings) -> None:
        self._settings = settings
        # A heap, the oldest message first: records do not arrive in message time (a mail
        # without a usable Date is dated when it is fetched), and one record newer than
        # those after it must not keep them from expiring.
        self._seen: list[tuple[datetime, int, Seen]] = []
        self._order = itertools.count()  # ties in time: no comparison of Seen
        self._by_person: dict[str, list[Seen]] = defaultdict(list)
        self._by_signature: dict[tuple[str, ...], list[Seen]] = defaultdict(list)
        self._incidents: dict[tuple[str, ...], _Incident] = {}

    def check(self, candidate: Seen) -> DedupeResult:
        """Match ``candidate`` against the index (without adding it)."""
        self._expire(candidate.received_at)
        original = self._original(candidate)
        if original is not None:
            return DedupeResult(duplicate_of=original.reference)
        return DedupeResult(incident=self._incident(candidate))

    def __len__(self) -> int:
        """How many records the index holds (those of the last window)."""
        return len(self._seen)

    def add(self, seen: Seen, result: DedupeResult) -> None:
        """Remember ``seen`` with the verdict it was given."""
        heapq.heappush(self._seen, (seen.received_at, next(self._order), seen))
        for person in seen.persons:
            self._by_person[person].append(seen)
        signature = incident_signature(seen.category, seen.entities)
        if signature is None:
            return
        self._by_signature[signature].append(seen)
        link = result.incident
        if link is not None:
            incident = self._incidents.setdefault(
                signature, _Incident(link.key, link.title, signature, seen.received_at)
            )
            incident.last_seen = max(incident.last_seen, seen.received_at)
            incident.members.append(seen.reference)

    def forget(self, references: set[str]) -> None:
        """Drop records that were not stored after all (a failed or absorbed batch)."""
        if not references:
            return
        self._seen = [entry for entry in self._seen if entry[2].reference not in references]
        heapq.heapify(self._seen)
        self._forget_in(self._by_person, references)
        self._forget_in(self._by_signature, references)
        for incident in self._incidents.values():
            incident.members = [ref for ref in incident.members if ref not in references]

    def _original(self, candidate: Seen) -> Seen | None:
        window = timedelta(seconds=self._settings.duplicate_window_s)
        earlier = {
            id(seen): seen
            for person in candidate.persons
            for seen in self._by_person.get(person, ())
        }
        for seen in sorted(earlier.values(), key=lambda seen: seen.received_at):
            if seen.duplicate or candidate.received_at - seen.received_at > window:
                continue
            if self._same_problem(seen, candidate):
                return seen
        return None

    def _same_problem(self, earlier: Seen, candidate: Seen) -> bool:
        if earlier.category == candidate.category:
            return True
        shared = (set(earlier.entities.tx_hashes) & set(candidate.entities.tx_hashes)) or (
            set(earlier.entities.orders) & set(candidate.entities.orders)
        )
        if shared:
            return True
        ratio = difflib.SequenceMatcher(None, earlier.text, candidate.text).quick_ratio()
        return ratio >= self._settings.text_similarity

    def _incident(self, candidate: Seen) -> IncidentLink | None:
        signature = incident_signature(candidate.category, candidate.entities)
        if signature is None:
            return None
        known = self._incidents.get(signature)
        if known is not None:
            return IncidentLink(known.key, known.title, (), known=True)
        window = timedelta(seconds=self._settings.incident_window_s)
        earlier = [
            seen
            for seen in self._by_signature.get(signature, ())
            if not seen.duplicate
            and not seen.persons & candidate.persons
            and candidate.received_at - seen.received_at <= window
        ]
        if not earlier:
            return None
        first = earlier[0]
        key = f"{'/'.join(signature)}@{first.received_at.strftime('%Y%m%dT%H%M')}"
        members = tuple(seen.reference for seen in earlier)
        return IncidentLink(key, _title(signature), members, known=False)

    def _expire(self, now: datetime) -> None:
        horizon_s = max(self._settings.duplicate_window_s, self._settings.incident_window_s)
        while self._seen and (now - self._seen[0][0]).total_seconds() > horizon_s:
            old = heapq.heappop(self._seen)[2]
            for person in old.persons:
                self._drop(self._by_person, person, old)
            signature = incident_signature(old.category, old.entities)
            if signature is not None:
                self._drop(self._by_signature, signature, old)
        for signature, incident in list(self._incidents.items()):
            if (now - incident.last_seen).total_seconds() > self._settings.incident_window_s:
                del self._incidents[signature]

    @staticmethod
    def _forget_in(buckets: dict[Any, list[Seen]], references: set[str]) -> None:
        for key, bucket in list(buckets.items()):
            bucket[:] = [seen for seen in bucket if seen.reference not in references]
            if not bucket:  # nothing else would ever remove the key
                del buckets[key]

    @staticmethod
    def _drop(buckets: dict[Any, list[Seen]], key: object, seen: Seen) -> None:
        bucket = buckets.get(key)
        if bucket is None:
            return
        bucket[:] = [other for other in bucket if other is not seen]
        if not bucket:
            del buckets[key]


def restore_index(settings: DedupeSettings, rows: Iterable[Mapping[str, Any]]) -> DedupeIndex:
    """An index filled with stored records (``recent_records`` rows), oldest first."""
    index = DedupeIndex(settings)
    for row in rows:
        entities = Entities(**{kind: tuple(values) for kind, values in row["entities"].items()})
        seen = Seen(
            reference=row["reference"],
            received_at=row["received_at"],
            persons=persons_of(
                row["channel"],
                row["sender_id"],
                entities,
                handle=row.get("sender_handle") or "",
                people=settings.people,
            ),
            category=row["category"],
            entities=entities,
            text=" ".join(str(row["text"]).lower().split()),
            duplicate=row["duplicate_of"] is not None,
        )
        key = row.get("incident_key")
        link = IncidentLink(key, row["incident_title"], known=True) if key else None
        index.add(seen, DedupeResult(incident=link))
    return index


def _title(signature: tuple[str, ...]) -> str:
    category, *keys = signature
    label = {
        "deposit_withdrawal": "problems with",
        "bug_report": "app fault:",
        "trading": "trading:",
    }
    return f"{label.get(category, category)} {' '.join(keys)}".strip()
