"""Acknowledgment templates: sandboxed Jinja2, per channel, category and language.

Files live in the templates folder as ``<channel>/<category>.<language>.txt`` or
``<channel>/ack.<language>.txt``, with ``default/`` standing for any channel. The lookup falls
back from the category to ``ack``, from ``zh-tw`` to ``zh``, then to English. A template may
start with a ``Subject: …`` line (e-mail); the rest is the body. Every template is rendered
once at load with sample values, so a syntax error or an unknown variable stops the daemon at
start (or is rejected on reload), never at send time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from ..errors import ConfigError

#: The variables every template may use, with the values it is checked with at load: once
#: plain, once with every optional part present, so each branch's variables are known.
_SAMPLE: Final[Mapping[str, object]] = {
    "reference": "FB-0000-0000",
    "ticket_url": "https://support.example.com/new?ref=FB-0000-0000",
    "display_name": "Sample Customer",
    "subject": "Sample subject",
    "channel": "email",
    "category": "other",
    "language": "en",
    "incident": "",
    "secrets": (),
    "public": False,
}
_DEFAULTS: Final[Mapping[str, object]] = {
    "display_name": "",
    "subject": "",
    "incident": "",
    "secrets": (),
    "public": False,
}
_SAMPLE_FULL: Final[Mapping[str, object]] = {
    **_SAMPLE,
    "incident": "ETH withdrawals delayed",
    "secrets": ("seed_phrase", "password"),
    "public": True,
}


@dataclass(frozen=True, slots=True)
class RenderedReply:
    """A rendered acknowledgment: subject (may be empty) and plain-text body."""

    subject: str
    text: str


class CheckedTemplates:
    """The templates of one folder matching ``pattern``, sandboxed, each checked at load.

    Every variable a template uses, in any branch, must be a key of ``samples[0]``, and it
    must render with each of ``samples``: a syntax error or an unknown variable stops the
    load (the daemon's start, or a reload), never a send.

    Raises:
        ConfigError: the folder is missing, or a template fails the check.
    """

    def __init__(self, folder: Path, pattern: str, samples: Sequence[Mapping[str, object]]) -> None:
        if not folder.is_dir():
            raise ConfigError("templates folder not found", path=str(folder))
        self._environment = SandboxedEnvironment(
            loader=FileSystemLoader(folder),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        self._samples = samples
        names = sorted(path.relative_to(folder).as_posix() for path in folder.glob(pattern))
        #: The compiled templates by path in the folder (``default/ack.en.txt``).
        self.by_name: Mapping[str, Template] = {name: self._compile(folder, name) for name in names}

    def first(self, names: Iterable[str]) -> Template | None:
        """The first of ``names`` the folder has."""
        return next((self.by_name[name] for name in names if name in self.by_name), None)

    def _compile(self, folder: Path, name: str) -> Template:
        source = (folder / name).read_text(encoding="utf-8")
        known = set(self._samples[0])
        try:
            # Every variable of every branch must be one we provide, not only those of the
            # branches the sample values happen to render.
            unknown = meta.find_undeclared_variables(self._environment.parse(source)) - known
            if unknown:
                raise ConfigError(
                    f"template error: unknown variable(s) {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(sorted(known))}",
                    path=str(folder / name),
                )
            template = self._environment.get_template(name)
            for sample in self._samples:
                template.render(sample)
        except TemplateError as exc:
            raise ConfigError(f"template error: {exc}", path=str(folder / name)) from exc
        return template


def fallback_languages(language: str) -> tuple[str, ...]:
    """Where a template of ``language`` is looked for: itself, its base (``zh`` for
    ``zh-tw``), then English."""
    return tuple(dict.fromkeys((language, language.split("-")[0], "en")))


def split_subject(rendered: str) -> RenderedReply:
    """A rendered template whose first line may be ``Subject: …`` (e-mail), and its body."""
    first, _, rest = rendered.partition("\n")
    if first.lower().startswith("subject:"):
        return RenderedReply(first[len("subject:") :].strip(), rest.lstrip("\n").rstrip() + "\n")
    return RenderedReply("", rendered.rstrip() + "\n")


class TemplateSet:
    """All acknowledgment templates of one folder, compiled and checked."""

    def __init__(self, folder: Path, ticket_url: str) -> None:
        self._ticket_url = ticket_url
        self._templates = CheckedTemplates(folder, "*/*.txt", (_SAMPLE, _SAMPLE_FULL))
        if not any(name.endswith("ack.en.txt") for name in self._templates.by_name):
            raise ConfigError("no English fallback template (default/ack.en.txt)", path=str(folder))

    def render(
        self, *, channel: str, category: str, language: str, values: Mapping[str, object]
    ) -> RenderedReply:
        """Render the best template for the message; ``values`` adds to the standard variables.

        ``values`` holds ``reference``, ``display_name`` and ``subject``, and may hold
        ``incident`` (the known incident's title), ``secrets`` (kinds of secret removed from
        the message: the reply must warn) and ``public`` (the reply is visible to others: it
        must not repeat the sender's details).
        """
        template = self._choose(channel, category, language)
        reference = str(values["reference"])
        context = {
            **_DEFAULTS,
            **values,
            "channel": channel,
            "category": category,
            "language": language,
            "ticket_url": self._ticket_url.format(reference=quote(reference, safe="")),
        }
        return split_subject(template.render(context))

    def _choose(self, channel: str, category: str, language: str) -> Template:
        template = self._templates.first(
            f"{folder}/{stem}.{lang}.txt"
            for lang in fallback_languages(language)
            for folder in (channel, "default")
            for stem in (category, "ack")
        )
        if template is None:
            raise ConfigError("no English fallback template (default/ack.en.txt)")
        return template
