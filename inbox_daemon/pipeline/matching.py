"""Keyword and pattern matchers shared by the operator's rule files."""

from __future__ import annotations

import re
from collections.abc import Iterable


def keyword_pattern(keyword: str) -> str:
    """A regex source matching ``keyword``: whole words for Latin script, anywhere otherwise.

    "api" must not fire on "rapid"; Chinese, Japanese and Thai have no spaces between words, so
    their keywords match inside longer text.
    """
    escaped = re.escape(keyword)
    if keyword.isascii():
        return rf"(?<!\w){escaped}(?!\w)"
    return escaped


def compile_matcher(
    keywords: Iterable[str], patterns: Iterable[str], *, where: str
) -> re.Pattern[str] | None:
    """One case-insensitive regex for all ``keywords`` and ``patterns``; ``None`` when empty.

    Raises:
        ValueError: a pattern is not a valid regular expression (the message names ``where``).
    """
    sources = [keyword_pattern(keyword) for keyword in keywords]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{where}: bad regular expression {pattern!r}: {exc}") from exc
        sources.append(f"(?:{pattern})")
    return re.compile("|".join(sources), re.IGNORECASE) if sources else None
