"""Turn one normalised message into a feedback record.

The order is DESIGN.md's: redact secrets (nothing after this step sees them), detect the
language, classify, extract entities, deduplicate, then decide and render the
acknowledgment.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from importlib.resources import as_file, files
from pathlib import Path

from ..config import Settings
from ..interfaces import AckDecision, Classifier, FeedbackRecord, InboundMessage, ReplyDraft
from .classify import load_rules
from .dedupe import DedupeIndex, DedupeResult, DedupeSettings, Seen, persons_of
from .entities import extract_entities
from .hints import HINT_HEADER, HintLines, HintSpec, choose_hint, load_hint_lines, load_hints
from .language import UNDETERMINED, detect_language
from .redact import redact
from .reference import new_reference
from .reply_policy import ReplyContext, ReplyRules, decide, load_reply_rules
from .templates import TemplateSet

#: Withholding reasons that come before "duplicate" in the reply policy's order.
_BEFORE_DUPLICATE = frozenset(
    {
        "mailer-daemon bounce",
        "out-of-office",
        "auto-submitted",
        "bulk/list",
        "noreply sender",
        "spam/phishing",
        "not addressed to us",
    }
)


@dataclass(frozen=True, slots=True)
class Triage:
    """The loaded rules, templates and reply rules, and the reply settings they apply."""

    classifier: Classifier
    templates: TemplateSet
    reply_rules: ReplyRules
    loop_marker: str
    dedupe: DedupeSettings
    hints: tuple[HintSpec, ...] = ()
    hint_lines: HintLines | None = None

    def record(
        self,
        message: InboundMessage,
        *,
        source: str,
        context: ReplyContext,
        index: DedupeIndex,
        reference: str | None = None,
    ) -> FeedbackRecord:
        """The feedback record of ``message`` as received through ``source``.

        ``index`` holds the recent records; the new record is added to it.
        """
        message, redactions = _redacted(message)
        language = detect_language(f"{message.subject}\n{message.text}")
        classification = self.classifier.classify(message, language)
        entities = extract_entities(f"{message.subject}\n{message.text}")
        seen = Seen(
            reference=reference or new_reference(),
            received_at=message.received_at,
            persons=persons_of(
                message.channel,
                message.sender.id,
                entities,
                handle=message.sender.handle,
                people=self.dedupe.people,
            ),
            category=classification.category,
            entities=entities,
            text=" ".join(message.text.lower().split()),
        )
        verdict = index.check(seen)
        ack = _with_dedupe(decide(message, context), verdict)
        index.add(replace(seen, duplicate=verdict.duplicate_of is not None), verdict)
        reply = self._draft(
            message,
            seen.reference,
            language,
            classification.category,
            ack,
            verdict,
            tuple(redactions),
        )
        return FeedbackRecord(
            source=source,
            message=message,
            reference=seen.reference,
            language=language,
            classification=classification,
            ack=ack,
            reply=reply,
            redactions=redactions,
            entities=entities.as_dict(),
            duplicate_of=verdict.duplicate_of,
            incident=verdict.incident,
        )

    def _draft(
        self,
        message: InboundMessage,
        reference: str,
        language: str,
        category: str,
        ack: AckDecision,
        verdict: DedupeResult,
        secrets: tuple[str, ...],
    ) -> ReplyDraft | None:
        if ack.action == "withheld":
            return None
        reply_language = language if language != UNDETERMINED else "en"
        incident = verdict.incident.title if verdict.incident and verdict.incident.known else ""
        rendered = self.templates.render(
            channel=message.channel,
            category=category,
            language=reply_language,
            values={
                "reference": reference,
                "display_name": message.sender.display_name,
                "subject": message.subject,
                "incident": incident,
                "secrets": secrets,
                "public": bool(message.meta.get("public", False)),
            },
        )
        draft = ReplyDraft(
            recipient=message.reply_to or message.sender,
            subject=rendered.subject,
            text=rendered.text,
            language=reply_language,
            thread_key=message.thread_key,
            in_reply_to=message.external_id,
            references=message.references,
            headers={"X-Loop": self.loop_marker},
        )
        return self._with_hint(draft, message, category)

    def _with_hint(self, draft: ReplyDraft, message: InboundMessage, category: str) -> ReplyDraft:
        """Link the help-centre article the rules name for the message (see hints.py)."""
        public = bool(message.meta.get("public", False))
        hint = choose_hint(self.hints, category, f"{message.subject}\n{message.text}")
        if hint is None or public or self.hint_lines is None:
            return draft
        line = self.hint_lines.line(draft.language, hint)
        headers = {**draft.headers, HINT_HEADER: f"{hint.name} {hint.url}"}
        return replace(draft, text=f"{draft.text.rstrip()}\n\n{line}\n", headers=headers)


def _redacted(message: InboundMessage) -> tuple[InboundMessage, dict[str, int]]:
    subject, full_text = redact(message.subject), redact(message.full_text)
    if not subject.counts and not full_text.counts:
        return message, {}  # the visible text is taken from the full text: nothing there either
    text = redact(message.text)
    counts: Counter[str] = Counter(subject.counts)
    for kind in set(text.counts) | set(full_text.counts):
        counts[kind] += max(text.counts.get(kind, 0), full_text.counts.get(kind, 0))
    headers = dict(message.headers)
    if "subject" in headers:
        headers["subject"] = subject.text
    redacted = replace(
        message, subject=subject.text, text=text.text, full_text=full_text.text, headers=headers
    )
    return redacted, dict(counts)


def _with_dedupe(ack: AckDecision, verdict: DedupeResult) -> AckDecision:
    if verdict.duplicate_of is None or ack.code in _BEFORE_DUPLICATE:
        return ack
    return AckDecision(
        "withheld", f"repeats {verdict.duplicate_of} (same person, same problem)", "duplicate"
    )


def load_triage(settings: Settings) -> Triage:
    """Load the rules, templates and reply rules ``settings`` name (the bundled ones by default).

    Raises:
        ConfigError: a rule, a regular expression or a template is invalid.
    """
    bundled = files("inbox_daemon.bundled_config")
    with (
        as_file(bundled / "rules.toml") as default_rules,
        as_file(bundled / "reply_rules.toml") as default_reply_rules,
        as_file(bundled / "templates") as default_templates,
    ):
        triage = settings.triage
        rules_path = _resolve(settings, triage.rules_file, default_rules)
        return Triage(
            classifier=load_rules(rules_path),
            hints=load_hints(rules_path),
            hint_lines=_hint_lines(settings, default_templates),
            templates=TemplateSet(
                _resolve(settings, settings.replies.templates_dir, default_templates),
                settings.replies.ticket_url,
            ),
            reply_rules=load_reply_rules(
                _resolve(settings, triage.reply_rules_file, default_reply_rules)
            ),
            loop_marker=settings.replies.loop_marker,
            dedupe=DedupeSettings(
                duplicate_window_s=triage.duplicate_window_s,
                incident_window_s=triage.incident_window_s,
                text_similarity=triage.text_similarity,
                people=triage.person_of_identity(),
            ),
        )


def _hint_lines(settings: Settings, default_templates: Path) -> HintLines:
    """The hint lines of the configured templates folder, else the bundled ones."""
    folder = _resolve(settings, settings.replies.templates_dir, default_templates)
    path = folder / "hint" / "lines.toml"
    return load_hint_lines(path if path.is_file() else default_templates / "hint" / "lines.toml")


def _resolve(settings: Settings, configured: Path | None, default: Path) -> Path:
    if configured is None:
        return default
    return configured if configured.is_absolute() else settings.config_dir / configured
