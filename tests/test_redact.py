"""Secret redaction: what POLICY.md calls a secret goes, everything else stays as written.

The corpus is ../shared/corpora/triage-dev (POLICY.md, section "Secrets"): each line's
``label.secrets`` lists the exact substrings that must not be stored.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest
from mnemonic import Mnemonic

from inbox_daemon.pipeline.redact import KINDS, Redaction, redact
from tests.conftest import CORPORA

DEV_SET = CORPORA / "triage-dev" / "messages.jsonl"
# The kind of each secret in the developer set (the labels list substrings, not kinds).
DEV_SECRET_KINDS = {
    "d-0004": "password",
    "d-0042": "api_secret",
    "d-0082": "seed_phrase",
    "d-0102": "seed_phrase",
    "d-0141": "otp_code",
    "d-0164": "private_key",
}
BIP39 = Mnemonic("english")
SEED_12 = BIP39.to_mnemonic(bytes(range(16)))
SEED_24 = BIP39.to_mnemonic(bytes(range(100, 132)))
HEX_64 = "1b49011b707223273c68736541a9dbb4258aec5473349c871ebb1d106f545c30"
TX_HASH = "55b3ef015294feec88dcedd406aafdaa25115a51caba92a174961a5ac9dd1bc2"
WIF_UNCOMPRESSED = "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ"
WIF_COMPRESSED = "KwdMAjGmerYanjeui5SHS7JkmpZvVipYvB2LJGU1ZxJwYvP98617"
XPRV = (
    "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3"
    "TGtRBeJgk33yuGBxrMPHi"
)
TPRV = "tprv" + XPRV[4:]  # the shape of a testnet key
# The shape of a Solana secret key or transaction signature: 88 base58 characters.
BASE58_88 = (XPRV[4:] * 2)[:88]
API_SECRET = "O2I0C4NoiTjZlp8vmOr6PZ1wSR7bii2EW7Mh5dS2LSIM8kdOMZyDUD7e00lzXfU7"
API_KEY_ID = "9fBtSZZmtNTvU8bTVOnTwLQeDo5CF0vvayzsukqhp8Qjo2uSHjBzTSUgDGrHsf7B"


def dev_messages() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEV_SET.read_text(encoding="utf-8").splitlines()]


def assert_redacted(text: str, secret: str, kind: str) -> Redaction:
    """``secret`` is gone from ``text`` and a marker of ``kind`` stands in its place."""
    assert secret in text
    result = redact(text)
    assert secret not in result.text
    assert f"[REDACTED:{kind}]" in result.text
    assert result.kinds == (kind,)
    return result


def assert_unchanged(text: str) -> None:
    result = redact(text)
    assert result.text == text
    assert dict(result.counts) == {}
    assert result.kinds == ()


# --- the developer set ------------------------------------------------------------------------


def test_every_dev_secret_is_replaced_by_a_marker_of_its_kind() -> None:
    with_secrets = {m["id"]: m for m in dev_messages() if m["label"]["secrets"]}
    assert set(with_secrets) == set(DEV_SECRET_KINDS)
    for message_id, message in with_secrets.items():
        kind = DEV_SECRET_KINDS[message_id]
        fields = [redact(message["subject"] or ""), redact(message["text"])]
        for secret in message["label"]["secrets"]:
            assert all(secret not in field.text for field in fields), message_id
        assert any(f"[REDACTED:{kind}]" in field.text for field in fields), message_id
        assert {k for field in fields for k in field.kinds} == {kind}, message_id


def test_dev_messages_without_secrets_come_back_unchanged() -> None:
    clean = [m for m in dev_messages() if not m["label"]["secrets"]]
    assert len(clean) > 150
    for message in clean:
        assert_unchanged(message["subject"] or "")
        assert_unchanged(message["text"])


def test_dev_redaction_keeps_the_words_around_a_seed_phrase() -> None:
    drained = next(m for m in dev_messages() if m["id"] == "d-0102")
    text = redact(drained["text"]).text
    # "Please tell" are wordlist words right after the phrase; the checksum keeps them.
    assert "seed so you can check what happened: [REDACTED:seed_phrase]\n\nPlease tell me" in text


# --- seed phrases -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        SEED_12,
        SEED_24,
        SEED_12.upper(),
        " ".join(word.capitalize() for word in SEED_24.split()),
        ", ".join(SEED_12.split()),
        "\n".join(SEED_24.split()),
        "\n".join(f"{i}. {word}" for i, word in enumerate(SEED_24.split(), 1)),
        " ".join(f"{i}) {word}" for i, word in enumerate(SEED_12.split(), 1)),
        "1.".join(["", *SEED_12.split()]),
        " - ".join(SEED_12.split()),
    ],
    ids=[
        "12",
        "24",
        "upper",
        "capitalised",
        "commas",
        "lines",
        "numbered",
        "paren",
        "tight",
        "dash",
    ],
)
def test_seed_phrase_is_redacted_whatever_separates_its_words(text: str) -> None:
    result = redact(f"My recovery phrase:\n{text}\nPlease help!")
    assert result.counts == {"seed_phrase": 1}
    assert result.text == "My recovery phrase:\n[REDACTED:seed_phrase]\nPlease help!"


@pytest.mark.parametrize("entropy_bytes", [16, 20, 24, 28, 32])
def test_seed_phrase_of_every_bip39_length_is_redacted(entropy_bytes: int) -> None:
    phrase = BIP39.to_mnemonic(bytes(range(7, 7 + entropy_bytes)))
    assert_redacted(f"seed: {phrase}", phrase, "seed_phrase")


def test_seed_phrase_next_to_chinese_text_is_redacted() -> None:
    text = f"助记词是：{SEED_24} 你们帮我查一下是谁转走的，急！"
    result = assert_redacted(text, SEED_24, "seed_phrase")
    assert result.text == "助记词是：[REDACTED:seed_phrase] 你们帮我查一下是谁转走的，急！"


def test_seed_phrase_with_a_bad_checksum_is_still_redacted_whole() -> None:
    words = SEED_12.split()
    typo = " ".join([*words[:11], "zoo"])  # a wordlist word, but the checksum fails
    assert not BIP39.check(typo)
    assert_redacted(f"words: {typo} please", typo, "seed_phrase")


def test_eleven_wordlist_words_are_not_a_seed_phrase() -> None:
    assert_unchanged(" ".join(SEED_12.split()[:11]))
    assert_unchanged("able about above absent absorb abstract absurd abuse access accident account")


def test_ordinary_english_made_of_wordlist_words_is_not_a_seed_phrase() -> None:
    assert_unchanged(
        "Please help me, I sent my deposit to the wrong address and the funds never arrived. "
        "Can you check what happened and tell me when it will be credited to my account?"
    )


def test_two_seed_phrases_in_one_run_are_counted_apart() -> None:
    first, second = SEED_12, BIP39.to_mnemonic(bytes(range(50, 66)))
    result = redact(f"old: {first}\nnew: {second}")
    assert result.counts == {"seed_phrase": 2}
    assert first not in result.text and second not in result.text


# --- private keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "private key",
        "my private key is",
        "privkey:",
        "私钥：",
        "私鑰",
        "приватный ключ:",
        "clave privada:",
        "chave privada",
        "özel anahtarım",
        "khóa riêng tư",
        "개인키",
        "秘密鍵は",
        "kunci privat",
        "clé privée :",
        "privater Schlüssel:",
        "المفتاح الخاص",
        "приватний ключ",
    ],
)
def test_hex_private_key_is_redacted_when_labelled_as_a_key(label: str) -> None:
    for key in (HEX_64, "0x" + HEX_64):
        assert_redacted(f"{label} {key} please import it", key, "private_key")


def test_hex_private_key_labelled_after_it_is_redacted() -> None:
    assert_redacted(f"{HEX_64} is my private key", HEX_64, "private_key")


def test_base58_private_key_is_redacted_when_labelled_as_a_key() -> None:
    assert_redacted(f"Phantom private key: {BASE58_88}", BASE58_88, "private_key")
    assert_unchanged(f"Solana signature {BASE58_88}")
    assert_unchanged(BASE58_88)


@pytest.mark.parametrize("key", [WIF_UNCOMPRESSED, WIF_COMPRESSED, XPRV, TPRV])
def test_wif_and_extended_private_keys_are_redacted_without_a_label(key: str) -> None:
    assert_redacted(f"here it is: {key}\nthanks", key, "private_key")


@pytest.mark.parametrize(
    "text",
    [
        f"Txid : {TX_HASH}",
        f"TXID {TX_HASH.upper()}",
        f"tx hash 0x{TX_HASH}",
        f"The transaction went through (0x{TX_HASH}) but nothing shows up",
        f"Hash: 0x{TX_HASH}",
        f"交易哈希：{TX_HASH}",
        f"хэш транзакции {TX_HASH}",
        f"Hier die TxID: {TX_HASH}",
        f"mã giao dịch {TX_HASH}",
        f"{TX_HASH}",
        f"my private key was never shared, the transaction is {TX_HASH}",
        f"public key {HEX_64}",
        f"API key: {API_KEY_ID}",
    ],
)
def test_transaction_hashes_and_unlabelled_hex_are_not_redacted(text: str) -> None:
    assert_unchanged(text)


# --- one-time codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("the last one my 2fa code is 482913 and it still said invalid", "482913"),
        ("OTP: 482 913", "482 913"),
        ("my verification code is 482913", "482913"),
        ("SMS code 4829 didn't work", "4829"),
        ("Google Authenticator code: 48291377", "48291377"),
        ("验证码是482913，请帮我看看", "482913"),
        ("驗證碼：482913", "482913"),
        ("Мой код из СМС: 482913", "482913"),
        ("код подтверждения 482913", "482913"),
        ("Mi código de verificación es 482913", "482913"),
        ("o código SMS é 482913", "482913"),
        ("doğrulama kodu 482913", "482913"),
        ("mã xác minh là 482913", "482913"),
        ("mã OTP của bạn là 482913", "482913"),
        ("인증번호는 482913 입니다", "482913"),
        ("認証コードは482913です", "482913"),
        ("kode OTP saya 482913", "482913"),
        ("le code de vérification est 482913", "482913"),
        ("Mein Bestätigungscode lautet 482913", "482913"),
        ("der Code ist 482913", "482913"),
        ("رمز التحقق هو 482913", "482913"),
        ("Мій код підтвердження: 482913", "482913"),
        ("код: 482913", "482913"),
        ("the code they sent me was 482913", "482913"),
        ("the verification code for my account: 482913", "482913"),
    ],
)
def test_one_time_code_given_as_such_is_redacted(text: str, code: str) -> None:
    assert_redacted(text, code, "otp_code")


@pytest.mark.parametrize(
    "text",
    [
        "I did not give my 2FA code to anyone",
        "Não passei o código para ninguém e o meu saldo continua igual.",
        "websocket keeps disconnecting with close code 1006",
        "error code 400003 on every call",
        "my referral code is 123456",
        "my code is HANNAH25",
        "Mã lệnh: 3390128745",
        "код ошибки 482913",
        "UID 60027741, order id 3390128745",
        "I got 482913 USDT back",
        "+44 20 7946 0321",
        "Your reference is FB-7K2Q-9MXA",
        "2FA code 12345678901",
        "2FA code and UID is 12345678",
        "The API returns code 200001 with message 'invalid'",
        "gift card code 482913",
    ],
)
def test_numbers_that_are_not_one_time_codes_are_not_redacted(text: str) -> None:
    assert_unchanged(text)


def test_one_time_password_is_one_redaction_of_the_code_kind() -> None:
    result = redact("one-time password: 482913")
    assert result.text == "one-time password: [REDACTED:otp_code]"
    assert result.counts == {"otp_code": 1}


# --- passwords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "password"),
    [
        ("mi contraseña es Girasol#2291, pero me sale error", "Girasol#2291"),
        ("password: hunter2", "hunter2"),
        ("my password is Summer2024!", "Summer2024!"),
        ("pwd=Xy7#kk9z", "Xy7#kk9z"),
        ("pass: abc123", "abc123"),
        ("Password: sunshine\nThanks", "sunshine"),
        ('{"password": "correct horse battery"}', "correct horse battery"),
        ("password for binance is Xy7#kk", "Xy7#kk"),
        ("пароль: qwerty123", "qwerty123"),
        ("密码是Abc12345，帮我", "Abc12345"),
        ("a senha é Minha$enha1", "Minha$enha1"),
        ("şifrem: Deniz1990!", "Deniz1990!"),
        ("mật khẩu là Matkhau@123", "Matkhau@123"),
        ("비밀번호는 Abc12345!", "Abc12345!"),
        ("パスワードはAbc12345です", "Abc12345"),
        ("kata sandi saya adalah Rahasia123", "Rahasia123"),
        ("mon mot de passe est Soleil2024!", "Soleil2024!"),
        ("Mein Passwort ist Sommer2024", "Sommer2024"),
        ("كلمة المرور هي Abc12345", "Abc12345"),
        ("мій пароль - Kyiv2024", "Kyiv2024"),
    ],
)
def test_pasted_password_is_redacted(text: str, password: str) -> None:
    result = assert_redacted(text, password, "password")
    assert result.text == text.replace(password, "[REDACTED:password]", 1)


@pytest.mark.parametrize(
    "text",
    [
        "I have changed my password but I'm scared their session is still active",
        "my password is wrong",
        "my password is correct but login fails",
        "password: not working since yesterday",
        "Já troquei a senha.",
        "password reset link: https://exchange.example/reset?a=1",
        "Password: ********",
        "Username:\nPassword:\nThanks for any help",
        "we will never ask for your password, 2FA code or seed phrase",
        "I pass 123456 tests",
    ],
)
def test_talk_about_passwords_is_not_redacted(text: str) -> None:
    assert_unchanged(text)


# --- API secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"API key: {API_KEY_ID}\nSecret: {API_SECRET}\n",
        f"api_secret={API_SECRET}",
        f'{{"apiKey": "{API_KEY_ID}", "secretKey": "{API_SECRET}"}}',
        f"secret key: {API_SECRET}",
        f"секретный ключ: {API_SECRET}",
        f"clave secreta: {API_SECRET}",
        f"密钥：{API_SECRET}",
        f"시크릿 키: {API_SECRET}",
    ],
)
def test_api_secret_is_redacted_but_not_the_public_key_id(text: str) -> None:
    result = assert_redacted(text, API_SECRET, "api_secret")
    assert result.counts == {"api_secret": 1}
    if API_KEY_ID in text:
        assert API_KEY_ID in result.text


def test_grouped_base32_2fa_setup_key_is_redacted() -> None:
    assert_redacted("2FA setup key: JBSW Y3DP EHPK 3PXP", "JBSW Y3DP EHPK 3PXP", "api_secret")


# --- things that are never secrets -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sent to 0xe3c4ff0344f6fe56159cda13589a09bbfd51cb6d",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq and 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
        "TRON TJRyWwFs9wTFGZg3JbrVriFbNfCug5tDeC",
        "SOL 7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",
        "withdrawal id W-20261123-000481, position 99812003",
        "Re: [FB-7K2Q-9MXA] We received your message",
        "2.6 ETH and 4,100 USDT",
        "",
        "😀🚀🔥",
        "\ud800 broken surrogates \udfff",
    ],
)
def test_addresses_ids_amounts_and_odd_text_come_back_unchanged(text: str) -> None:
    assert_unchanged(text)


# --- the result ---------------------------------------------------------------------------------


def test_counts_and_kinds_cover_every_secret_in_a_stable_order() -> None:
    text = (
        f"api_secret={API_SECRET}\npassword: hunter2\n2FA code 482913\n"
        f"private key {HEX_64}\n{SEED_12}\nand OTP 111222"
    )
    result = redact(text)
    assert result.kinds == KINDS
    assert result.counts == {
        "seed_phrase": 1,
        "private_key": 1,
        "otp_code": 2,
        "password": 1,
        "api_secret": 1,
    }


def test_result_is_immutable() -> None:
    result = redact("password: hunter2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.counts["password"] = 0  # type: ignore[index]


def test_redacting_twice_changes_nothing_more() -> None:
    once = redact(
        f"password: hunter2\n2FA code 482913\nprivate key {HEX_64}\nSecret: {API_SECRET}\n{SEED_12}"
    )
    assert len(once.kinds) == len(KINDS)
    assert_unchanged(once.text)


def test_text_without_secrets_is_returned_as_is() -> None:
    text = "Hello, my deposit is late."
    assert redact(text).text is text


# --- hostile sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filler",
    [
        "a",
        "abandon ",
        "password ",
        "2FA code 48291 ",
        "0123456789abcdef",
        "1.\n",
        "😀 ",
    ],
    ids=["letters", "wordlist", "labels", "codes", "hex", "numbering", "emoji"],
)
def test_a_megabyte_of_text_is_handled_and_its_secret_still_found(filler: str) -> None:
    padding = filler * (1_000_000 // len(filler))
    result = redact(f"{padding}\npassword: hunter2\n{padding}")
    assert "hunter2" not in result.text
    assert "[REDACTED:password]" in result.text


def test_a_megabyte_of_random_printable_text_does_not_crash() -> None:
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEF0123456789 \n.,:=#-_验证码密码"
    text = "".join(rng.choice(alphabet) for _ in range(1_000_000))
    assert len(redact(text).text) > 0
