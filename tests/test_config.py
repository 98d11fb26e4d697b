"""Configuration errors name the file, the key and what was expected; check-config exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from inbox_daemon.cli import main
from inbox_daemon.config import load_settings
from inbox_daemon.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "inbox.example.toml"


@pytest.fixture(autouse=True)
def secrets_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORT_MAIL_PASSWORD", "imap-secret")
    monkeypatch.setenv("SUPPORT_SMTP_PASSWORD", "smtp-secret")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def example_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    return write(tmp_path, text.replace(old, new, 1))


def test_example_config_loads_with_its_secrets_present() -> None:
    settings = load_settings(EXAMPLE)
    source = settings.source("support-mail")
    assert source.kind == "imap"
    assert source.poll_interval_s == 30
    assert settings.queue.sla_s["P1"] == 900


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = example_with(tmp_path, "poll_interval_s = 30", "poll_intervall_s = 30")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    assert "sources[0].poll_intervall_s" in message
    assert "did you mean 'poll_interval_s'" in message


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    path = example_with(tmp_path, "port = 993", 'port = "nine-nine-three"')
    with pytest.raises(ConfigError, match=r"sources\[0\]\.port.*valid integer"):
        load_settings(path)


def test_missing_secret_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPPORT_MAIL_PASSWORD")
    with pytest.raises(ConfigError, match="'SUPPORT_MAIL_PASSWORD' is not set"):
        load_settings(EXAMPLE)


def test_secret_written_in_config_is_refused_with_hint(tmp_path: Path) -> None:
    path = example_with(tmp_path, 'password_env = "SUPPORT_MAIL_PASSWORD"', 'password = "hunter2"')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "use password_env or password_file" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secret_read_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "imap-password"
    secret.write_text("from-a-file\n", encoding="utf-8")
    path = example_with(
        tmp_path, 'password_env = "SUPPORT_MAIL_PASSWORD"', f'password_file = "{secret}"'
    )
    source = load_settings(path).source("support-mail")
    assert source.credential() == "from-a-file"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('kind = "imap"', 'kind = "fax"', "unknown source kind 'fax'"),
        ("config_version = 1", "config_version = 2", "config_version"),
        ('post_ingest = "none"', 'post_ingest = "delete"', "'none', 'flag' or 'move:<folder>'"),
        (
            'ticket_url = "https://support.example.com/new?ref={reference}"',
            'ticket_url = "https://support.example.com/new"',
            "containing {reference}",
        ),
        ('url = "sqlite:///./inbox.db"', 'url = "mysql://x"', "sqlite:///PATH or postgresql"),
        ("[[sources]]\nname", '[[sources]]\nname = "x"\nname', "not valid TOML"),
    ],
)
def test_invalid_values_are_explained(tmp_path: Path, old: str, new: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("[", r"\[")):
        load_settings(example_with(tmp_path, old, new))


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    sources = text[text.index("[[sources]]") :]
    with pytest.raises(ConfigError, match="'support-mail' is used twice"):
        load_settings(write(tmp_path, text + "\n" + sources))


def test_check_config_exits_2_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = example_with(tmp_path, "batch_size = 100", "batch_size = -1")
    assert main(["check-config", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error
    assert "sources[0].batch_size" in error


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    assert "ok (1 sources)" in capsys.readouterr().out


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_people_map_each_identity_to_one_person(tmp_path: Path) -> None:
    path = example_with(
        tmp_path,
        '# [[triage.people]]\n# name = "vip-1042"\n'
        '# identities = ["email:alice@example.com", "twitter:@alice_trades", "uid:52019374"]',
        '[[triage.people]]\nname = "vip-1042"\n'
        'identities = ["email:Alice@Example.com", "twitter:@alice_trades", "uid:52019374"]',
    )
    people = load_settings(path).triage.person_of_identity()
    assert people == {
        "email:alice@example.com": "person:vip-1042",
        "twitter:@alice_trades": "person:vip-1042",
        "uid:52019374": "person:vip-1042",
    }


@pytest.mark.parametrize(
    ("people", "expected"),
    [
        ('identities = ["alice@example.com", "uid:1"]', "expected kind:value"),
        ('identities = ["uid:1"]', "at least 2"),
        (
            'identities = ["uid:1", "uid:2"]\n[[triage.people]]\nidentities = ["uid:2", "uid:3"]',
            "'uid:2' is listed under two people",
        ),
    ],
)
def test_bad_people_entries_are_named(tmp_path: Path, people: str, expected: str) -> None:
    path = example_with(tmp_path, "# [[triage.people]]\n", f"[[triage.people]]\n{people}\n")
    text = path.read_text(encoding="utf-8").replace('# name = "vip-1042"\n# identities', "# x")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_settings(path)
