"""The shared queue as plain text for a terminal: tables, one item in full, incidents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .queue import IncidentSummary, ItemDetail, QueueItem


def format_queue(items: Sequence[Mapping[str, Any]], *, now: datetime | None = None) -> str:
    """Queue items (as dicts) as a fixed-width table, with how soon each is due."""
    at = now or datetime.now(UTC)
    lines = [
        f"{'REFERENCE':<13} {'PRI':<3} {'TEAM':<16} {'STATUS':<9} {'DUE':<14} "
        f"{'ASSIGNEE':<12} {'LANG':<5} {'FROM':<28} SUBJECT"
    ]
    for item in items:
        subject = (item["subject"] or item["text"][:60]).replace("\n", " ")
        due = due_text(item["due_at"], item["status"], at)
        lines.append(
            f"{item['reference']:<13} {item['priority']:<3} {item['team'][:16]:<16} "
            f"{item['status']:<9} {due:<14} {(item['assignee'] or '-')[:12]:<12} "
            f"{item['language']:<5} {item['sender'][:28]:<28} {subject[:60]}"
        )
    return "\n".join(lines)


def due_text(due_at: datetime, status: str, now: datetime) -> str:
    """``in 3h05m``, ``OVERDUE 2d4h``, or ``-`` once resolved."""
    if status == "resolved":
        return "-"
    left = due_at - now
    return f"in {_span(left)}" if left > timedelta(0) else f"OVERDUE {_span(-left)}"


def format_change(item: QueueItem, *, now: datetime) -> str:
    """One line saying where an item stands after a change."""
    if item.status == "claimed":
        where = f"claimed by {item.assignee} until {_when(item.claim_expires_at)}"
    elif item.status == "resolved":
        where = f"resolved by {item.assignee} at {_when(item.resolved_at)}"
    else:
        where = item.status
    return (
        f"{item.reference}: {where}; {item.priority} {item.team}, "
        f"due {_when(item.due_at)} ({due_text(item.due_at, item.status, now)})"
    )


def format_detail(detail: ItemDetail, *, now: datetime) -> str:
    """Everything about one item: labels and why, acknowledgment, texts, thread, history."""
    item = detail.item
    lines = [
        format_change(item, now=now),
        f"From:     {item.sender} ({item.sender_name or 'no name'}) via "
        f"{item.channel}/{item.source}, received {_when(item.received_at)}",
        f"Subject:  {item.subject or '(none)'}",
        f"Labels:   {item.language}, {item.category}, {item.priority}, {item.team}",
        *(f"  because {reason}" for reason in detail.reasons),
    ]
    if detail.incident is not None:
        lines.append(f"Incident: {_incident_line(detail.incident)}")
    if detail.redactions:
        counts = ", ".join(f"{kind} x{n}" for kind, n in sorted(detail.redactions.items()))
        lines.append(f"Redacted: {counts}")
    lines += _acknowledgment_lines(detail)
    lines += ["", "Text:", _indent(item.text), "", "As received (redacted):"]
    lines.append(_indent(detail.full_text))
    lines += _thread_lines(detail)
    lines += _history_lines(detail)
    return "\n".join(lines)


def format_incidents(incidents: Sequence[IncidentSummary]) -> str:
    """Incidents as a table: id, reports, first and last seen, items by state, title."""
    lines = [f"{'ID':>5} {'REPORTS':>7} {'FIRST SEEN':<16} {'LAST SEEN':<16} {'ITEMS':<28} TITLE"]
    for incident in incidents:
        states = ", ".join(f"{state} {n}" for state, n in sorted(incident.items.items())) or "-"
        lines.append(
            f"{incident.id:>5} {incident.report_count:>7} {_minute(incident.first_seen):<16} "
            f"{_minute(incident.last_seen):<16} {states[:28]:<28} {incident.title}"
        )
    return "\n".join(lines)


def _acknowledgment_lines(detail: ItemDetail) -> list[str]:
    ack = detail.acknowledgment
    if ack.outbox_state is None:
        return [f"Acknowledgment: none sent: {ack.reason}"]
    line = f"Acknowledgment: {ack.outbox_state} after {ack.attempts} attempt(s)"
    if ack.sent_at is not None:
        line += f", sent {_when(ack.sent_at)}"
    if ack.last_error:
        line += f"; last error: {ack.last_error}"
    return [line, f"  subject: {ack.subject}"]


def _thread_lines(detail: ItemDetail) -> list[str]:
    if not detail.thread:
        return []
    lines = ["", "Thread (newest first):"]
    for entry in detail.thread:
        state = entry.status or (f"repeat of {entry.duplicate_of}" if entry.duplicate_of else "-")
        summary = (entry.subject or entry.text[:60]).replace("\n", " ")
        lines.append(
            f"  {entry.reference} {_minute(entry.received_at)} {entry.relation:<6} "
            f"{state:<10} {summary[:60]}"
        )
    return lines


def _history_lines(detail: ItemDetail) -> list[str]:
    if not detail.history:
        return []
    lines = ["", "History:"]
    for event in detail.history:
        note = f": {event.detail}" if event.detail else ""
        lines.append(
            f"  {_when(event.at)} {event.actor} {event.action} "
            f"({event.from_state} -> {event.to_state}){note}"
        )
    return lines


def _incident_line(incident: IncidentSummary) -> str:
    return f"#{incident.id} {incident.title} ({incident.report_count} reports, {incident.status})"


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines()) or "  (empty)"


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "-"


def _minute(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M}"
