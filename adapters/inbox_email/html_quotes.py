# ruff: noqa: RUF001 - the fullwidth colon of CJK headers is matched on purpose.
"""Quoted history in HTML mail bodies, found by the markup mail clients put around it.

Three kinds of marker, parsed with selectolax (lexbor):

- containers that hold the quote and nothing else (Gmail's ``gmail_quote``, Apple Mail and
  Thunderbird's ``<blockquote type="cite">``, Thunderbird's ``moz-cite-prefix`` attribution and
  ``moz-forward-container``, Yahoo's ``yahoo_quoted``, Outlook for Mac's
  ``OLK_SRC_BODY_SECTION``, Proton's ``protonmail_quote`` …): removed with their content;
- separators after which everything is history (Outlook's ``divRplyFwdMsg`` and
  ``appendonsend``, Hotmail's ``<hr id="stopSpelling">``, Zimbra's ``zwchr``, and any header
  block "From: … Sent: … To: … Subject: …" in a language :mod:`inbox_daemon.pipeline.normalise`
  knows, which catches Outlook's ``border-top`` dividers and ``<hr>`` rules too): removed
  with everything that follows them in document order;
- a ``<blockquote>`` with nothing after it (Yandex, mail.ru): removed, unless styled as
  Gmail's indentation (``border:none``), which is the sender's own formatting.

An attribution line left as plain text above a removed quote ("26.06.2014, 14:41, …:") is
for :func:`inbox_daemon.pipeline.normalise.visible_text` to drop once the HTML is text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from selectolax.lexbor import LexborHTMLParser, LexborNode

from inbox_daemon.pipeline.normalise import own_words, starts_with_header_block

logger = logging.getLogger(__name__)

# Elements that hold a quoted or forwarded message and nothing of the sender's.
_QUOTE_CONTAINERS: Final = (
    "[class*=gmail_quote]",
    "blockquote[type=cite]",
    ".moz-cite-prefix",
    ".moz-forward-container",
    "[class*=yahoo_quoted]",
    "#OLK_SRC_BODY_SECTION",
    "#mail-editor-reference-message-container",
    "[class*=protonmail_quote]",
    ".zmail_extra",
)
# Elements after which the rest of the document is quoted history.
_SEPARATORS: Final = (
    "[id$=divRplyFwdMsg]",
    "#appendonsend",
    "hr#stopSpelling",
    "#zwchr",
    ".OutlookMessageHeader",
)
# Elements that start a new line of text (for reading a header block out of the markup).
_LINE_BREAKING: Final = frozenset(
    {"br", "p", "div", "tr", "td", "th", "li", "hr", "table", "blockquote", "h1", "h2", "h3"}
)
# How much text after a candidate header line is read to tell whether a block follows.
_HEADER_PEEK_NODES: Final = 80
_HEADER_PEEK_CHARS: Final = 1500
# How far up a candidate header line is looked for Outlook's ``border-top`` divider.
_RULE_ANCESTORS: Final = 5
# How many blockquotes at the end may be removed (more is not a mail client's doing).
_MAX_TRAILING_QUOTES: Final = 20


def remove_html_quotes(html: str) -> str:
    """HTML with the quoted history removed.

    The markers are Gmail's gmail_quote, ``<blockquote type="cite">``, Outlook's
    divRplyFwdMsg and border-top separators, Apple, Yahoo and Thunderbird markers
    (moz-cite-prefix …) and header blocks; see this module's docstring.

    Args:
        html: an HTML document or fragment.

    Returns:
        The document, serialised, without its quoted history. When removing the history
        would leave none of the sender's own words (the mail is only a quote or a forward
        with nothing written above it), ``html`` is returned unchanged, so that the quoted
        message is what gets read.
    """
    if not html.strip():
        return html
    tree = LexborHTMLParser(html)
    root = tree.body or tree.root
    if root is None or not _remove_history(root):
        return html
    if not own_words(root.text(separator="\n")):
        logger.debug("html body is only quoted history; kept whole")
        return html
    return tree.html or html


def _remove_history(root: LexborNode) -> bool:
    """Remove the quoted history under ``root``; whether there was any."""
    containers = _walk(root, _matches(root, _QUOTE_CONTAINERS)).stopped
    _decompose_all(containers)
    separator = _first_separator(root)
    if separator is not None:
        _remove_from(_block_start(separator), root)
    trailing = _remove_trailing_blockquotes(root)
    return bool(containers) or separator is not None or trailing > 0


@dataclass(frozen=True, slots=True)
class _Walk:
    """A document-order walk that does not enter the elements it was told to stop at.

    Attributes:
        visited: the nodes walked, text nodes included, in document order.
        stopped: the stop elements met, outermost only, in document order.
    """

    visited: list[LexborNode]
    stopped: list[LexborNode]


def _walk(root: LexborNode, stop_at: set[int]) -> _Walk:
    # An explicit stack, not recursion: HTML mail can nest thousands of elements deep. Not
    # entering a stop element also means never holding a handle to a node inside one that
    # is about to be removed.
    visited: list[LexborNode] = []
    stopped: list[LexborNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.mem_id in stop_at:
            stopped.append(node)
            continue
        visited.append(node)
        stack.extend(reversed(list(node.iter(include_text=True))))
    return _Walk(visited, stopped)


def _matches(root: LexborNode, selectors: Iterable[str]) -> set[int]:
    return {node.mem_id for node in root.css(", ".join(selectors))}


def _decompose_all(nodes: Iterable[LexborNode]) -> None:
    for node in nodes:
        node.decompose()


def _first_separator(root: LexborNode) -> LexborNode | None:
    """The first separator element or header-block text in document order, if any."""
    nodes = _walk(root, _matches(root, _SEPARATORS))
    if nodes.stopped:
        # Stop elements are not entered, so anything found before the first one precedes it.
        nodes = _walk(root, {nodes.stopped[0].mem_id})
    pieces = [_piece(node) for node in nodes.visited]
    after_rule = False
    for index, node in enumerate(nodes.visited):
        if node.tag == "hr":
            after_rule = True
        elif pieces[index].strip() and node.is_text_node:
            if _starts_header_block(nodes.visited, pieces, index, after_rule=after_rule):
                return node
            after_rule = False
    return nodes.stopped[0] if nodes.stopped else None


def _piece(node: LexborNode) -> str:
    """What a node adds to the text: its words, a line break, or nothing."""
    if node.is_text_node:
        return " ".join((node.text_content or "").split())
    return "\n" if node.tag in _LINE_BREAKING else ""


def _starts_header_block(
    nodes: Sequence[LexborNode], pieces: Sequence[str], index: int, *, after_rule: bool
) -> bool:
    head = pieces[index][:40]
    if ":" not in head and "：" not in head:
        return False
    text = "".join(pieces[index : index + _HEADER_PEEK_NODES])[:_HEADER_PEEK_CHARS]
    ruled = after_rule or _under_rule(nodes[index])
    return starts_with_header_block(text, after_rule=ruled)


def _under_rule(node: LexborNode) -> bool:
    """Whether the node sits in an element drawn with a top border (Outlook's divider)."""
    parent = node.parent
    for _ in range(_RULE_ANCESTORS):
        if parent is None:
            return False
        style = (parent.attributes.get("style") or "").replace(" ", "").lower()
        if "border-top:solid" in style or "border-top-style:solid" in style:
            return True
        parent = parent.parent
    return False


def _block_start(node: LexborNode) -> LexborNode:
    """The outermost element that ``node`` begins: nothing with text stands before it there."""
    while node.parent is not None and node.parent.tag not in ("body", "html"):
        if any(_has_text(sibling) for sibling in _previous_siblings(node)):
            break
        node = node.parent
    return node


def _previous_siblings(node: LexborNode) -> Iterable[LexborNode]:
    sibling = node.prev
    while sibling is not None:
        yield sibling
        sibling = sibling.prev


def _following_siblings(node: LexborNode) -> list[LexborNode]:
    siblings: list[LexborNode] = []
    sibling = node.next
    while sibling is not None:
        siblings.append(sibling)
        sibling = sibling.next
    return siblings


def _has_text(node: LexborNode) -> bool:
    return bool(node.text(deep=True).strip())


def _remove_from(node: LexborNode, root: LexborNode) -> None:
    """Remove ``node``, a rule just before it, and everything after it in document order."""
    level: LexborNode | None = node
    while level is not None and level.mem_id != root.mem_id:
        _decompose_all(_following_siblings(level))
        level = level.parent
    rule = next((s for s in _previous_siblings(node) if _has_text(s) or s.tag == "hr"), None)
    if rule is not None and rule.tag == "hr":
        rule.decompose()
    node.decompose()


def _remove_trailing_blockquotes(root: LexborNode) -> int:
    """Remove the blockquotes that nothing with text follows, last first; how many."""
    quotes = _walk(root, _matches(root, ["blockquote"])).stopped
    removed = 0
    for quote in reversed(quotes[-_MAX_TRAILING_QUOTES:]):
        style = (quote.attributes.get("style") or "").replace(" ", "").lower()
        if "border:none" in style or any(_has_text(node) for node in _after(quote, root)):
            break
        quote.decompose()
        removed += 1
    return removed


def _after(node: LexborNode, root: LexborNode) -> Iterable[LexborNode]:
    """What follows ``node`` in document order: its following siblings and its ancestors'."""
    level: LexborNode | None = node
    while level is not None and level.mem_id != root.mem_id:
        yield from _following_siblings(level)
        level = level.parent
