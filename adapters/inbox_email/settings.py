"""The settings of one ``kind = "imap"`` source and of its outgoing SMTP relay."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from inbox_daemon.config import SmtpRelaySettings, SourceSettings, read_secret

Security = Literal["none", "starttls", "tls"]


class SmtpSettings(SmtpRelaySettings):
    """The relay acknowledgments are sent through."""

    from_address: str
    from_name: str = ""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    validate_certs: bool = True
    ca_file: Path | None = None


class ImapSourceSettings(SourceSettings):
    """One mailbox (several folders) read over IMAP.

    ``post_ingest`` is what happens on the server once a message is stored: ``none`` (the
    default: nothing, not even the \\Seen flag), ``flag`` (set \\Flagged) or ``move:<folder>``.
    """

    kind: Literal["imap"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    security: Security = "tls"
    username: str
    auth: Literal["login", "xoauth2"] = "login"
    password_env: str | None = None
    password_file: Path | None = None
    oauth2_token_env: str | None = None
    oauth2_token_file: Path | None = None
    folders: Annotated[tuple[str, ...], Field(min_length=1)] = ("INBOX",)
    post_ingest: str = "none"
    max_message_bytes: Annotated[int, Field(ge=1024)] = 25 * 1024 * 1024
    max_attempts: Annotated[int, Field(ge=1)] = 3
    validate_certs: bool = True
    ca_file: Path | None = None
    smtp: SmtpSettings | None = None

    @field_validator("post_ingest")
    @classmethod
    def _known_action(cls, action: str) -> str:
        if action in ("none", "flag") or (
            action.startswith("move:") and len(action) > len("move:")
        ):
            return action
        raise ValueError("expected 'none', 'flag' or 'move:<folder>'")

    @model_validator(mode="after")
    def _secret_present(self) -> Self:
        self.credential()
        return self

    def credential(self) -> str:
        """The password (``auth = "login"``) or OAuth 2.0 access token (``"xoauth2"``), read now."""
        if self.auth == "xoauth2":
            return read_secret(self.oauth2_token_env, self.oauth2_token_file, key="oauth2_token")
        return read_secret(self.password_env, self.password_file, key="password")
