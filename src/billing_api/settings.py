"""Typed settings, read from ``BILLING_API_*`` environment variables.

Nothing here is created at import time: ``Settings()`` is built by the CLI, the app factory
or a test, each with its own values.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

# The public default of earlier releases: refused everywhere, since anyone can read it.
DEVELOPMENT_SECRET = "development-only-secret-change-me"  # noqa: S105
# An HMAC key shorter than its hash's 32 bytes is a weaker key than the construction allows.
MIN_SECRET_BYTES = 32
SECRET_ENV = "BILLING_API_SECRET_KEY"  # noqa: S105 - the variable's name
_GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


class ConfigurationError(Exception):
    """A setting that cannot work; ``str()`` is one line that names the variable to fix."""


def default_database_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("billing-api"))
    return f"sqlite:///{data_dir / 'billing.db'}"


def secret_file_for(database_url: str) -> Path | None:
    """Where the generated secret of this database lives: beside a SQLite file
    (``billing.db.secret``), or per database in the user data dir for a server database;
    None for an in-memory database, which lives no longer than the process."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return None
        path = Path(url.database)
        return path.with_name(path.name + ".secret")
    name = f"{url.get_backend_name()}-{url.host or 'local'}-{url.port or 'default'}-" \
           f"{url.database or ''}"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return Path(platformdirs.user_data_dir("billing-api")) / f"{safe}.secret"


def _read_secret_file(path: Path) -> str:
    info = path.stat()
    if info.st_mode & 0o077:
        raise ValueError(f"the generated secret file {path} can be read by other users: "
                         f"run `chmod 600 {path}`")
    value = path.read_text(encoding="utf-8").strip()
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the generated secret file {path} holds less than {MIN_SECRET_BYTES} "
                         f"bytes: delete it (keys made under it stop working) or set "
                         f"{SECRET_ENV}")
    return value


def load_or_create_secret(path: Path) -> str:
    """The secret kept in ``path``, made on first use: 64 URL-safe characters (384 bits).

    The file is written under a temporary name created with O_EXCL and mode 0600 (so it is
    never readable by others, whatever the umask) and then hard-linked into place, which
    fails if another process got there first: two first starts agree on one secret and no
    reader ever sees a half-written file."""
    if path.exists():
        return _read_secret_file(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process's secret won: use it
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_secret_file(path)


def _cidrs(value: str) -> str:
    for part in value.split(","):
        if part.strip():
            try:
                ipaddress.ip_network(part.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IP address or CIDR range "
                                 "(comma-separated, e.g. 10.0.0.0/8,::1)") from None
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_API_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    # A PostgreSQL streaming replica for document downloads (docs/operations.md, "Deployment
    # at scale"); everything that writes, and authentication, stays on ``database_url``.
    read_database_url: str | None = None
    # Keys, link tokens and portal sessions are HMAC'd under keys derived from this secret;
    # the id lets a pepper be rotated. Unset: a generated one (see ``_resolve_secret``).
    secret_key: SecretStr = SecretStr("")
    pepper_id: int = 1
    # "production" (any case) refuses a generated secret; anything else is a development box.
    environment_name: str = "development"
    trusted_proxies: str = ""
    timezone: str = "Europe/Amsterdam"
    rate_limit_per_minute: int = Field(default=120, ge=1)
    # Failed API authentications per client address (IPv6: per /64) and minute; past it the
    # address gets 429 without a key lookup (docs/access.md, "Rate limits").
    failed_auth_per_minute: int = Field(default=30, ge=1)
    # Connections the app keeps open, all of them pooled for good: an overflow connection is
    # closed when returned, and re-opening one per request (4 PRAGMAs on SQLite, a login on
    # PostgreSQL) halved small-request throughput under load. Also bounds concurrent streams.
    database_pool_size: int = Field(default=15, ge=1)
    redis_url: str | None = None
    # Who may read /metrics (comma-separated CIDRs, judged like the whitelist); "" = nobody.
    metrics_allow: str = "127.0.0.1/32,::1/128"
    # A portal session ends after this long without a request, and this long after login
    # whatever happens (both enforced on the server: the cookie only names the session).
    portal_session_idle_seconds: int = Field(default=30 * 60, ge=1)
    portal_session_max_seconds: int = Field(default=8 * 3600, ge=1)
    # Portal single sign-on with the distributor's platform (OpenID Connect, docs/portal.md):
    # on when issuer, client id and secret are all set.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_scopes: str = "openid email profile"
    # The ID token claim that names the partner's company (its id in this system).
    oidc_company_claim: str = "company_id"
    oidc_platform_name: str = "Commerce Platform"
    # The portal's own e-mail + password login; off only with single sign-on configured.
    local_login: bool = True

    # --- webhooks (docs/webhooks.md) ----------------------------------------------------------
    # Hosts and CIDRs a webhook may reach although they are private or loopback, and over plain
    # HTTP (comma-separated, e.g. "127.0.0.1/32,hooks.internal"); "" = public HTTPS only.
    webhook_allow: str = ""
    # "false" when `billing-api worker` processes deliver instead of the servers.
    webhook_delivery_in_serve: bool = True
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_read_timeout_seconds: float = Field(default=15.0, gt=0)
    # A message is retried with exponential backoff (first wait below, doubling, with jitter)
    # for this long after it was written; then it is given up and its endpoint disabled.
    webhook_retry_seconds: float = Field(default=3 * 24 * 3600, gt=0)
    webhook_backoff_seconds: float = Field(default=5.0, gt=0)
    # How long a delivery worker holds a claimed message: past it, a crashed worker's message
    # is sent again. Must exceed the connect and read timeouts.
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_concurrency: int = Field(default=4, ge=1)

    # Where the secret came from, for the startup log (never the value).
    _secret_source: str = PrivateAttr(default="")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(f"{value!r} is not a database URL (sqlite:///PATH or "
                             "postgresql://USER@HOST:PORT/DATABASE)") from None
        return value

    @field_validator("read_database_url")
    @classmethod
    def _read_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"{value!r} is not a database URL "
                             "(postgresql://USER@HOST:PORT/DATABASE)") from None
        if url.get_backend_name() != "postgresql":
            raise ValueError("a read replica must be a PostgreSQL URL "
                             "(postgresql://USER@HOST:PORT/DATABASE)")
        return value

    @model_validator(mode="after")
    def _replica_needs_postgresql(self) -> Settings:
        if self.read_database_url is not None and self.is_sqlite:
            raise ValueError("BILLING_API_READ_DATABASE_URL needs a PostgreSQL primary "
                             "(BILLING_API_DATABASE_URL is SQLite)")
        return self

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Amsterdam") \
                from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        return _cidrs(value)

    @field_validator("metrics_allow")
    @classmethod
    def _metrics_allow(cls, value: str) -> str:
        return _cidrs(value)

    @field_validator("webhook_allow")
    @classmethod
    def _webhook_allow(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", part):
                    raise ValueError(f"{part!r} is neither a host name nor an IP address or "
                                     "CIDR range (comma-separated)") from None
        return value

    @model_validator(mode="after")
    def _webhook_lease(self) -> Settings:
        if self.webhook_lease_seconds <= (self.webhook_connect_timeout_seconds
                                          + self.webhook_read_timeout_seconds):
            raise ValueError("BILLING_API_WEBHOOK_LEASE_SECONDS must exceed the webhook connect "
                             "and read timeouts together, or a slow delivery is sent twice")
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("oidc_issuer")
    @classmethod
    def _oidc_issuer(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return ""
        parts = urlsplit(value)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(f"{value!r} must be an https:// URL (http:// only on loopback)")
        if parts.query or parts.fragment or not parts.hostname:
            raise ValueError(f"{value!r} is not an issuer URL such as https://id.example.com")
        return value

    @field_validator("oidc_scopes")
    @classmethod
    def _oidc_scopes(cls, value: str) -> str:
        scopes = value.replace(",", " ").split()
        if "openid" not in scopes:
            scopes.insert(0, "openid")
        return " ".join(scopes)

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        """Single sign-on needs all three of issuer, client id and secret; password login may
        be switched off only when it is configured (else nobody could log in)."""
        parts = {"BILLING_API_OIDC_ISSUER": self.oidc_issuer,
                 "BILLING_API_OIDC_CLIENT_ID": self.oidc_client_id.strip(),
                 "BILLING_API_OIDC_CLIENT_SECRET": self.oidc_client_secret.get_secret_value()}
        missing = [name for name, value in parts.items() if not value]
        if 0 < len(missing) < len(parts):
            raise ValueError(f"single sign-on is half configured: set {', '.join(missing)} "
                             "too (or unset all three)")
        if not self.local_login and missing:
            raise ValueError("BILLING_API_LOCAL_LOGIN=false switches password login off, but "
                             "single sign-on is not configured: set BILLING_API_OIDC_ISSUER, "
                             "BILLING_API_OIDC_CLIENT_ID and BILLING_API_OIDC_CLIENT_SECRET "
                             "(or leave BILLING_API_LOCAL_LOGIN unset)")
        if not self.oidc_company_claim.strip():
            raise ValueError("BILLING_API_OIDC_COMPANY_CLAIM must name a claim")
        return self

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id.strip()
                    and self.oidc_client_secret.get_secret_value())

    @model_validator(mode="after")
    def _resolve_secret(self) -> Settings:
        """An explicit secret must be long and not the published one. Without one, production
        refuses (every worker and host must share one secret, so it must be given, not made
        here); elsewhere a random secret is generated once and kept beside the database."""
        given = self.secret_key.get_secret_value()
        if given:
            if given == DEVELOPMENT_SECRET:
                raise ValueError(f"{SECRET_ENV} is the published development value of earlier "
                                 f"releases: set a secret of your own (e.g. {_GENERATE_HINT})")
            if len(given.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes long "
                                 f"(it has {len(given.encode())}): generate one with "
                                 f"{_GENERATE_HINT}")
            self._secret_source = f"environment ({SECRET_ENV})"
            return self
        if self.is_production:
            raise ValueError(f"set {SECRET_ENV} (at least {MIN_SECRET_BYTES} bytes, the same on "
                             "every worker and host): production does not generate a secret")
        path = secret_file_for(self.database_url)
        if path is None:
            self.secret_key = SecretStr(secrets.token_urlsafe(48))
            self._secret_source = "generated for this process (in-memory database)"  # noqa: S105
            return self
        try:
            self.secret_key = SecretStr(load_or_create_secret(path))
        except OSError as exc:
            raise ValueError(f"cannot keep the generated secret in {path} ({exc.strerror}): "
                             f"set {SECRET_ENV} instead") from None
        self._secret_source = f"generated file {path}"
        return self

    @property
    def secret_source(self) -> str:
        """``environment (BILLING_API_SECRET_KEY)`` or ``generated file PATH``; never the value."""
        return self._secret_source

    def check_production_ready(self) -> None:
        """Raise ``ValueError`` when a production deployment runs on a generated secret.
        Construction refuses that already; this guards a ``model_copy`` that changed the mode."""
        if self.is_production and \
                not self._secret_source.startswith("environment"):
            raise ValueError(f"set {SECRET_ENV}: production does not generate a secret")

    def today(self) -> dt.date:
        """The distributor's business day: the API's default window and the billing date use it,
        so a server running in UTC does not answer with yesterday's date after 23:00 in Europe."""
        return dt.datetime.now(ZoneInfo(self.timezone)).date()

    @property
    def is_production(self) -> bool:
        return self.environment_name.strip().lower() == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    # --- secret rotation (docs/operations.md, "Rotating the secret") ---------------------------
    # Earlier secrets, comma-separated: during the overlap a key issued under one still works
    # and is moved to the current secret and pepper id on its first use. Key digests only:
    # download links and portal sessions follow the current secret alone.
    old_secret_keys: SecretStr = SecretStr("")

    @field_validator("old_secret_keys")
    @classmethod
    def _refuse_short_old_secret(cls, value: SecretStr) -> SecretStr:
        if any(len(part.strip()) < 16 for part in value.get_secret_value().split(",")
               if part.strip()):
            raise ValueError("each of BILLING_API_OLD_SECRET_KEYS must be at least 16 characters")
        return value

    def old_secrets(self) -> list[str]:
        """The earlier secrets still accepted for key digests, newest first as given."""
        return [part.strip() for part in self.old_secret_keys.get_secret_value().split(",")
                if part.strip()]


_ENV_NAMES = {name: f"BILLING_API_{name.upper()}" for name in Settings.model_fields}


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad variable and why, without pydantic's URL and input echo
    (which would print a too-short secret)."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] != "value_error" and field != "secret_key":
            message += f" (got {error['input']!r})"  # a built-in check: show what was read
        parts.append(f"{_ENV_NAMES[field]}: {message}" if field in _ENV_NAMES else message)
    return "; ".join(parts)


def load_settings(**values: object) -> Settings:
    """``Settings`` from the environment (and ``values``); a bad value raises
    ``ConfigurationError`` with one line to show the operator."""
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
