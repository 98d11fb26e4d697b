"""Load the operator's TOML configuration into immutable, validated settings.

Every key is checked at load: an unknown key, a wrong type or a missing secret is a
:class:`~inbox_daemon.errors.ConfigError` that names the file, the key and what was expected.
Secrets never appear in the file: a key ``password_env`` names an environment variable and
``password_file`` a file holding the value.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

#: The configuration format this version reads.
CONFIG_VERSION = 1

_SECRET_WORDS = ("password", "token", "secret", "api_key", "session")


class FrozenModel(BaseModel):
    """Base of every settings model: immutable, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(FrozenModel):
    """Where records live: ``sqlite:///path`` (relative to the config file) or PostgreSQL."""

    url: str = "sqlite:///./inbox.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgresql+")):
            raise ValueError("expected a sqlite:///PATH or postgresql://… URL")
        return url


class RepliesSettings(FrozenModel):
    """How acknowledgments are written and when they are withheld."""

    ticket_url: str = "https://support.example.com/new?ref={reference}"
    dry_run: bool = False
    templates_dir: Path | None = None
    max_ack_age_s: Annotated[int, Field(ge=0)] = 2 * 24 * 3600
    per_sender_per_hour: Annotated[int, Field(ge=0)] = 3
    per_sender_per_day: Annotated[int, Field(ge=0)] = 10
    own_addresses: tuple[str, ...] = ()
    loop_marker: str = "inbox-daemon"

    @field_validator("ticket_url")
    @classmethod
    def _has_reference(cls, url: str) -> str:
        if "{reference}" not in url:
            raise ValueError(
                "expected a URL containing {reference}, e.g. https://…/new?ref={reference}"
            )
        return url


class QueueSettings(FrozenModel):
    """The shared queue: how soon each priority is due, and how long a claim lasts."""

    sla_s: Mapping[str, Annotated[int, Field(gt=0)]] = {
        "P1": 15 * 60,
        "P2": 4 * 3600,
        "P3": 24 * 3600,
        "P4": 72 * 3600,
    }
    #: A claim not resolved (or renewed by claiming again) within this returns to the queue.
    claim_timeout_s: Annotated[float, Field(gt=0)] = 30 * 60

    @field_validator("sla_s")
    @classmethod
    def _every_priority(cls, sla_s: Mapping[str, int]) -> Mapping[str, int]:
        if set(sla_s) != {"P1", "P2", "P3", "P4"}:
            raise ValueError("expected exactly the keys P1, P2, P3 and P4")
        return sla_s


class PersonSpec(FrozenModel):
    """One ``[[triage.people]]`` entry: identities the operator knows to be one person.

    Identities are written ``kind:value``, as deduplication keys them: ``email:alice@example.com``,
    ``twitter:@alice`` (or the numeric user id), ``telegram:123456789``, ``uid:52019374``.
    """

    name: Annotated[str, Field(min_length=1)] | None = None
    identities: Annotated[tuple[str, ...], Field(min_length=2)]

    @field_validator("identities")
    @classmethod
    def _kind_and_value(cls, identities: tuple[str, ...]) -> tuple[str, ...]:
        for identity in identities:
            kind, colon, value = identity.partition(":")
            if not (colon and kind.strip() and value.strip()):
                raise ValueError(f"{identity!r}: expected kind:value, e.g. 'email:a@example.com'")
        return tuple(identity.strip().lower() for identity in identities)


class TriageSettings(FrozenModel):
    """Rules files (relative to the config file; the bundled ones by default) and dedupe."""

    rules_file: Path | None = None
    reply_rules_file: Path | None = None
    duplicate_window_s: Annotated[float, Field(gt=0)] = 7 * 86400
    incident_window_s: Annotated[float, Field(gt=0)] = 3600
    text_similarity: Annotated[float, Field(gt=0, le=1)] = 0.85
    people: tuple[PersonSpec, ...] = ()

    @model_validator(mode="after")
    def _one_person_per_identity(self) -> TriageSettings:
        owner: dict[str, int] = {}
        for number, person in enumerate(self.people):
            for identity in person.identities:
                if owner.setdefault(identity, number) != number:
                    raise ValueError(f"{identity!r} is listed under two people")
        return self

    def person_of_identity(self) -> dict[str, str]:
        """Each listed identity and the label of its person (its name, or its position)."""
        return {
            identity: f"person:{person.name or number}"
            for number, person in enumerate(self.people)
            for identity in person.identities
        }


class OutboxSettings(FrozenModel):
    """Reply delivery: how often due rows are sent and how failures are retried."""

    poll_interval_s: Annotated[float, Field(gt=0)] = 10.0
    batch_size: Annotated[int, Field(ge=1)] = 50
    max_attempts: Annotated[int, Field(ge=1)] = 8
    retry_base_s: Annotated[float, Field(gt=0)] = 30.0
    retry_cap_s: Annotated[float, Field(gt=0)] = 3600.0


class ServiceSettings(FrozenModel):
    """The daemon process: backoff of failing sources, shutdown, replica identity."""

    backoff_base_s: Annotated[float, Field(gt=0)] = 5.0
    backoff_cap_s: Annotated[float, Field(gt=0)] = 900.0
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 30.0
    lease_ttl_s: Annotated[float, Field(gt=0)] = 120.0
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class WebSettings(FrozenModel):
    """The HTTP server: the queue's JSON API and web page (``inbox-daemon web``, or in ``run``)."""

    #: Serve the API and page inside ``inbox-daemon run`` (``inbox-daemon web`` always serves).
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    #: Larger request bodies are refused (413) before they are read.
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    #: How often the queue page reloads its rows.
    page_refresh_s: Annotated[float, Field(ge=1, le=3600)] = 15.0
    #: The header a reverse proxy sets to the name of the agent it signed in (SSO), such as
    #: ``X-Forwarded-User``. Without it every request carries the agent's own bearer token.
    sso_header: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")] | None = None
    #: The peers the SSO header is believed from (the proxy, as this server sees it); the
    #: header from anyone else is ignored, or anybody could name themselves an admin.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")

    @model_validator(mode="before")
    @classmethod
    def _no_shared_token(cls, data: object) -> object:
        if isinstance(data, Mapping) and "token_env" in data:
            raise ValueError(
                "token_env: the shared token is gone; each agent signs in with a token of "
                "their own (inbox-daemon agents add NAME --team T; agents token NAME)"
            )
        return data


class MetricsSettings(FrozenModel):
    """Prometheus metrics: a listener of their own in ``inbox-daemon run``.

    The web server serves ``/metrics`` whenever it runs; this listener serves it, with the
    probes, for a daemon without the web server or for a scraper on another address.
    """

    #: Serve ``/metrics``, ``/healthz`` and ``/readyz`` alone on host:port in ``run``.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464
    #: A scrape waits this long for the queue and outbox figures, then answers without them.
    database_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


#: A team or category name, as the queue's filters accept it.
TeamName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
#: The name of an environment variable.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class VisibilitySettings(FrozenModel):
    """Items only some teams may see; leads and admins see every item.

    ``by_team``: an item routed to a team listed here is seen only by the teams it maps to.
    ``by_category``: likewise for the item's category, whatever its team. An item that both
    name is seen by the teams both allow.
    """

    by_team: Mapping[TeamName, tuple[TeamName, ...]] = {
        "risk_control": ("risk_control",),
        "compliance": ("compliance",),
        "finance": ("finance",),
    }
    by_category: Mapping[TeamName, tuple[TeamName, ...]] = {}


class StaffSettings(FrozenModel):
    """Support staff: their API tokens, what each team sees, how reads are logged."""

    #: A token issued without an explicit lifetime expires after this many days.
    token_ttl_days: Annotated[int, Field(ge=1, le=3650)] = 90
    #: An agent reading one item's detail again within this many seconds of their last logged
    #: read of it is not logged again (the page re-reads an open item on every refresh);
    #: 0 logs every read.
    view_log_interval_s: Annotated[float, Field(ge=0)] = 300.0
    visibility: VisibilitySettings = VisibilitySettings()


class SmtpRelaySettings(FrozenModel):
    """An SMTP relay to send through, and its login: the e-mail adapter's replies and the
    alerts both go out through one (each adds what it needs)."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["tls", "starttls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _secret_present(self) -> Self:
        if self.username is not None:
            read_secret(self.password_env, self.password_file, key="password")
        return self

    def password(self) -> str | None:
        """The relay password, read now from its variable or file; ``None`` without a username."""
        if self.username is None:
            return None
        return read_secret(self.password_env, self.password_file, key="password")


class AlertSmtpSettings(SmtpRelaySettings):
    """The relay e-mail alerts go out through."""

    password_env: EnvName | None = None
    from_address: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]


class AlertTargetBase(FrozenModel):
    """What every ``[[alerts.targets]]`` entry has: a name, and which alerts it takes."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    #: ``p1``: an item became P1; ``sla_breach``: an item passed its due time unresolved.
    events: Annotated[tuple[Literal["p1", "sla_breach"], ...], Field(min_length=1)] = (
        "p1",
        "sla_breach",
    )
    #: Only items of these teams (empty: every team).
    teams: tuple[TeamName, ...] = ()


class EmailAlertTarget(AlertTargetBase):
    """Alerts as e-mail to ``to``, through ``smtp``."""

    kind: Literal["email"]
    to: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")], ...], Field(min_length=1)
    ]
    smtp: AlertSmtpSettings


class WebhookAlertTarget(AlertTargetBase):
    """Alerts as a JSON POST to ``url``, signed with HMAC-SHA256 under the named secret."""

    kind: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    secret_env: EnvName | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _secret_present(self) -> WebhookAlertTarget:
        read_secret(self.secret_env, self.secret_file, key="secret")
        return self

    def secret(self) -> bytes:
        """The HMAC key, read now from its variable or file."""
        return read_secret(self.secret_env, self.secret_file, key="secret").encode()


class TelegramAlertTarget(AlertTargetBase):
    """Alerts as Telegram messages to ``chat_id``, sent by a bot through the Bot API."""

    kind: Literal["telegram"]
    chat_id: Annotated[str, Field(pattern=r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$")]
    bot_token_env: EnvName | None = None
    bot_token_file: Path | None = None
    api_base_url: Annotated[str, Field(pattern=r"^https?://\S+$")] = "https://api.telegram.org"

    @model_validator(mode="after")
    def _secret_present(self) -> TelegramAlertTarget:
        read_secret(self.bot_token_env, self.bot_token_file, key="bot_token")
        return self

    def bot_token(self) -> str:
        """The bot's token, read now from its variable or file."""
        return read_secret(self.bot_token_env, self.bot_token_file, key="bot_token")


AlertTarget = Annotated[
    EmailAlertTarget | WebhookAlertTarget | TelegramAlertTarget, Field(discriminator="kind")
]


class AlertsSettings(FrozenModel):
    """P1 items and SLA breaches pushed to the targets, each alert once per target."""

    targets: tuple[AlertTarget, ...] = ()
    #: The link each alert carries; ``{reference}`` is filled in.
    item_url: str = "http://127.0.0.1:8080/#{reference}"
    #: How often new alerts are looked for and due ones sent (at most a minute).
    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 15.0
    #: Items due longer ago than this are never alerted: a first start or a long outage
    #: does not flood the targets with old news.
    max_age_s: Annotated[float, Field(gt=0)] = 86400.0
    #: One delivery attempt gives up after this.
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    max_attempts: Annotated[int, Field(ge=1)] = 8
    retry_base_s: Annotated[float, Field(gt=0)] = 30.0
    retry_cap_s: Annotated[float, Field(gt=0)] = 1800.0
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50

    @field_validator("item_url")
    @classmethod
    def _has_reference(cls, url: str) -> str:
        if "{reference}" not in url:
            raise ValueError("expected a URL containing {reference}, e.g. https://…/#{reference}")
        return url

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: tuple[AlertTarget, ...]) -> tuple[AlertTarget, ...]:
        names = [target.name for target in targets]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"target name {name!r} is used twice; names must be unique")
        return targets


class RetentionSettings(FrozenModel):
    """How long feedback records are kept, by category, and what becomes of them after."""

    #: Days a record is kept after it was received, by category; ``default`` covers every
    #: category not listed. Without an entry (and no default) a record is kept until erased.
    retention_days: Mapping[TeamName, Annotated[int, Field(ge=1)]] = {}
    #: ``anonymise`` keeps labels and times (statistics) and drops whatever identifies or
    #: quotes the person; ``delete`` removes the record and everything that hangs off it.
    action: Literal["anonymise", "delete"] = "anonymise"
    #: When the daily job runs, UTC.
    run_at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "03:30"
    #: Records handled per transaction; progress is reported after each batch.
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500


class SourceSettings(FrozenModel):
    """The keys every ``[[sources]]`` entry has; adapters extend this model with their own."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    kind: str
    enabled: bool = True
    poll_interval_s: Annotated[float, Field(gt=0)] = 60.0
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    backfill_days: Annotated[int, Field(ge=0)] = 7
    timeout_s: Annotated[float, Field(gt=0)] = 60.0


class Settings(FrozenModel):
    """The whole validated configuration."""

    config_version: Literal[1]
    storage: StorageSettings = StorageSettings()
    replies: RepliesSettings = RepliesSettings()
    outbox: OutboxSettings = OutboxSettings()
    queue: QueueSettings = QueueSettings()
    triage: TriageSettings = TriageSettings()
    service: ServiceSettings = ServiceSettings()
    web: WebSettings = WebSettings()
    metrics: MetricsSettings = MetricsSettings()
    staff: StaffSettings = StaffSettings()
    alerts: AlertsSettings = AlertsSettings()
    retention: RetentionSettings = RetentionSettings()
    sources: tuple[SourceSettings, ...] = ()
    #: The file these settings were read from (not a TOML key).
    config_path: Path = Path("inbox.toml")

    @property
    def config_dir(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.config_path.parent

    def source(self, name: str) -> SourceSettings:
        """The settings of the source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


def read_secret(env: str | None, file: Path | None, *, key: str) -> str:
    """Read a secret named by ``<key>_env`` or ``<key>_file``.

    Raises:
        ValueError: neither or both are given, or the variable or file is missing or empty.
    """
    if (env is None) == (file is None):
        raise ValueError(f"give exactly one of {key}_env or {key}_file")
    if env is not None:
        value = os.environ.get(env, "")
        if not value:
            raise ValueError(f"{key}_env: environment variable {env!r} is not set or empty")
        return value
    assert file is not None  # noqa: S101 - narrowed by the check above
    try:
        value = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{key}_file: cannot read {str(file)!r}: {exc.strerror}") from exc
    if not value:
        raise ValueError(f"{key}_file: {str(file)!r} is empty")
    return value


def load_settings(path: Path | str) -> Settings:
    """Read and validate the configuration file at ``path``.

    Raises:
        ConfigError: the file is missing, is not TOML, or does not validate.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from exc
    return settings_from_document(document, path)


def settings_from_document(document: Mapping[str, Any], path: Path) -> Settings:
    """Validate a parsed TOML document that was read from ``path``."""
    body = dict(document)
    raw_sources = body.pop("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError("expected [[sources]] tables", path=str(path), key="sources")
    sources = tuple(_source(entry, index, path) for index, entry in enumerate(raw_sources))
    _check_unique_names(sources, path)
    try:
        return Settings.model_validate({**body, "sources": sources, "config_path": path})
    except ValidationError as exc:
        raise _config_error(exc, Settings, path, prefix="") from exc


def _source(entry: object, index: int, path: Path) -> SourceSettings:
    from .registry import adapter_plugin  # imported here: the registry imports this module

    prefix = f"sources[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError("expected a table", path=str(path), key=prefix)
    kind = entry.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(
            "missing key 'kind' (imap, twitter, telegram…)", path=str(path), key=prefix
        )
    model = adapter_plugin(kind, path=str(path), key=f"{prefix}.kind").settings_model
    try:
        settings = model.model_validate(entry)
    except ValidationError as exc:
        raise _config_error(exc, model, path, prefix=prefix) from exc
    assert isinstance(settings, SourceSettings)  # noqa: S101 - plugin contract
    return settings


def _check_unique_names(sources: Sequence[SourceSettings], path: Path) -> None:
    seen: set[str] = set()
    for index, source in enumerate(sources):
        if source.name in seen:
            raise ConfigError(
                f"source name {source.name!r} is used twice; names must be unique",
                path=str(path),
                key=f"sources[{index}].name",
            )
        seen.add(source.name)


def _config_error(
    exc: ValidationError, model: type[BaseModel], path: Path, *, prefix: str
) -> ConfigError:
    problems = [_describe(error, model) for error in exc.errors()]
    first_key = _dotted(prefix, exc.errors()[0]["loc"])
    detail = problems[0] if len(problems) == 1 else "; ".join(problems)
    return ConfigError(detail, path=str(path), key=first_key)


def _dotted(prefix: str, loc: Sequence[int | str]) -> str:
    key = prefix
    for part in loc:
        key = f"{key}[{part}]" if isinstance(part, int) else (f"{key}.{part}" if key else part)
    return key


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    loc = error["loc"]
    name = str(loc[-1]) if loc else ""
    if error["type"] == "extra_forbidden":
        return f"{_dotted('', loc)}: unknown key{_hint(name, _known_keys(model, loc[:-1]))}"
    expected = error["msg"]
    value = error.get("input")
    shown = f" (got {value!r})" if isinstance(value, int | float | str | bool) else ""
    return f"{_dotted('', loc) or 'value'}: {expected}{shown}"


def _known_keys(model: type[BaseModel], parents: Sequence[int | str]) -> list[str]:
    current: type[BaseModel] | None = model
    for part in parents:
        if current is None or isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        annotation = field.annotation if field else None
        current = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return sorted(current.model_fields) if current else []


def _hint(name: str, known: Sequence[str]) -> str:
    if any(word in name for word in _SECRET_WORDS) and not name.endswith(("_env", "_file")):
        return f"; secrets are never written in config: use {name}_env or {name}_file"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(known)}" if known else ""
