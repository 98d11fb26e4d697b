"""The bundled acknowledgment templates: every language, channel and variant says what it must."""

from __future__ import annotations

import itertools
import unicodedata
from pathlib import Path

import pytest

from inbox_daemon.pipeline.templates import RenderedReply, TemplateSet

TEMPLATES = Path(__file__).resolve().parents[1] / "config" / "templates"
TICKET_URL = "https://support.example.com/new?ref={reference}"
REFERENCE = "FB-7K2Q-9MXA"
LINK = f"https://support.example.com/new?ref={REFERENCE}"
NAME = "Ana Lima"
SUBJECT = "Withdrawal stuck since Monday"
INCIDENT = "ETH withdrawals delayed"
SECRET_KINDS = ("seed_phrase", "private_key", "password", "otp_code", "api_secret")
CHANNELS = ("email", "twitter", "telegram")
CHAT_CHANNELS = ("twitter", "telegram")

#: Language as the detector reports it -> a fragment of that language's anti-phishing line
#: ("we will never ask for your password, 2FA code or seed phrase"), compared case-insensitively.
ANTI_PHISHING = {
    "en": "never ask for your password, your 2FA code or your seed phrase",
    "zh-cn": "我们绝不会向您索要密码、2FA 验证码或助记词",
    "zh-tw": "我們絕不會向您索取密碼、2FA 驗證碼或助記詞",
    "ru": "никогда не просим ваш пароль, код 2FA или сид-фразу",
    "uk": "ніколи не просимо ваш пароль, код 2FA чи сід-фразу",
    "es": "nunca le pediremos su contraseña, su código 2FA ni su frase semilla",
    "pt": "nunca pediremos sua senha, seu código 2FA ou sua frase de recuperação",
    "tr": "şifrenizi, 2FA kodunuzu veya kurtarma ifadenizi asla istemeyiz",
    "vi": "không bao giờ yêu cầu mật khẩu, mã 2FA hay cụm từ khôi phục",
    "ko": "비밀번호, 2FA 코드, 복구 구문을 절대 요청하지 않습니다",
    "ja": "当社がパスワード、2FAコード、シードフレーズをお尋ねすることはありません",
    "id": "tidak akan pernah meminta kata sandi, kode 2FA, atau frasa pemulihan",
    "fr": "ne demandons jamais votre mot de passe, code 2FA ou phrase de récupération",
    "de": "nie nach Passwort, 2FA-Code oder Seed-Phrase",
    "ar": "لن نطلب منك أبدًا كلمة المرور أو رمز 2FA أو عبارة الاسترداد",
}
LANGUAGES = tuple(ANTI_PHISHING)

# Characters written differently in simplified and traditional Chinese (simplified, traditional),
# among those the templates use: a reply in one script must not slip into the other.
CHINESE_PAIRS = (
    ("们", "們"), ("码", "碼"), ("请", "請"), ("这", "這"), ("会", "會"), ("问", "問"),
    ("题", "題"), ("处", "處"), ("务", "務"), ("转", "轉"), ("账", "帳"), ("号", "號"),
    ("钥", "鑰"), ("资", "資"), ("将", "將"), ("绝", "絕"), ("联", "聯"), ("报", "報"),
    ("单", "單"), ("关", "關"), ("动", "動"), ("检", "檢"), ("设", "設"), ("备", "備"),
    ("词", "詞"), ("钱", "錢"), ("删", "刪"), ("记", "記"), ("验", "驗"), ("证", "證"),
    ("进", "進"), ("员", "員"), ("时", "時"), ("该", "該"), ("网", "網"), ("链", "鏈"),
    ("录", "錄"), ("产", "產"), ("获", "獲"), ("认", "認"),
)  # fmt: skip

# X counts these code points once and every other one (CJK, Hangul, Kana, most of Vietnamese's
# precomposed letters, emoji) twice: twitter-text's weighted length, with 280 as the limit.
_TWEET_SINGLE_WEIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
TWEET_LIMIT = 280
TELEGRAM_MESSAGE_LIMIT = 4096


@pytest.fixture(scope="module")
def templates() -> TemplateSet:
    return TemplateSet(TEMPLATES, TICKET_URL)


def render(
    templates: TemplateSet,
    *,
    language: str,
    channel: str,
    public: bool = False,
    incident: str = "",
    secrets: tuple[str, ...] = (),
    category: str = "other",
    subject: str = SUBJECT,
) -> RenderedReply:
    return templates.render(
        channel=channel,
        category=category,
        language=language,
        values={
            "reference": REFERENCE,
            "display_name": NAME,
            "subject": subject,
            "incident": incident,
            "secrets": secrets,
            "public": public,
        },
    )


def tweet_length(text: str) -> int:
    """The length X gives ``text`` (URLs counted in full, which is stricter than X's 23)."""
    return sum(
        1 if any(low <= ord(char) <= high for low, high in _TWEET_SINGLE_WEIGHT) else 2
        for char in unicodedata.normalize("NFC", text)
    )


VARIANTS = list(
    itertools.product(LANGUAGES, CHANNELS, (False, True), ("", INCIDENT), ((), SECRET_KINDS))
)


def variant_id(variant: tuple[str, str, bool, str, tuple[str, ...]]) -> str:
    language, channel, public, incident, secrets = variant
    flags = ["public" if public else "private"]
    flags += ["incident"] if incident else []
    flags += ["secrets"] if secrets else []
    return "-".join([language, channel, *flags])


def file_language(language: str) -> str:
    # Simplified Chinese lives in the base-language file, which zh-cn falls back to.
    return "zh" if language == "zh-cn" else language


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_an_email_and_a_chat_template_per_chat_channel(language: str) -> None:
    # A missing chat file would fall back to the e-mail template, Subject line and all.
    for folder in ("default", *CHAT_CHANNELS):
        assert (TEMPLATES / folder / f"ack.{file_language(language)}.txt").is_file()


@pytest.mark.parametrize(
    ("language", "channel", "public", "incident", "secrets"),
    VARIANTS,
    ids=[variant_id(variant) for variant in VARIANTS],
)
def test_reply_has_reference_ticket_link_and_anti_phishing_line_in_its_language(
    templates: TemplateSet,
    language: str,
    channel: str,
    public: bool,
    incident: str,
    secrets: tuple[str, ...],
) -> None:
    reply = render(
        templates,
        language=language,
        channel=channel,
        public=public,
        incident=incident,
        secrets=secrets,
    )
    assert REFERENCE in reply.text
    assert LINK in reply.text
    assert ANTI_PHISHING[language].casefold() in reply.text.casefold()
    rendered = reply.subject + "\n" + reply.text
    assert "{{" not in rendered
    assert "{%" not in rendered
    assert "Sample" not in rendered


@pytest.mark.parametrize(
    ("language", "channel", "public", "incident", "secrets"),
    VARIANTS,
    ids=[variant_id(variant) for variant in VARIANTS],
)
def test_reply_is_laid_out_without_stray_blank_lines_or_spaces(
    templates: TemplateSet,
    language: str,
    channel: str,
    public: bool,
    incident: str,
    secrets: tuple[str, ...],
) -> None:
    text = render(
        templates,
        language=language,
        channel=channel,
        public=public,
        incident=incident,
        secrets=secrets,
    ).text
    assert "\n\n\n" not in text
    assert not text.startswith(("\n", " "))
    assert all(line == line.strip() for line in text.splitlines())


@pytest.mark.parametrize(
    ("language", "channel", "incident", "secrets"),
    list(itertools.product(LANGUAGES, CHANNELS, ("", INCIDENT), ((), SECRET_KINDS))),
)
def test_public_reply_repeats_neither_the_sender_nor_the_subject(
    templates: TemplateSet,
    language: str,
    channel: str,
    incident: str,
    secrets: tuple[str, ...],
) -> None:
    reply = render(
        templates,
        language=language,
        channel=channel,
        public=True,
        incident=incident,
        secrets=secrets,
    )
    for detail in (NAME, SUBJECT):
        assert detail not in reply.subject
        assert detail not in reply.text


@pytest.mark.parametrize(
    ("language", "channel", "incident", "secrets"),
    list(itertools.product(LANGUAGES, CHAT_CHANNELS, ("", INCIDENT), ((), SECRET_KINDS))),
)
def test_public_chat_reply_fits_in_one_tweet(
    templates: TemplateSet,
    language: str,
    channel: str,
    incident: str,
    secrets: tuple[str, ...],
) -> None:
    text = render(
        templates,
        language=language,
        channel=channel,
        public=True,
        incident=incident,
        secrets=secrets,
    ).text
    assert tweet_length(text.rstrip("\n")) <= TWEET_LIMIT


@pytest.mark.parametrize("language", LANGUAGES)
def test_public_reply_leaves_the_internal_incident_title_out(
    templates: TemplateSet, language: str
) -> None:
    # Incident titles are written by staff for staff ("143 users: ETH withdrawals stuck").
    title = "Hot wallet 7 paused by risk control"
    for channel in CHAT_CHANNELS:
        text = render(templates, language=language, channel=channel, public=True, incident=title)
        assert title not in text.text


@pytest.mark.parametrize(("language", "channel"), list(itertools.product(LANGUAGES, CHANNELS)))
def test_private_reply_names_the_known_incident_and_differs_from_the_plain_one(
    templates: TemplateSet, language: str, channel: str
) -> None:
    plain = render(templates, language=language, channel=channel)
    known = render(templates, language=language, channel=channel, incident=INCIDENT)
    assert INCIDENT in known.text
    assert known.text != plain.text


@pytest.mark.parametrize(("language", "channel"), list(itertools.product(LANGUAGES, CHANNELS)))
def test_private_reply_warns_about_each_kind_of_secret_in_its_own_words(
    templates: TemplateSet, language: str, channel: str
) -> None:
    plain = render(templates, language=language, channel=channel).text
    warnings = {
        kind: render(templates, language=language, channel=channel, secrets=(kind,)).text
        for kind in SECRET_KINDS
    }
    assert plain not in warnings.values()
    assert len(set(warnings.values())) == len(SECRET_KINDS)
    everything = render(templates, language=language, channel=channel, secrets=SECRET_KINDS).text
    assert len(everything) > max(len(text) for text in warnings.values())


@pytest.mark.parametrize(("language", "channel"), list(itertools.product(LANGUAGES, CHANNELS)))
def test_public_reply_with_a_secret_says_more_than_without(
    templates: TemplateSet, language: str, channel: str
) -> None:
    plain = render(templates, language=language, channel=channel, public=True).text
    warned = render(templates, language=language, channel=channel, public=True, secrets=("x",))
    assert warned.text != plain


@pytest.mark.parametrize(("language", "channel"), list(itertools.product(LANGUAGES, CHANNELS)))
def test_private_reply_still_warns_about_a_kind_of_secret_it_has_no_words_for(
    templates: TemplateSet, language: str, channel: str
) -> None:
    plain = render(templates, language=language, channel=channel).text
    warned = render(templates, language=language, channel=channel, secrets=("recovery_code",))
    assert len(warned.text) > len(plain)


@pytest.mark.parametrize(("language", "channel"), list(itertools.product(LANGUAGES, CHANNELS)))
def test_security_transfer_and_identity_replies_add_advice_to_the_plain_one(
    templates: TemplateSet, language: str, channel: str
) -> None:
    plain = render(templates, language=language, channel=channel).text
    advice = {
        category: render(templates, language=language, channel=channel, category=category).text
        for category in ("account_security", "deposit_withdrawal", "kyc")
    }
    assert all(len(text) > len(plain) for text in advice.values())
    assert len(set(advice.values())) == len(advice)


@pytest.mark.parametrize(("language", "channel"), list(itertools.product(LANGUAGES, CHAT_CHANNELS)))
def test_longest_private_chat_reply_fits_in_one_telegram_message(
    templates: TemplateSet, language: str, channel: str
) -> None:
    reply = render(
        templates,
        language=language,
        channel=channel,
        incident=INCIDENT,
        secrets=SECRET_KINDS,
        category="account_security",
    )
    assert len(reply.text) <= TELEGRAM_MESSAGE_LIMIT


@pytest.mark.parametrize("language", LANGUAGES)
def test_email_subject_is_re_subject_and_reference(templates: TemplateSet, language: str) -> None:
    reply = render(templates, language=language, channel="email")
    assert reply.subject == f"Re: {SUBJECT} [{REFERENCE}]"


@pytest.mark.parametrize("language", LANGUAGES)
def test_email_subject_is_not_prefixed_twice(templates: TemplateSet, language: str) -> None:
    reply = render(templates, language=language, channel="email", subject="RE: Help")
    assert reply.subject == f"RE: Help [{REFERENCE}]"


@pytest.mark.parametrize("language", LANGUAGES)
def test_email_without_subject_gets_a_localised_one_with_the_reference(
    templates: TemplateSet, language: str
) -> None:
    english = render(templates, language="en", channel="email", subject="").subject
    reply = render(templates, language=language, channel="email", subject="")
    assert reply.subject.endswith(f" [{REFERENCE}]")
    assert (reply.subject == english) == (language == "en")


@pytest.mark.parametrize("language", LANGUAGES)
def test_public_email_subject_does_not_echo_the_original(
    templates: TemplateSet, language: str
) -> None:
    public = render(templates, language=language, channel="email", public=True)
    untitled = render(templates, language=language, channel="email", subject="")
    assert public.subject == untitled.subject


@pytest.mark.parametrize(
    ("language", "channel", "public"),
    list(itertools.product(LANGUAGES, CHAT_CHANNELS, (False, True))),
)
def test_chat_reply_has_no_subject_line(
    templates: TemplateSet, language: str, channel: str, public: bool
) -> None:
    reply = render(templates, language=language, channel=channel, public=public)
    assert reply.subject == ""
    assert not reply.text.lower().startswith("subject:")


@pytest.mark.parametrize(
    ("language", "foreign"),
    [("zh-tw", 0), ("zh-cn", 1)],
    ids=["traditional-has-no-simplified", "simplified-has-no-traditional"],
)
def test_chinese_reply_stays_in_its_script(
    templates: TemplateSet, language: str, foreign: int
) -> None:
    own = 1 - foreign
    for channel, public in itertools.product(CHANNELS, (False, True)):
        reply = render(
            templates,
            language=language,
            channel=channel,
            public=public,
            incident=INCIDENT,
            secrets=SECRET_KINDS,
            category="account_security",
        )
        text = reply.subject + reply.text
        assert not {pair[foreign] for pair in CHINESE_PAIRS} & set(text)
        assert {pair[own] for pair in CHINESE_PAIRS} & set(text)


def test_unlisted_language_falls_back_to_english_on_every_channel(
    templates: TemplateSet,
) -> None:
    for channel in CHANNELS:
        reply = render(templates, language="it", channel=channel)
        assert ANTI_PHISHING["en"] in reply.text
        assert (reply.subject != "") == (channel == "email")
