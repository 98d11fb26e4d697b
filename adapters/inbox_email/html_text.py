"""HTML mail bodies to the plain text a person would read, parsed with selectolax (lexbor)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Never rendered as text by a mail client.
_SKIPPED: Final = frozenset(
    {"script", "style", "head", "title", "template", "meta", "link", "svg", "object", "iframe"}
)
# Blocks that stand apart from their neighbours by a blank line.
_PARAGRAPHS: Final = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "hr"}
)
# Blocks that start and end on their own line.
_BLOCKS: Final = frozenset(
    {
        "address", "article", "aside", "caption", "center", "dd", "details", "dialog", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "li",
        "main", "nav", "ol", "section", "summary", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_LISTS: Final = frozenset({"ul", "ol"})
_CELLS: Final = frozenset({"td", "th"})
_LINKED_SCHEMES: Final = ("http://", "https://", "mailto:", "ftp://")

_WHITESPACE_RE: Final = re.compile(r"[ \t\n\r\f\v\u00a0]+")
_TRAILING_SPACE_RE: Final = re.compile(r"[ \t]+\n")
_BLANK_RUN_RE: Final = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Render an HTML body as plain text.

    Scripts, styles and the head are dropped; block elements and ``<br>`` become line
    breaks, list items start with ``"- "``, runs of blank lines collapse to one, entities
    are decoded, and a link keeps its text, followed by `` (url)`` when the URL says
    something the text does not.

    Args:
        html: an HTML document or fragment.

    Returns:
        The text, with ``"\\n"`` line endings and no leading or trailing blank lines.
    """
    if not html.strip():
        return ""
    tree = LexborHTMLParser(html)
    start = tree.body or tree.root
    if start is None:
        return ""
    writer = _Writer()
    _render(start, writer)
    return writer.result()


@dataclass(frozen=True, slots=True)
class _Exit:
    """Marks where an element ends during the walk (the walk keeps its own stack)."""

    node: LexborNode
    mark: int


def _render(start: LexborNode, writer: _Writer) -> None:
    # An explicit stack, not recursion: HTML mail can nest thousands of elements deep.
    stack: list[LexborNode | _Exit] = [start]
    while stack:
        item = stack.pop()
        if isinstance(item, _Exit):
            _leave(item, writer)
        elif item.is_text_node:
            writer.text(item.text_content or "")
        elif item.is_element_node and (item.tag or "") not in _SKIPPED:
            _enter(item, writer)
            stack.append(_Exit(item, writer.mark()))
            stack.extend(reversed(list(item.iter(include_text=True))))


def _enter(node: LexborNode, writer: _Writer) -> None:
    tag = node.tag or ""
    if tag == "br":
        writer.hard_break()
    elif tag in _PARAGRAPHS:
        writer.blank_line()
        writer.pre_depth += tag == "pre"
    elif tag in _BLOCKS:
        writer.line_break()
        writer.list_depth += tag in _LISTS
        if tag == "li":
            writer.bullet()
    elif tag in _CELLS:
        writer.separate()


def _leave(exit_: _Exit, writer: _Writer) -> None:
    tag = exit_.node.tag or ""
    if tag in _PARAGRAPHS:
        writer.blank_line()
        writer.pre_depth -= tag == "pre"
    elif tag in _BLOCKS:
        writer.line_break()
        writer.list_depth -= tag in _LISTS
    elif tag == "a":
        _link_target(exit_, writer)


def _link_target(exit_: _Exit, writer: _Writer) -> None:
    """Append `` (url)`` after a link whose text does not already say where it goes."""
    href = (exit_.node.attributes.get("href") or "").strip()
    label = writer.since(exit_.mark).strip()
    if not label or not href.lower().startswith(_LINKED_SCHEMES):
        return
    if _comparable(label) != _comparable(href):
        writer.text(f" ({href})")


def _comparable(target: str) -> str:
    lowered = target.lower()
    for prefix in ("mailto:", "https://", "http://", "www."):
        lowered = lowered.removeprefix(prefix)
    return lowered.rstrip("/")


class _Writer:
    """Collects text and line breaks, knowing whether the output stands at a line start."""

    __slots__ = ("_chunks", "_fresh", "_newlines", "list_depth", "pre_depth")

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._newlines = 0  # line breaks at the end of the output
        self._fresh = True  # nothing visible written on the current line yet
        self.list_depth = 0
        self.pre_depth = 0

    def text(self, value: str) -> None:
        if self.pre_depth:
            self._verbatim(value)
            return
        value = _WHITESPACE_RE.sub(" ", value)
        if self._fresh:
            value = value.lstrip(" ")
        if value:
            self._chunks.append(value)
            self._newlines = 0
            self._fresh = False

    def _verbatim(self, value: str) -> None:
        value = value.replace("\r\n", "\n").replace("\u00a0", " ")
        if not value:
            return
        self._chunks.append(value)
        stripped = value.rstrip("\n")
        trailing = len(value) - len(stripped)
        self._newlines = trailing if stripped else self._newlines + trailing
        self._fresh = trailing > 0 or (not stripped and self._fresh)

    def line_break(self) -> None:
        if self._chunks and not self._fresh:
            self.hard_break()

    def blank_line(self) -> None:
        if not self._chunks or self._after_bullet():
            return
        self.line_break()
        if self._newlines < 2:
            self.hard_break()

    def hard_break(self) -> None:
        self._chunks.append("\n")
        self._newlines += 1
        self._fresh = True

    def bullet(self) -> None:
        marker = "  " * max(self.list_depth - 1, 0) + "- "
        # Items sit on consecutive lines even when the previous one ended in a paragraph.
        while self._newlines > 1 and self._chunks[-1] == "\n":
            self._chunks.pop()
            self._newlines -= 1
        if self._chunks and self._after_bullet():
            self._chunks[-1] = marker  # the previous item was empty
        else:
            self._chunks.append(marker)
        self._newlines = 0
        self._fresh = True

    def _after_bullet(self) -> bool:
        return self._fresh and self._newlines == 0

    def separate(self) -> None:
        if not self._fresh:
            self._chunks.append(" ")

    def mark(self) -> int:
        return len(self._chunks)

    def since(self, mark: int) -> str:
        return "".join(self._chunks[mark:])

    def result(self) -> str:
        text = _TRAILING_SPACE_RE.sub("\n", "".join(self._chunks))
        return _BLANK_RUN_RE.sub("\n\n", text).strip("\n ")
