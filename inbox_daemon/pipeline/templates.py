"""Acknowledgment templates: sandboxed Jinja2, per channel, category and language.

Files live in the templates folder as ``<channel>/<category>.<language>.txt`` or
``<channel>/ack.<language>.txt``, with ``default/`` standing for any channel. The lookup falls
back from the category to ``ack``, from ``zh-tw`` to ``zh``, then to English. A template may
start with a ``Subject: …`` line (e-mail); the rest is the body. Every template is rendered
once at load with sample values, so a syntax error or an unknown variable stops the daemon at
start (or is rejected on reload), never at send time.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class TemplateSet:
    """All acknowledgment templates of one folder, compiled and checked."""

    def __init__(self, folder: Path, ticket_url: str) -> None:
        self._ticket_url = ticket_url
        self._environment = SandboxedEnvironment(
            loader=FileSystemLoader(folder),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        self._templates = {name: self._compile(folder, name) for name in self._names(folder)}
        if not any(name.endswith("ack.en.txt") for name in self._templates):
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
        return _split_subject(template.render(context))

    def _choose(self, channel: str, category: str, language: str) -> Template:
        for lang in dict.fromkeys((language, language.split("-")[0], "en")):
            for folder in (channel, "default"):
                for stem in (category, "ack"):
                    template = self._templates.get(f"{folder}/{stem}.{lang}.txt")
                    if template is not None:
                        return template
        raise ConfigError("no English fallback template (default/ack.en.txt)")

    @staticmethod
    def _names(folder: Path) -> list[str]:
        if not folder.is_dir():
            raise ConfigError("templates folder not found", path=str(folder))
        return sorted(path.relative_to(folder).as_posix() for path in folder.glob("*/*.txt"))

    def _compile(self, folder: Path, name: str) -> Template:
        source = (folder / name).read_text(encoding="utf-8")
        try:
            # Every variable of every branch must be one we provide, not only those of the
            # branches the sample values happen to render.
            unknown = meta.find_undeclared_variables(self._environment.parse(source)) - set(_SAMPLE)
            if unknown:
                raise ConfigError(
                    f"template error: unknown variable(s) {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(sorted(_SAMPLE))}",
                    path=str(folder / name),
                )
            template = self._environment.get_template(name)
            template.render(_SAMPLE)
            template.render(_SAMPLE_FULL)
        except TemplateError as exc:
            raise ConfigError(f"template error: {exc}", path=str(folder / name)) from exc
        return template


def _split_subject(rendered: str) -> RenderedReply:
    first, _, rest = rendered.partition("\n")
    if first.lower().startswith("subject:"):
        return RenderedReply(first[len("subject:") :].strip(), rest.lstrip("\n").rstrip() + "\n")
    return RenderedReply("", rendered.rstrip() + "\n")
