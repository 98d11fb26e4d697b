"""Reading a customer's answer to the resolution survey, in the bundled languages.

The replies are whole sentences as customers write them, not the parser's phrases: the
parser has to find the verdict and the rating inside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inbox_daemon.survey import NOT_SOLVED, SOLVED, SurveyAnswer, read_answer

ANSWERS = [
    # (language, reply, verdict, rating)
    ("en", "Yes it's solved now, thank you so much! 5", SOLVED, 5),
    ("en", "Nope, the money still hasn't arrived", NOT_SOLVED, None),
    ("en", "4/5, quick help", None, 4),
    ("zh", "问题已经解决了，谢谢你们！5分", SOLVED, 5),
    ("zh", "没有解决，钱还是没到账", NOT_SOLVED, None),
    ("zh-tw", "已解決，謝謝", SOLVED, None),
    ("ru", "Всё пришло, проблема решена. Ставлю 5", SOLVED, 5),
    ("ru", "не решено, деньги так и не пришли", NOT_SOLVED, None),
    ("uk", "Дякую, все вирішено! 4", SOLVED, 4),
    ("uk", "Ні", NOT_SOLVED, None),
    ("es", "¡Sí, ya está resuelto! Les doy un 5", SOLVED, 5),
    ("es", "Todavía no me llega el dinero", NOT_SOLVED, None),
    ("pt", "Tudo resolvido, obrigado! Nota 5", SOLVED, 5),
    ("pt", "Ainda não recebi nada", NOT_SOLVED, None),
    ("tr", "Sorun çözüldü, teşekkürler. 5", SOLVED, 5),
    ("tr", "Hâlâ bekliyorum, para gelmedi", NOT_SOLVED, None),
    ("vi", "Vấn đề đã được giải quyết, cảm ơn! 5", SOLVED, 5),
    ("vi", "Vẫn chưa nhận được tiền", NOT_SOLVED, None),
    ("ko", "해결됐어요 감사합니다 5점", SOLVED, 5),
    ("ko", "아직 입금이 안 됐어요", NOT_SOLVED, None),
    ("ja", "無事に解決しました。ありがとうございます！５", SOLVED, 5),
    ("ja", "まだ届いていません", NOT_SOLVED, None),
    ("id", "Sudah selesai, terima kasih banyak. Nilai 5", SOLVED, 5),
    ("id", "Belum masuk juga dananya", NOT_SOLVED, None),
    ("fr", "Oui c'est résolu, merci beaucoup ! 5/5", SOLVED, 5),
    ("fr", "Toujours pas reçu mon virement", NOT_SOLVED, None),
    ("de", "Hat funktioniert, danke! 5 Sterne", SOLVED, 5),
    ("de", "Leider immer noch nicht angekommen", NOT_SOLVED, None),
    ("ar", "تم حل المشكلة، شكرا لكم ٥", SOLVED, 5),
    ("ar", "لم يتم حل المشكلة بعد", NOT_SOLVED, None),
    ("emoji", "👍👍", SOLVED, None),
    ("emoji", "👎", NOT_SOLVED, None),
    ("emoji", "⭐⭐⭐⭐", None, 4),
    ("emoji", "5️⃣", None, 5),
]


@pytest.mark.parametrize(("language", "text", "verdict", "rating"), ANSWERS)
def test_survey_answers_are_read_in_each_language(
    language: str, text: str, verdict: str | None, rating: int | None
) -> None:
    assert read_answer(text) == SurveyAnswer(verdict, rating), language


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, I have another question about my account limits.",
        "Transaction FB-7K2Q-9MXA sent 2.5 ETH at 14:30",
        "My withdrawal of 3 BTC " + "is pending and I need it urgently. " * 10,
    ],
)
def test_new_messages_are_not_read_as_answers(text: str) -> None:
    assert read_answer(text) is None


def test_a_negation_wins_over_the_word_it_negates() -> None:
    assert read_answer("not solved").verdict == NOT_SOLVED  # type: ignore[union-attr]
    assert read_answer("no problem, solved").verdict == SOLVED  # type: ignore[union-attr]


#: Messages of the triage corpus (``../shared/corpora/triage-dev``) as if sent in answer to a
#: resolution notice, and what they say of it.
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "triage-dev"
CORPUS_VERDICTS = {
    "d-0131": SOLVED,  # "thanks guys, it's resolved now, the deposit showed up 👌"
    "d-0119": SOLVED,  # "... got my issue sorted in 20 min on a Sunday ..."
    "d-0023": NOT_SOLVED,  # "😡😡😡 $USDT deposit 3h+ still not there"
    "d-0073": NOT_SOLVED,  # "... 40+ confirmations and still nothing in my balance"
    "d-0147": NOT_SOLVED,  # Turkish: "... hâlâ inceleniyor yazıyor"
    "d-0024": NOT_SOLVED,  # Chinese: "... 还没到账 ..."
    "d-0079": NOT_SOLVED,  # Indonesian: "... belum masuk ke akun saya ..."
}


def corpus_messages() -> dict[str, dict[str, object]]:
    if not (CORPUS / "messages.jsonl").exists():
        pytest.skip(f"the triage corpus is not at {CORPUS}")
    with (CORPUS / "messages.jsonl").open(encoding="utf-8") as lines:
        return {row["id"]: row for row in map(json.loads, lines)}


def test_corpus_replies_are_read_as_their_authors_meant() -> None:
    messages = corpus_messages()
    for message_id, verdict in CORPUS_VERDICTS.items():
        answer = read_answer(str(messages[message_id]["text"]))
        assert answer is not None and answer.verdict == verdict, message_id


def test_corpus_times_and_amounts_are_not_ratings() -> None:
    """ "4 часа жду" is four hours, "5時間前" five hours ago: no rating in the corpus."""
    rated = {
        message_id: answer.rating
        for message_id, row in corpus_messages().items()
        if (answer := read_answer(str(row["text"]))) is not None and answer.rating is not None
    }
    assert rated == {}
