"""Typed settings, read from ``BILLING_API_*`` environment variables.

Nothing here is created at import time: ``Settings()`` is built by the CLI, the app factory
or a test, each with its own values.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A development pepper is fine on a laptop's SQLite file; production refuses it (see validator).
DEVELOPMENT_SECRET = "development-only-secret-change-me"  # noqa: S105


def default_database_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("billing-api"))
    return f"sqlite:///{data_dir / 'billing.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_API_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    # Keys and link tokens are HMAC'd with this pepper; the id lets a pepper be rotated.
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    pepper_id: int = 1
    environment_name: str = "development"
    trusted_proxies: str = ""
    timezone: str = "Europe/Amsterdam"
    rate_limit_per_minute: int = 120
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

    @field_validator("secret_key")
    @classmethod
    def _refuse_short_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("BILLING_API_SECRET_KEY must be at least 16 characters long")
        return value

    def check_production_ready(self) -> None:
        """Raise ``ValueError`` when a production deployment still uses the development secret."""
        if (
            self.environment_name == "production"
            and self.secret_key.get_secret_value() == DEVELOPMENT_SECRET
        ):
            raise ValueError(
                "set BILLING_API_SECRET_KEY: the development secret is refused in production"
            )

    def today(self) -> dt.date:
        """The distributor's business day: the API's default window and the billing date use it,
        so a server running in UTC does not answer with yesterday's date after 23:00 in Europe."""
        return dt.datetime.now(ZoneInfo(self.timezone)).date()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
