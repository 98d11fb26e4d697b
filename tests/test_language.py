"""Language detection: the language of the sender's own words, or ``und``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import langdetect
import pytest
from langdetect import DetectorFactory, LangDetectException

from inbox_daemon.pipeline.language import UNDETERMINED, detect_language
from inbox_daemon.pipeline.normalise import visible_text
from tests.conftest import CORPORA

DEV_SET = CORPORA / "triage-dev" / "messages.jsonl"


def dev_set() -> Iterator[tuple[str, str]]:
    """(text as the pipeline passes it, labelled language) for each message of the dev set."""
    with DEV_SET.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            text = visible_text(row["text"]) if row["channel"] == "email" else row["text"]
            yield f"{row['subject'] or ''}\n{text}", row["label"]["language"]


def plain_langdetect(text: str) -> str:
    try:
        return str(langdetect.detect(text))
    except LangDetectException:
        return UNDETERMINED


def test_dev_set_language_accuracy_is_at_least_97_percent() -> None:
    results = [(detect_language(text), language, text) for text, language in dev_set()]
    wrong = [(got, expected, text[:80]) for got, expected, text in results if got != expected]
    assert len(results) >= 150
    assert 1 - len(wrong) / len(results) >= 0.97, wrong


def test_dev_set_is_detected_better_than_by_plain_langdetect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DetectorFactory, "seed", 0)
    rows = list(dev_set())
    ours = sum(detect_language(text) == language for text, language in rows)
    theirs = sum(plain_langdetect(text) == language for text, language in rows)
    assert ours > theirs


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "Support,\nmy deposit has not shown up in my wallet yet, can you check it?"),
        ("es", "Hola, mi retiro lleva dos días pendiente y nadie me responde"),
        ("zh-cn", "你好，我的提现一直没有到账，请帮忙查一下"),
        ("zh-tw", "您好，我的提領一直沒有到帳，請幫忙查一下"),
        ("ru", "Здравствуйте, не могу вывести деньги уже второй день"),
        ("uk", "Доброго дня, мій вивід досі не надійшов, що робити?"),
        ("pt", "Olá, meu saque ainda não caiu na conta, vocês podem verificar?"),
        ("de", "Hallo, meine Auszahlung hängt seit drei Tagen fest"),
        ("tr", "Merhaba, para çekme işlemim iki gündür beklemede"),
        ("vi", "Tôi đã nạp tiền nhưng chưa thấy vào tài khoản"),
        ("ko", "출금이 아직 안 들어왔어요. 확인 부탁드립니다"),
        ("fr", "Bonjour, mon retrait est bloqué depuis hier soir"),
        ("ja", "出金がまだ反映されていません。確認をお願いします"),
        ("ar", "لم يصل السحب الخاص بي حتى الآن، أرجو التحقق"),
        ("id", "Saya sudah deposit tapi saldo belum bertambah, tolong dicek"),
    ],
)
def test_each_language_of_the_dev_set_is_detected(language: str, text: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("it", "Buongiorno, il mio prelievo è bloccato da ieri, potete aiutarmi?"),
        ("nl", "Hallo, mijn opname staat al twee dagen in behandeling"),
        ("pl", "Dzień dobry, moja wypłata nie dotarła od wczoraj"),
        ("ms", "Saya tak boleh log masuk ke akaun saya sejak semalam"),
        ("bg", "Здравейте, тегленето ми не е пристигнало вече два дни"),
        ("fa", "برداشت من هنوز به کیف پول نرسیده است"),
        ("ur", "میری رقم ابھی تک نہیں پہنچی"),
        ("el", "Η ανάληψή μου δεν έχει φτάσει ακόμα"),
        ("he", "המשיכה שלי עדיין לא הגיעה"),
        ("hi", "मेरा पैसा अभी तक नहीं आया है"),
        ("th", "ยังไม่ได้รับเงินที่ถอนไปเลยครับ"),
    ],
)
def test_other_languages_are_told_by_script_letters_and_words(language: str, text: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("pt", "não recebi meu saque"),
        ("es", "no recibí mi retiro"),
        ("vi", "khong rut duoc tien, loi gi vay admin"),
        ("en", "withdrawal??"),
        ("es", "hola??"),
    ],
)
def test_short_texts_are_told_by_their_words(language: str, text: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("zh-cn", "App 里面的 K 线图打不开，refresh 也没用，Wi-Fi 和 4G 都试过了"),
        ("ko", "futures 포지션이 자동으로 close 됐어요 왜 그런지 확인해주세요"),
        ("ru", "мой withdrawal до сих пор pending, что происходит?"),
        ("ja", "KYCのverificationがずっとpendingのままです"),
        ("es", "Hello? necesito que me ayuden, no puedo entrar a mi cuenta desde hace días"),
        ("pt", "Good morning, meu saque está pendente faz dois dias, alguém pode verificar?"),
    ],
)
def test_mixed_text_takes_the_language_of_most_words(language: str, text: str) -> None:
    assert detect_language(text) == language


def test_text_evenly_split_between_scripts_is_undetermined() -> None:
    assert detect_language("hello привет") == UNDETERMINED


@pytest.mark.parametrize(
    "text",
    [
        "$BTC $ETH $SOL",
        "@exchange_support #crypto #airdrop https://example.com/promo?x=1",
        "USDT TRC20 BEP20 0x3f5CE5FBFe3E9af3971dD833D26bA9b5C936f0bE",
        "bc1q9h7garjy5s0a7dfcslrlyq3z2lmwzdukx3n0lm support@exchange.example",
        "12 345,67 / 89%",
    ],
)
def test_tickers_urls_handles_and_addresses_alone_are_undetermined(text: str) -> None:
    assert detect_language(text) == UNDETERMINED


@pytest.mark.parametrize("text", ["👍", "😡😡😡", "🙏🏼🚀💯", "❤️ 🔥"])
def test_emoji_alone_are_undetermined(text: str) -> None:
    assert detect_language(text) == UNDETERMINED


@pytest.mark.parametrize("text", ["", "ok", "?", "k", "lol", "好", "네", "+1"])
def test_very_short_text_is_undetermined(text: str) -> None:
    assert detect_language(text) == UNDETERMINED


def test_noise_around_words_does_not_change_their_language() -> None:
    text = (
        "@exchange_support $BTC withdrawal 0x3f5CE5FBFe3E9af3971dD833D26bA9b5C936f0bE stuck, "
        "llevo tres días esperando y nadie responde #help https://example.com/ticket/1"
    )
    assert detect_language(text) == "es"


def test_shouted_text_is_read_as_words() -> None:
    text = "WHERE IS MY 40 ETH??? WITHDRAWAL PENDING SINCE FRIDAY. NO ANSWER FROM ANYONE"
    assert detect_language(text) == "en"


def test_signature_and_disclaimer_do_not_count() -> None:
    text = (
        "Corporate account\nHi,\n\nWhat documents do you need to verify a company account?\n\n"
        "Saludos cordiales,\nJavier Ruiz\nDirector Financiero\n"
        "Este mensaje y sus anexos son confidenciales y están dirigidos exclusivamente a su "
        "destinatario. Si ha recibido este mensaje por error, le rogamos que lo elimine."
    )
    assert detect_language(text) == "en"


def test_disclaimer_alone_in_the_middle_does_not_count() -> None:
    text = (
        "Hallo,\nmeine Einzahlung fehlt seit gestern.\n"
        "This e-mail is confidential and intended solely for the addressee. If you received "
        "it in error, please delete it and notify the sender.\nHans"
    )
    assert detect_language(text) == "de"


def test_subject_of_a_reply_is_quoted_and_does_not_count() -> None:
    text = "Re: [FB-AAAA-BBBB] We received your message\nDanke, die Einzahlung ist jetzt da."
    assert detect_language(text) == "de"


def test_same_text_gets_the_same_answer_whatever_came_before() -> None:
    # Few list words for its length: this one is decided by langdetect, which samples at random.
    text = "Email verification link expires instantly, even when I click it within seconds"
    first = detect_language(text)
    for other in ("Compliance equals reliance", "websocket depth stream keeps disconnecting"):
        detect_language(other)
    assert first == "en"
    assert [detect_language(text) for _ in range(3)] == [first] * 3


def test_megabyte_text_is_read_from_its_start() -> None:
    text = "my withdrawal is stuck, please help me with it. " * 25_000
    assert len(text.encode()) > 1_000_000
    assert detect_language(text) == "en"


@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        "a-" * 500_000,
        "x@" * 500_000,
        "名" * 1_000_000,
        "\n".join(["Thanks,"] * 200_000),
    ],
)
def test_megabyte_of_pathological_text_does_not_crash(text: str) -> None:
    assert isinstance(detect_language(text), str)


def test_invalid_surrogates_do_not_crash() -> None:
    assert detect_language("\ud800 my withdrawal is stuck, please help \udfff") == "en"
    assert detect_language("\udcff\ud83d") == UNDETERMINED
