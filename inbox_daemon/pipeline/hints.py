"""Knowledge hints: a help-centre article an acknowledgment links, chosen by the rules file.

``config/rules.toml`` may hold ``[[hints]]``, each naming an article (``name``, ``url``)
for some ``categories`` and, optionally, only when the message has one of its ``keywords``.
The first hint that fits a record is linked, in the sender's language, below its
acknowledgment (never in a public reply, which must stay short and say nothing of the
message); the outbox row keeps the hint's name and address in :data:`HINT_HEADER`, which
the report counts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from pydantic import ValidationError, field_validator

from ..config import FrozenModel
from ..errors import ConfigError

#: The reply header that names the hint an acknowledgment carries, ``"<name> <url>"`` (e-mail
#: sends it too, as an ``X-`` header: harmless, and whoever reads the mail sees what was linked).
HINT_HEADER: Final = "X-Help-Article"


class HintSpec(FrozenModel):
    """A help-centre article for some categories (and keywords) of feedback."""

    name: str
    url: str
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _https(cls, url: str) -> str:
        if not url.startswith("https://") or any(c.isspace() for c in url):
            raise ValueError("expected an https:// address of our help centre")
        return url

    def fits(self, category: str, text: str) -> bool:
        """Whether the hint is for ``category`` and, if it names keywords, ``text`` has one."""
        if self.categories and category not in self.categories:
            return False
        folded = text.casefold()
        return not self.keywords or any(k.casefold() in folded for k in self.keywords)


class _HintsFile(FrozenModel):
    hints: tuple[HintSpec, ...] = ()


class HintLines(FrozenModel):
    """The line that links a hint, per language (``{url}`` is the article)."""

    lines: Mapping[str, str]

    def line(self, language: str, hint: HintSpec) -> str:
        """The line in ``language`` (its base language, else English)."""
        for lang in (language, language.split("-")[0], "en"):
            if lang in self.lines:
                return self.lines[lang].format(url=hint.url)
        return hint.url


def choose_hint(hints: Sequence[HintSpec], category: str, text: str) -> HintSpec | None:
    """The first hint that fits a record of ``category`` saying ``text``."""
    return next((hint for hint in hints if hint.fits(category, text)), None)


def load_hints(rules_path: Path) -> tuple[HintSpec, ...]:
    """The ``[[hints]]`` of the rules file (the rest of the file is the classifier's).

    Raises:
        ConfigError: naming the file and the hint that is wrong.
    """
    document = _toml(rules_path)
    try:
        return _HintsFile.model_validate({"hints": document.get("hints", [])}).hints
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ConfigError(error["msg"], path=str(rules_path), key=key) from exc


def load_hint_lines(path: Path) -> HintLines:
    """The per-language lines of ``templates/hint/lines.toml``; each must hold ``{url}``.

    Raises:
        ConfigError: the file does not load, has no English line, or a line has no ``{url}``.
    """
    lines = HintLines(lines={str(k): str(v) for k, v in _toml(path).items()})
    if "en" not in lines.lines:
        raise ConfigError("no English line", path=str(path), key="en")
    for language, line in lines.lines.items():
        try:
            line.format(url="https://example.com/")
        except (KeyError, IndexError, ValueError) as exc:
            message = f"only {{url}} may be used: {exc}"
            raise ConfigError(message, path=str(path), key=language) from exc
        if "{url}" not in line:
            raise ConfigError("the line must hold {url}", path=str(path), key=language)
    return lines


def _toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from exc
