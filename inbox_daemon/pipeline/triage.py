"""Turn one normalised message into a feedback record: language, labels, acknowledgment."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path

from ..config import Settings
from ..interfaces import AckDecision, Classifier, FeedbackRecord, InboundMessage, ReplyDraft
from .classify import load_rules
from .language import UNDETERMINED, detect_language
from .reference import new_reference
from .reply_policy import ReplyContext, decide
from .templates import TemplateSet


@dataclass(frozen=True, slots=True)
class Triage:
    """The loaded rules and templates, and the reply settings they are applied with."""

    classifier: Classifier
    templates: TemplateSet
    loop_marker: str

    def record(
        self, message: InboundMessage, *, source: str, context: ReplyContext
    ) -> FeedbackRecord:
        """The feedback record of ``message`` as received through ``source``."""
        language = detect_language(f"{message.subject}\n{message.text}")
        classification = self.classifier.classify(message, language)
        ack = decide(message, context)
        reference = new_reference()
        reply = self._draft(message, reference, language, classification.category, ack)
        return FeedbackRecord(
            source=source,
            message=message,
            reference=reference,
            language=language,
            classification=classification,
            ack=ack,
            reply=reply,
        )

    def _draft(
        self,
        message: InboundMessage,
        reference: str,
        language: str,
        category: str,
        ack: AckDecision,
    ) -> ReplyDraft | None:
        if ack.action == "withheld":
            return None
        reply_language = language if language != UNDETERMINED else "en"
        rendered = self.templates.render(
            channel=message.channel,
            category=category,
            language=reply_language,
            values={
                "reference": reference,
                "display_name": message.sender.display_name,
                "subject": message.subject,
            },
        )
        return ReplyDraft(
            recipient=message.reply_to or message.sender,
            subject=rendered.subject,
            text=rendered.text,
            language=reply_language,
            thread_key=message.thread_key,
            in_reply_to=message.external_id,
            references=message.references,
            headers={"X-Loop": self.loop_marker},
        )


def load_triage(settings: Settings) -> Triage:
    """Load the rules and templates ``settings`` name (the bundled defaults when they name none).

    Raises:
        ConfigError: a rule, a regular expression or a template is invalid.
    """
    bundled = files("inbox_daemon.bundled_config")
    with (
        as_file(bundled / "rules.toml") as default_rules,
        as_file(bundled / "templates") as default_templates,
    ):
        rules_path = _resolve(settings, settings.triage.rules_file, default_rules)
        templates_path = _resolve(settings, settings.replies.templates_dir, default_templates)
        return Triage(
            classifier=load_rules(rules_path),
            templates=TemplateSet(templates_path, settings.replies.ticket_url),
            loop_marker=settings.replies.loop_marker,
        )


def _resolve(settings: Settings, configured: Path | None, default: Path) -> Path:
    if configured is None:
        return default
    return configured if configured.is_absolute() else settings.config_dir / configured
