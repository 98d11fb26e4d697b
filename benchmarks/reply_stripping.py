"""Reply stripping: our rules (``visible_text``) against mail-parser-reply, scored and timed.

Run from the repository root (the package need not be installed)::

    python3 benchmarks/reply_stripping.py

What it measures, on ../shared/corpora/email-reply-stripping (see its SOURCE.md):

- accuracy on the 31 cases whose visible reply upstream states (``expected.json``), with the
  comparison each names (``exact``, ``strip``, ``ignore_whitespace``). Talon's iphone and
  sparrow expectations keep a signature both candidates remove, so only the part above it
  is compared. HTML cases are scored twice: as the text of the whole HTML (the strippers
  alone), and through ``remove_html_quotes`` first (the email adapter's pipeline);
- accuracy on the multilingual cases of tests/test_reply_stripping.py. Those were written
  alongside our rules, so that figure favours them; it is printed apart;
- time per message over the 31 bodies, and the time of ``email_long_quote.txt`` (767 kB) and
  ``pathological.txt`` for each candidate.

mail-parser-reply is scored by its first reply's ``body`` (quotes, headers, signature and
disclaimers removed), once with English only and once with every language it knows, and by
its ``latest_reply`` (the same without signature removal) with every language.
"""

from __future__ import annotations

import email
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "email-reply-stripping"
# The package is not installed: import it, its email adapter and the test cases from the tree.
sys.path[:0] = [str(ROOT), str(ROOT / "adapters")]

from mailparser_reply import EmailReplyParser  # type: ignore[import-untyped]  # noqa: E402
from mailparser_reply.constants import MAIL_LANGUAGES  # type: ignore[import-untyped]  # noqa: E402
from selectolax.lexbor import LexborHTMLParser  # noqa: E402

from inbox_daemon.pipeline.normalise import visible_text  # noqa: E402
from inbox_email.html_quotes import remove_html_quotes  # noqa: E402
from inbox_email.html_text import html_to_text  # noqa: E402
from tests.test_reply_stripping import (  # noqa: E402
    MOBILE_FOOTERS,
    MULTILINGUAL,
    OUTLOOK_BLOCKS,
    expected_reply,
    matches,
)

Stripper = Callable[[str], str]
PATHOLOGICAL = ("email_reply_parser/email_long_quote.txt", "email_reply_parser/pathological.txt")
TIMING_ROUNDS = 20
PATHOLOGICAL_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class Case:
    """One body and the visible text expected of it.

    Attributes:
        name: the corpus file or test case name.
        text: the body as plain text (HTML turned into text whole, quotes included).
        piped: the body as the email adapter hands it over (HTML through remove_html_quotes).
        expected: the visible text expected.
        match: how to compare (``exact``, ``strip``, ``ignore_whitespace``).
    """

    name: str
    text: str
    piped: str
    expected: str
    match: str


def corpus_cases() -> list[Case]:
    """The 31 corpus cases with an upstream expectation."""
    cases = []
    for entry in json.loads((CORPUS / "expected.json").read_text(encoding="utf-8")):
        raw = (CORPUS / entry["file"]).read_bytes()
        text = piped = plain_body(entry["file"], raw)
        if entry["file"].endswith(".html"):
            piped = html_to_text(remove_html_quotes(raw.decode("utf-8")))
        cases.append(Case(entry["file"], text, piped, expected_reply(entry), entry["match"]))
    return cases


def plain_body(name: str, raw: bytes) -> str:
    if name.endswith(".eml"):
        message = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())
    if name.endswith(".html"):
        return html_to_text(raw.decode("utf-8"))
    return raw.decode("utf-8")


def multilingual_cases() -> list[Case]:
    """The multilingual cases of the test suite (written for our rules: a biased figure)."""
    cases = [Case(c.name, c.body, c.body, c.visible, "exact") for c in MULTILINGUAL]
    cases += [Case(c.name, c.body, c.body, c.visible, "exact") for c in OUTLOOK_BLOCKS]
    for footer in MOBILE_FOOTERS:
        body = f"The withdrawal is stuck.\n\n{footer}\n\nOn Mon, 1 Jan 2024, Support wrote:\n> Hi"
        cases.append(Case(footer, body, body, "The withdrawal is stuck.", "exact"))
    return cases


def mail_parser_reply(languages: Sequence[str], *, keep_signature: bool = False) -> Stripper:
    """mail-parser-reply's newest reply: its ``body``, or ``latest_reply`` (signature kept)."""
    parser = EmailReplyParser(languages=list(languages))

    def strip(text: str) -> str:
        if keep_signature:
            return str(parser.parse_reply(text) or "")
        return str(parser.read(text).replies[0].body)

    return strip


def failures(strip: Stripper, cases: Sequence[Case], *, piped: bool) -> list[str]:
    wrong = []
    for case in cases:
        actual = strip(case.piped if piped else case.text)
        if not matches(actual, case.expected, case.match):
            wrong.append(case.name)
    return wrong


def seconds_per_message(strip: Stripper, bodies: Sequence[str]) -> float:
    best = float("inf")
    for _ in range(TIMING_ROUNDS):
        started = time.perf_counter()
        for body in bodies:
            strip(body)
        best = min(best, time.perf_counter() - started)
    return best / len(bodies)


def best_seconds(work: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def report_accuracy(strippers: dict[str, Stripper], corpus: list[Case]) -> None:
    html_count = sum(case.name.endswith(".html") for case in corpus)
    print(f"Accuracy on the corpus cases with expectations ({len(corpus)}, {html_count} HTML)")
    for title, piped in (
        ("HTML read as text, quotes and all", False),
        ("HTML through remove_html_quotes first", True),
    ):
        print(f"  {title}:")
        for name, strip in strippers.items():
            wrong = failures(strip, corpus, piped=piped)
            print(f"    {name:<38} {len(corpus) - len(wrong):>2}/{len(corpus)}")
            for case_name in wrong:
                print(f"        wrong: {case_name}")


def report_multilingual(strippers: dict[str, Stripper], cases: list[Case]) -> None:
    print(f"Multilingual cases from tests/test_reply_stripping.py ({len(cases)}; ours, biased)")
    for name, strip in strippers.items():
        wrong = failures(strip, cases, piped=False)
        print(f"    {name:<38} {len(cases) - len(wrong):>2}/{len(cases)}")


def report_timing(strippers: dict[str, Stripper], corpus: list[Case]) -> None:
    bodies = [case.text for case in corpus]
    print(f"Time per message over the {len(bodies)} corpus bodies (best of {TIMING_ROUNDS})")
    for name, strip in strippers.items():
        print(f"    {name:<38} {seconds_per_message(strip, bodies) * 1e6:>9.1f} µs")
    html = [(CORPUS / c.name).read_text(encoding="utf-8") for c in corpus if ".html" in c.name]
    per_html = seconds_per_message(remove_html_quotes, html)
    print(f"    {'remove_html_quotes (HTML bodies only)':<38} {per_html * 1e6:>9.1f} µs")
    print(f"Pathological bodies (best of {PATHOLOGICAL_ROUNDS})")
    for relative in PATHOLOGICAL:
        body = (CORPUS / relative).read_text(encoding="utf-8")
        print(f"  {relative} ({len(body.encode()) / 1000:.0f} kB)")
        for name, strip in strippers.items():
            seconds = best_seconds(partial(strip, body), PATHOLOGICAL_ROUNDS)
            print(f"    {name:<38} {seconds * 1000:>9.1f} ms")


# Inputs shaped to make line-by-line rules work hard, as (name, function, unit, repeats):
# every line a marker candidate. Timed at n and 2n repeats: linear time doubles.
ADVERSARIAL: tuple[tuple[str, Stripper, str, int], ...] = (
    ("text: header lines", visible_text, "From: x\nTo: y\n", 25_000),
    ("text: dated lines ending in ':'", visible_text, "On 1 Jan 2024 a b c:\n", 25_000),
    ("text: bare attributions", visible_text, "x <a@b.c> 10:00:\n", 25_000),
    ("text: quote lines", visible_text, "> a\n", 50_000),
    ("text: one line of spaces", visible_text, " ", 1_000_000),
    ("html: header paragraphs", remove_html_quotes, "<p><b>From:</b> x<br>To: y</p>", 5_000),
    ("html: nested blockquotes", remove_html_quotes, "<blockquote>x", 5_000),
    ("html: sibling quotes", remove_html_quotes, '<div class="gmail_quote">q</div>', 10_000),
)


def report_adversarial() -> None:
    print("Generated adversarial bodies, ours (n and 2n repeats of a unit; best of 3;")
    print("for HTML, in brackets, the part of it that is selectolax/lexbor parsing alone)")
    for title, strip, unit, repeats in ADVERSARIAL:
        cells = []
        for count in (repeats, 2 * repeats):
            body = "Mine\n" + unit * count
            seconds = best_seconds(partial(strip, body), PATHOLOGICAL_ROUNDS)
            cell = f"{seconds * 1000:>7.1f} ms"
            if strip is remove_html_quotes:
                parse_s = best_seconds(partial(LexborHTMLParser, body), PATHOLOGICAL_ROUNDS)
                cell += f" ({parse_s * 1000:>5.1f})"
            cells.append(cell)
        size_kb = len(unit) * repeats / 1000
        print(f"    {title:<34} {size_kb:>6.0f} kB {cells[0]}   x2: {cells[1]}")


def main() -> None:
    strippers: dict[str, Stripper] = {
        "visible_text (ours)": visible_text,
        "mail-parser-reply, English": mail_parser_reply(["en"]),
        f"mail-parser-reply, {len(MAIL_LANGUAGES)} languages": mail_parser_reply(MAIL_LANGUAGES),
        "  same, latest_reply (keeps signature)": mail_parser_reply(
            MAIL_LANGUAGES, keep_signature=True
        ),
    }
    corpus = corpus_cases()
    report_accuracy(strippers, corpus)
    report_multilingual(strippers, multilingual_cases())
    report_timing(strippers, corpus)
    report_adversarial()


if __name__ == "__main__":
    main()
