"""Quoted-reply and signature stripping: the sender's own words out of a mail body.

The corpus is ../shared/corpora/email-reply-stripping (talon, Apache-2.0; email_reply_parser,
MIT; see its SOURCE.md): every case with an upstream expectation is checked against it, and
every other body must come through without error, non-empty and without its quote. Timing is
measured by benchmarks/reply_stripping.py, not here.
"""

from __future__ import annotations

import email
import json
import os
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser

from inbox_daemon.pipeline.normalise import (
    clean_text,
    own_words,
    starts_with_header_block,
    visible_text,
)
from inbox_email.html_quotes import remove_html_quotes
from inbox_email.html_text import html_to_text

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
if not CORPORA.is_dir():  # as in conftest.py: a checkout whose shared/ lies elsewhere
    CORPORA = Path(os.environ.get("INBOX_CORPORA", "../shared/corpora")).resolve()
CORPUS = CORPORA / "email-reply-stripping"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
# Talon removes quotations only, so two of its expectations keep the signature we remove
# (iphone: "Sent from my iPhone", sparrow: a "-- " block); those compare what stands above.
SIGNATURE_STARTS = ("-- ", "--", "Sent from my ")
# Files that are not message bodies: upstream's expected outputs and signature metadata.
NOT_BODIES = ("_sender", "_signature", "_reply_text", ".json", ".md")
# talon's reply-separated-by-hr.html: upstream removes the whole <div> that holds the rule, so
# its expectation also loses the sign-off "Bob" written above the rule. We cut at the rule.
KEEPS_WORDS_ABOVE_RULE = "talon/reply-separated-by-hr.html"


def read_body(relative: str) -> str:
    """A corpus file's body as plain text, the way the email adapter would produce it."""
    raw = (CORPUS / relative).read_bytes()
    if relative.endswith(".eml"):
        message = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        content = part.get_content()
        assert isinstance(content, str)
        return content
    if relative.endswith(".html"):
        return html_to_text(remove_html_quotes(raw.decode("utf-8")))
    return raw.decode("utf-8")


def read_full_text(relative: str) -> str:
    """A corpus file's whole body as text, quotes included."""
    if relative.endswith(".html"):
        return clean_text(html_to_text((CORPUS / relative).read_text(encoding="utf-8")))
    return clean_text(read_body(relative))


def expected_reply(case: dict[str, str]) -> str:
    """The expected visible text, cut before a signature that upstream keeps."""
    reply = case["reply"] if "reply" in case else html_to_text(case["reply_html"])
    if not case["file"].startswith("talon/"):
        return reply
    lines = reply.split("\n")
    for index, line in enumerate(lines):
        if line.startswith(SIGNATURE_STARTS) and index > 0:
            return "\n".join(lines[:index])
    return reply


def matches(actual: str, expected: str, mode: str) -> bool:
    if mode == "exact":
        return actual == expected
    if mode == "strip":
        return actual.strip() == expected.strip()
    assert mode == "ignore_whitespace"
    return "".join(actual.split()) == "".join(expected.split())


def other_bodies() -> list[str]:
    with_expectation = {case["file"] for case in EXPECTED}
    return sorted(
        str(path.relative_to(CORPUS))
        for path in CORPUS.rglob("*")
        if path.is_file()
        and str(path.relative_to(CORPUS)) not in with_expectation
        and not path.name.endswith(NOT_BODIES)
    )


def corpus_case_params(*, html_expectations_only: bool = False) -> list[object]:
    params: list[object] = []
    for case in EXPECTED:
        if html_expectations_only and "reply_html" not in case:
            continue
        marks = []
        if case["file"] == KEEPS_WORDS_ABOVE_RULE:
            reason = "upstream also drops the sign-off above the rule; we keep it"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        params.append(pytest.param(case, id=case["file"], marks=marks))
    return params


# --- the corpus -------------------------------------------------------------------------


def test_corpus_has_the_documented_cases() -> None:
    assert len(EXPECTED) == 31
    assert len(other_bodies()) >= 20


@pytest.mark.parametrize("case", corpus_case_params())
def test_visible_text_matches_upstream_expectation(case: dict[str, str]) -> None:
    visible = visible_text(read_body(case["file"]))

    assert matches(visible, expected_reply(case), case["match"]), visible


@pytest.mark.parametrize("case", corpus_case_params(html_expectations_only=True))
def test_remove_html_quotes_matches_upstream_html(case: dict[str, str]) -> None:
    html = (CORPUS / case["file"]).read_text(encoding="utf-8")

    assert matches(remove_html_quotes(html), case["reply_html"], case["match"])


@pytest.mark.parametrize("case", EXPECTED, ids=lambda case: case["file"])
def test_full_text_keeps_everything_visible_text_drops(case: dict[str, str]) -> None:
    full = read_full_text(case["file"])
    visible = visible_text(read_body(case["file"]))

    assert len(full) >= len(visible)
    for line in visible.split("\n"):
        assert line.strip() in full


@pytest.mark.parametrize("relative", other_bodies())
def test_other_corpus_bodies_come_through_without_their_quote(relative: str) -> None:
    body = read_body(relative)

    visible = visible_text(body)

    assert visible.strip()
    assert not [line for line in visible.split("\n") if line.startswith(">")]
    if any(line.startswith(">") for line in body.split("\n")):
        assert len(visible) < len(clean_text(body))


@pytest.mark.parametrize(
    "name", ["camel_case", "jeff", "johndoeexamplecom", "long", "short_url", "sparse"]
)
def test_words_above_an_undelimited_signature_are_all_kept(name: str) -> None:
    folder = CORPUS / "talon" / "signature" / "emails" / "stripped"
    body = (folder / f"{name}_body").read_text(encoding="utf-8").strip()
    signature = (folder / f"{name}_signature").read_text(encoding="utf-8").strip()
    above = body[: len(body) - len(signature)].strip() if signature else body

    assert visible_text(body).startswith(clean_text(above))


def test_quotations_sharing_a_block_with_the_reply_are_cut() -> None:
    visible = visible_text(read_body("talon/reply-quotations-share-block.eml"))

    assert visible.startswith("Hi Katharine.")
    assert "From" not in visible


def test_bottom_posted_reply_keeps_the_answer_and_drops_the_list_footer() -> None:
    visible = visible_text(read_body("email_reply_parser/email_1_2.txt"))

    assert visible.startswith("Hi,\n\nYou can list the keys for the bucket")
    assert visible.endswith('to delete them all individually."')


def test_interleaved_reply_keeps_only_the_unquoted_answers() -> None:
    visible = visible_text(read_body("email_reply_parser/email_1_8.txt"))

    assert visible == "I will reply under this one\n\nand under this."


def test_attribution_wrapped_over_three_lines_is_dropped() -> None:
    visible = visible_text(read_body("email_reply_parser/email_1_6.txt"))

    assert visible.startswith("I get proper rendering as well.")
    assert "Corey" not in visible
    assert "wrote:" not in visible


def test_sentence_starting_with_on_is_not_an_attribution() -> None:
    visible = visible_text(read_body("email_reply_parser/greedy_on.txt"))

    assert visible.startswith("On your remote host you can run:")
    assert visible.endswith("fails, the tunnel is not working.")


def test_delimiter_inside_a_line_is_not_a_signature() -> None:
    body = read_body("email_reply_parser/email_sig_delimiter_in_middle_of_line.txt")

    assert visible_text(body) == clean_text(body)


def test_long_quote_and_pathological_bodies_lose_their_quote() -> None:
    long_quote = visible_text(read_body("email_reply_parser/email_long_quote.txt"))
    pathological = visible_text(read_body("email_reply_parser/pathological.txt"))

    assert long_quote.startswith("Hi folks\n")
    assert long_quote.endswith("\nI am currently using the Java HTTP API.")
    assert "\n>" not in long_quote
    assert pathological == (
        "I think you're onto something. I will try to fix the problem as soon as I\n"
        "get back to a computer."
    )


# --- multilingual reply headers and footers ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """A body and the visible text expected of it."""

    name: str
    body: str
    visible: str


QUOTED = "\n\n> Первое письмо.\n> Второе предложение."
MULTILINGUAL = [
    Case(
        "english_gmail",
        "Thanks, it works now.\n\nOn Mon, Jan 1, 2024 at 10:00 AM Jane Doe "
        "<jane@example.com> wrote:\n\n> Did you try again?\n",
        "Thanks, it works now.",
    ),
    Case(
        "english_gmail_narrow_no_break_space",
        "Done.\n\nOn Mon, Jan 1, 2024 at 10:00\u202fAM Jane <jane@example.com> wrote:\n> Hi",
        "Done.",
    ),
    Case(
        "chinese_gmail",
        "提现还没有到账，请帮忙查一下。\n\n张三 <zhangsan@example.cn> 于2024年1月1日周一 "
        "10:00写道：\n\n> 您好，请提供交易哈希。",
        "提现还没有到账，请帮忙查一下。",
    ),
    Case(
        "chinese_apple",
        "已经解决了，谢谢。\n\n在 2024年1月1日，上午10:00，李四 <lisi@example.cn> 写道：\n\n"
        "> 请重试。",
        "已经解决了，谢谢。",
    ),
    Case(
        "russian_android",
        'Спасибо, всё работает.\n01.01.2024 10:00 пользователь "Поддержка" <\n'
        "support@example.com> написал:" + QUOTED,
        "Спасибо, всё работает.",
    ),
    Case(
        "russian_written_a",
        "Деньги так и не пришли.\n\nИван Петров <ivan@example.ru> написал(а):" + QUOTED,
        "Деньги так и не пришли.",
    ),
    Case(
        "russian_gmail_without_verb",
        "Деньги пришли.\n\nпн, 1 янв. 2024 г. в 10:00, Поддержка <support@example.com>:" + QUOTED,
        "Деньги пришли.",
    ),
    Case(
        "russian_thunderbird",
        "Проблема осталась.\n\n01.01.2024 10:00, Иван пишет:" + QUOTED,
        "Проблема осталась.",
    ),
    Case(
        "german_gmail",
        "Die Auszahlung hängt seit gestern.\n\nAm Mo., 1. Jan. 2024 um 10:00 Uhr schrieb "
        "Support <support@example.com>:\n\n> Bitte senden Sie uns die TxID.",
        "Die Auszahlung hängt seit gestern.",
    ),
    Case(
        "german_apple",
        "Erledigt, danke!\n\n> Am 01.01.2024 um 10:00 schrieb Support <support@example.com>:"
        "\n>\n> Bitte bestätigen.",
        "Erledigt, danke!",
    ),
    Case(
        "french_gmail_no_break_space",
        "Le retrait est bloqué.\n\nLe lun. 1 janv. 2024 à 10:00, Support "
        "<support@example.com> a écrit\u00a0:\n\n> Pouvez-vous préciser ?",
        "Le retrait est bloqué.",
    ),
    Case(
        "spanish_gmail",
        "Sigue sin funcionar.\n\nEl lun, 1 ene 2024 a las 10:00, Soporte "
        "(<support@example.com>) escribió:\n\n> ¿Puede intentarlo de nuevo?",
        "Sigue sin funcionar.",
    ),
    Case(
        "portuguese_gmail",
        "O saque ainda não caiu.\n\nEm seg., 1 de jan. de 2024 às 10:00, Suporte "
        "<support@example.com> escreveu:\n\n> Pode enviar o comprovante?",
        "O saque ainda não caiu.",
    ),
    Case(
        "italian_gmail",
        "Non funziona ancora.\n\nIl giorno lun 1 gen 2024 alle ore 10:00 Supporto "
        "<support@example.com> ha scritto:\n\n> Può riprovare?",
        "Non funziona ancora.",
    ),
    Case(
        "dutch_gmail",
        "Het werkt nog niet.\n\nOp ma 1 jan. 2024 om 10:00 schreef Support "
        "<support@example.com>:\n\n> Kunt u het opnieuw proberen?",
        "Het werkt nog niet.",
    ),
    Case(
        "japanese_gmail_without_verb",
        "出金がまだ届きません。\n\n2024年1月1日(月) 10:00 サポート <support@example.com>:\n\n"
        "> 取引IDを教えてください。",
        "出金がまだ届きません。",
    ),
    Case(
        "japanese_message_of",
        "確認しました。\n\n2024/01/01 10:00、サポート <support@example.com> のメッセージ:\n\n"
        "> ご確認ください。",
        "確認しました。",
    ),
    Case(
        "japanese_wrote_san",
        "ありがとうございます。\n\n2024/01/01 10:00、山田 太郎 さんは書きました:\n\n> 了解です。",
        "ありがとうございます。",
    ),
    Case(
        "korean_gmail",
        "아직 입금되지 않았습니다.\n\n2024년 1월 1일 (월) 오전 10:00, 고객지원 "
        "<support@example.com>님이 작성:\n\n> 거래 ID를 알려주세요.",
        "아직 입금되지 않았습니다.",
    ),
]

OUTLOOK_BLOCKS = [
    Case(
        "outlook_english",
        "Please escalate.\n\n________________________________\nFrom: Support "
        "<support@example.com>\nSent: Monday, January 1, 2024 10:00 AM\nTo: Jane Doe\n"
        "Subject: RE: Withdrawal\n\nWe are looking into it.",
        "Please escalate.",
    ),
    Case(
        "outlook_original_message",
        "See below.\n\n-----Original Message-----\nFrom: Support [mailto:support@example.com]"
        "\nSent: Monday, January 1, 2024 10:00 AM\nTo: Jane\nSubject: Ticket\n\nHello",
        "See below.",
    ),
    Case(
        "outlook_german",
        "Bitte prüfen.\n\nVon: Support <support@example.com>\nGesendet: Montag, 1. Januar "
        "2024 10:00\nAn: Max Mustermann\nBetreff: AW: Auszahlung\n\nHallo Max,",
        "Bitte prüfen.",
    ),
    Case(
        "outlook_german_separator",
        "Siehe unten.\n\n-----Ursprüngliche Nachricht-----\nVon: Support\nGesendet: Montag\n"
        "An: Max\nBetreff: Auszahlung\n\nHallo",
        "Siehe unten.",
    ),
    Case(
        "outlook_french",
        "Merci de vérifier.\n\nDe : Support <support@example.com>\nEnvoyé : lundi 1 janvier "
        "2024 10:00\nÀ : Jean Dupont\nObjet : RE: Retrait\n\nBonjour Jean,",
        "Merci de vérifier.",
    ),
    Case(
        "outlook_spanish",
        "Por favor revisen.\n\nDe: Soporte <support@example.com>\nEnviado: lunes, 1 de enero "
        "de 2024 10:00\nPara: Juan Pérez\nAsunto: RE: Retiro\n\nHola Juan,",
        "Por favor revisen.",
    ),
    Case(
        "outlook_portuguese",
        "Por favor verifiquem.\n\nDe: Suporte <support@example.com>\nEnviado: segunda-feira, "
        "1 de janeiro de 2024 10:00\nPara: João Silva\nAssunto: RE: Saque\n\nOlá João,",
        "Por favor verifiquem.",
    ),
    Case(
        "outlook_russian",
        "Прошу проверить.\n\nОт: Поддержка <support@example.com>\nОтправлено: 1 января 2024 г."
        " 10:00\nКому: Иван Петров\nТема: RE: Вывод средств\n\nЗдравствуйте, Иван,",
        "Прошу проверить.",
    ),
    Case(
        "outlook_russian_without_subject",
        "Прошу проверить.\n\nОт: Поддержка <support@example.com>\nОтправлено: 1 января 2024 г."
        "\nКому: Иван Петров\n\nЗдравствуйте",
        "Прошу проверить.",
    ),
    Case(
        "outlook_chinese",
        "请尽快处理。\n\n发件人: 客服 <support@example.com>\n发送时间: 2024年1月1日 10:00\n"
        "收件人: 张三\n主题: 回复: 提现\n\n张三您好，",
        "请尽快处理。",
    ),
    Case(
        "outlook_japanese_fullwidth_colons",
        "よろしくお願いします。\n\n差出人：サポート <support@example.com>\n送信日時：2024年1月1日 "
        "10:00\n宛先：山田 太郎\n件名：RE: 出金\n\n山田様",
        "よろしくお願いします。",
    ),
    Case(
        "outlook_korean",
        "확인 부탁드립니다.\n\n보낸 사람: 고객지원 <support@example.com>\n보낸 날짜: 2024년 1월 1일"
        "\n받는 사람: 홍길동\n제목: RE: 출금\n\n안녕하세요",
        "확인 부탁드립니다.",
    ),
    Case(
        "outlook_bold_plain_text",
        "Outlook with a reply\n\n*From:* Support [mailto:support@example.com]\n*Sent:* "
        "Monday\n*To:* jane@example.com\n*Subject:* Update\n\nDear user,",
        "Outlook with a reply",
    ),
]

MOBILE_FOOTERS = [
    "Sent from my iPhone",
    "Sent from my Samsung Galaxy smartphone.",
    "Sent from Yahoo Mail on Android",
    "Get Outlook for iOS<https://aka.ms/o0ukef>",
    "Von meinem iPhone gesendet",
    "Gesendet von iPhone",
    "Envoyé de mon iPhone",
    "Enviado desde mi iPhone",
    "Enviado do meu iPhone",
    "Inviato da iPhone",
    "Verzonden vanaf mijn iPhone",
    "Отправлено с iPhone",
    "Отправлено из мобильной Почты Mail.ru",
    "发自我的iPhone",
    "发自我的 iPhone",
    "从我的 iPhone 发送",
    "iPhoneから送信",
    "내 iPhone에서 보냄",
    "Wysłane z mojego iPhone'a",
    "Skickat från min iPhone",
]


@pytest.mark.parametrize("case", MULTILINGUAL, ids=lambda case: case.name)
def test_multilingual_attribution_and_its_quote_are_dropped(case: Case) -> None:
    assert visible_text(case.body) == case.visible


@pytest.mark.parametrize("case", OUTLOOK_BLOCKS, ids=lambda case: case.name)
def test_outlook_header_block_ends_the_reply(case: Case) -> None:
    assert visible_text(case.body) == case.visible


@pytest.mark.parametrize("footer", MOBILE_FOOTERS)
def test_mobile_footer_is_removed(footer: str) -> None:
    body = f"The withdrawal is stuck.\n\n{footer}\n\nOn Mon, 1 Jan 2024, Support wrote:\n> Hi"

    assert visible_text(body) == "The withdrawal is stuck."


def test_sentence_starting_like_a_footer_is_kept() -> None:
    body = "Here it is.\n\nSent from my desk, which is easier than my phone."

    assert visible_text(body) == body


def test_signature_after_delimiter_is_removed() -> None:
    body = "Please help.\n\n-- \nJane Doe\nACME Corp\n+1 555 0100"

    assert visible_text(body) == "Please help."


def test_long_text_after_a_delimiter_is_kept() -> None:
    body = "Intro\n--\n" + "\n".join(f"step {number}" for number in range(30))

    assert visible_text(body) == clean_text(body)


def test_dash_name_sign_off_is_removed() -> None:
    assert visible_text("Works for me now.\n\n-Abhishek Kona") == "Works for me now."


def test_lowercase_dash_line_at_the_end_is_kept() -> None:
    assert visible_text("Todo:\n-check the logs") == "Todo:\n-check the logs"


def test_transfer_described_with_from_and_to_is_not_a_header_block() -> None:
    body = "I sent the coins yesterday.\nFrom: 0x1111\nTo: 0x2222\nDate: 1 Jan 2024\n\nNothing."

    assert visible_text(body) == body


def test_pasted_python_prompt_is_not_a_quote() -> None:
    body = "The API fails:\n\n>>> client.withdraw('BTC', 1)\nTimeoutError\n\nPlease check."

    assert visible_text(body) == body


def test_colon_sentence_with_a_date_is_not_an_attribution() -> None:
    body = "On 5 May I did this:\n\nopened the app and pressed withdraw."

    assert visible_text(body) == body


# --- forwarded mail and quote-only mail -------------------------------------------------

FORWARD = (
    "---------- Forwarded message ---------\nFrom: Bank <noreply@bank.example>\n"
    "Date: Mon, Jan 1, 2024 at 10:00 AM\nSubject: Transfer failed\nTo: <jane@example.com>\n\n"
    "Your transfer of 5 ETH failed.\n"
)


def test_forward_with_a_note_keeps_only_the_note() -> None:
    assert visible_text("Can you check this?\n\n" + FORWARD) == "Can you check this?"


def test_forward_without_a_note_is_the_forwarded_body() -> None:
    assert visible_text(FORWARD) == "Your transfer of 5 ETH failed."


@pytest.mark.parametrize(
    "separator",
    [
        "Begin forwarded message:",
        "-------- Forwarded Message --------",
        "---------- Weitergeleitete Nachricht ----------",
        "-------- Message transféré --------",
        "---------- Mensaje reenviado ---------",
        "---------- Пересылаемое сообщение ----------",
        "---------- 转发的邮件 ---------",
    ],
)
def test_localised_forward_separator_ends_the_note(separator: str) -> None:
    body = f"FYI\n\n{separator}\nFrom: Bank\nSubject: X\nDate: today\nTo: me\n\nBody"

    assert visible_text(body) == "FYI"


def test_quote_only_mail_falls_back_to_the_quoted_words() -> None:
    body = "On Mon, Jan 1, 2024 at 10:00 AM Jane <jane@example.com> wrote:\n> Please help\n> me"

    assert visible_text(body) == "Please help\nme"


def test_nested_quote_only_mail_falls_back_to_the_newest_quote() -> None:
    body = "> Still broken.\n> On 1 Jan 2024, Bob <bob@example.com> wrote:\n>> Try again."

    assert visible_text(body) == "Still broken."


def test_signature_only_mail_is_returned_whole() -> None:
    assert visible_text("Sent from my iPhone") == "Sent from my iPhone"


def test_visible_text_of_blank_input_is_empty() -> None:
    assert visible_text(" \r\n\x00\t") == ""
    assert own_words("> only a quote") == ""


def test_crlf_body_is_stripped_like_lf() -> None:
    body = "Fixed.\r\n\r\nOn Mon, 1 Jan 2024 Bob <bob@example.com> wrote:\r\n> Broken?\r\n"

    assert visible_text(body) == "Fixed."


# --- header block detection -------------------------------------------------------------


def test_header_block_needs_a_subject_a_rule_or_an_address() -> None:
    assert starts_with_header_block("From: Bob\nSent: Monday\nTo: Jane\nSubject: Hi")
    assert starts_with_header_block("From: Bob\nSent: Monday\nTo: Jane", after_rule=True)
    assert starts_with_header_block("From: Bob <bob@example.com>\nSent: Monday\nTo: Jane")
    assert not starts_with_header_block("From: Bob\nSent: Monday\nTo: Jane")
    assert not starts_with_header_block("Hello\nFrom: Bob\nSent: Monday\nSubject: Hi")


# --- clean_text -------------------------------------------------------------------------


def test_clean_text_normalises_line_ends_controls_and_blank_runs() -> None:
    raw = "\n  Cafe\u0301 \t\r\nline\x00two\x07\rthree\x1b\n\n\n\n\n\tend\x0c  \n\n"

    assert clean_text(raw) == "Café\nlinetwo\nthree\n\n\n\tend"


def test_clean_text_keeps_tabs_and_two_blank_lines() -> None:
    assert clean_text("a\t b\n\n\nc") == "a\t b\n\n\nc"


# --- remove_html_quotes -----------------------------------------------------------------


def html_words(html: str) -> str:
    """The text of an HTML document, whitespace collapsed (selectolax's extraction)."""
    body = LexborHTMLParser(html).body
    return " ".join(body.text(separator=" ").split()) if body is not None else ""


@pytest.mark.parametrize(
    "html",
    [
        '<div dir="ltr">Mine</div><div class="gmail_quote"><div class="gmail_attr">On Mon'
        ' wrote:</div><blockquote class="gmail_quote">Theirs</blockquote></div>',
        '<div>Mine</div><div><br><blockquote type="cite"><div>Theirs</div></blockquote></div>',
        '<div>Mine</div><div class="moz-cite-prefix">On 1/1/24 Bob wrote:</div>'
        '<blockquote type="cite">Theirs</blockquote>',
        '<div>Mine</div><div class="yahoo_quoted"><div>Theirs</div></div>',
        '<div>Mine</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>From:</b>'
        " Bob</div><div>Theirs</div>",
        '<p>Mine</p><div style="border:none;border-top:solid #E1E1E1 1.0pt"><p><b>Von:</b> Bob'
        "<br><b>Gesendet:</b> Montag<br><b>An:</b> Jane</p></div><p>Theirs</p>",
        "<p>Mine</p><p><b>发件人:</b> Bob<br><b>发送时间:</b> 周一<br><b>收件人:</b> Jane<br>"
        "<b>主题:</b> 提现</p><p>Theirs</p>",
        "<div>Mine</div><blockquote>Theirs</blockquote>",
        '<div>Mine</div><div class="protonmail_quote"><blockquote>Theirs</blockquote></div>',
    ],
)
def test_remove_html_quotes_drops_the_quoted_history(html: str) -> None:
    assert html_words(remove_html_quotes(html)) == "Mine"


def test_gmail_indented_blockquote_is_the_senders_own() -> None:
    html = '<div>Mine</div><blockquote style="margin:0 0 0 40px;border:none">Indented</blockquote>'

    assert html_words(remove_html_quotes(html)) == "Mine Indented"


def test_inline_blockquote_followed_by_text_is_kept() -> None:
    html = "<div>Mine</div><blockquote>Cited</blockquote><div>More of mine</div>"

    assert html_words(remove_html_quotes(html)) == "Mine Cited More of mine"


def test_html_that_is_only_a_quote_is_returned_unchanged() -> None:
    html = '<div class="gmail_quote">On Mon, Bob wrote:<blockquote>Theirs</blockquote></div>'

    assert remove_html_quotes(html) == html


def test_html_forward_without_a_note_is_returned_unchanged() -> None:
    html = (
        "<div>Begin forwarded message:</div>"
        '<blockquote type="cite"><b>From:</b> Bank<br><b>Subject:</b> X<br>Body</blockquote>'
    )

    assert remove_html_quotes(html) == html


def test_nested_quote_containers_are_removed_once() -> None:
    html = (
        '<div>Mine</div><div class="gmail_quote"><blockquote type="cite">'
        '<div class="gmail_quote"><blockquote type="cite">Old</blockquote></div>'
        "</blockquote></div>"
    )

    assert html_words(remove_html_quotes(html)) == "Mine"


def test_html_without_quotes_is_returned_unchanged() -> None:
    html = "<p>Hello,<br>my withdrawal is stuck.</p><blockquote style='border:none'>x</blockquote>"

    assert remove_html_quotes(html) == html


@pytest.mark.parametrize("html", ["", "   ", "plain words, no tags", "<p>", "<<>>"])
def test_remove_html_quotes_accepts_degenerate_input(html: str) -> None:
    assert isinstance(remove_html_quotes(html), str)
