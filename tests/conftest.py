"""Test fixtures: a real database per backend, cleaned between tests.

The backend is chosen by ``BILLING_API_TEST_DATABASE_URL``: unset means a SQLite file in a
temporary folder; a PostgreSQL URL means a fresh database created on that server for this run
(named after the URL's database plus a random suffix) and dropped at the end.
``BILLING_API_REQUIRE_ALL_BACKENDS=1`` (CI) turns every "not available" skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from billing_api import migrate
from billing_api.access import audit
from billing_api.db import Base, make_engine, make_session_factory
from billing_api.settings import Settings
from tests.log_capture import capture_all_logs  # noqa: F401  (session-wide secret check)

TEST_SECRET = "test-secret-key-0123456789abcdef"
REFERENCE_TABLES = {"tax_zones"}  # seeded by the migration, kept between tests


def require_all_backends() -> bool:
    return os.environ.get("BILLING_API_REQUIRE_ALL_BACKENDS") == "1"


def skip_or_fail(reason: str) -> None:
    if require_all_backends():
        pytest.fail(f"{reason} (BILLING_API_REQUIRE_ALL_BACKENDS=1 forbids skipping)")
    pytest.skip(reason)


def _create_postgres_database(url: str) -> tuple[str, str]:
    base = make_url(url)
    name = f"{base.database or 'billing_test'}_{secrets.token_hex(4)}"
    admin = make_engine(
        base.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(url: str, name: str) -> None:
    """Drop a test database. FORCE must also end an autovacuum worker that may be in it,
    which a role without pg_signal_backend may not do: then wait for it and try again."""
    admin = make_engine(
        make_url(url).set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    try:
        for attempt in range(40):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                return
            except DBAPIError:
                if attempt == 39:
                    raise
                time.sleep(0.25)
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("BILLING_API_TEST_DATABASE_URL", "").strip()
    if not configured:
        path = Path(tmp_path_factory.mktemp("db")) / "billing.db"
        yield f"sqlite:///{path}"
        return
    url, name = _create_postgres_database(configured)
    try:
        yield url
    finally:
        _drop_postgres_database(configured, name)


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine) -> Iterator[Engine]:
    """The migrated database, emptied of everything but reference data after each test."""
    yield migrated_engine
    audit.flush_pending()  # refusal counts of this test's apps, before the tables empty
    with migrated_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in REFERENCE_TABLES:
                conn.execute(delete(table))


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work the test commits (or not) itself."""
    with factory() as session:
        yield session


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET, redis_url=None)


@pytest.fixture
def backend(engine: Engine) -> str:
    return engine.dialect.name
