"""Exact money on both databases, and the migrations building the schema from empty."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from billing_api import migrate
from billing_api.catalog.models import ResourceRate
from billing_api.db import Base, from_units, make_engine, to_units

from . import factories as f
from .conftest import _create_postgres_database, _drop_postgres_database

D = Decimal


@pytest.mark.parametrize("value", ["0.10", "0.20", "1234567.8901", "-12.345", "0", "0.0001"])
def test_money_survives_a_round_trip_unchanged(factory: sessionmaker[Session], value: str) -> None:
    with factory() as session, session.begin():
        _, _, rate = f.plan(session, f.vendor(session), recurring_price=D(value))
        rate_id = rate.id
    with factory() as session:
        stored = session.get(ResourceRate, rate_id)
        assert stored is not None
        assert isinstance(stored.recurring_price, Decimal)
        assert stored.recurring_price == D(value)
        raw = session.execute(
            text("SELECT recurring_price FROM resource_rates WHERE id = :id"), {"id": rate_id}
        ).scalar_one()
        assert raw == int(D(value) * 10_000)  # an integer in the database, never a float


def test_sums_in_sql_stay_exact(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        vendor = f.vendor(session)
        for _ in range(10):
            f.plan(session, vendor, recurring_price=D("0.10"))
    with factory() as session:
        total = session.scalar(text("SELECT SUM(recurring_price) FROM resource_rates"))
        assert from_units(int(total)) == D("1.00")


def test_values_that_would_lose_digits_or_are_floats_are_refused() -> None:
    with pytest.raises(ValueError, match="more than 4 decimal places"):
        to_units(D("0.00001"))
    with pytest.raises(ValueError, match="more than 4 decimal places"):
        to_units(D("1.00000000000000000000000000001"))  # beyond the default 28 digits
    with pytest.raises(ValueError, match="too large"):
        to_units(D("1e20"))
    with pytest.raises(ValueError, match="finite"):
        to_units(D("NaN"))
    with pytest.raises(TypeError, match="exact decimal"):
        to_units(0.1)  # type: ignore[arg-type]


def _assert_schema_matches_models(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        zones = conn.execute(text("SELECT COUNT(*) FROM tax_zones")).scalar_one()
    assert diff == [], f"models and migrations disagree: {diff}"
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    assert zones >= 29  # 27 EU countries plus reverse charge and export


def test_migrations_build_the_schema_from_an_empty_database(
    tmp_path: Path, database_url: str
) -> None:
    """On the backend under test: a new SQLite file, or a new PostgreSQL database."""
    if database_url.startswith("sqlite"):
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        try:
            _assert_schema_matches_models(engine)
        finally:
            engine.dispose()
        return
    admin_url = os.environ["BILLING_API_TEST_DATABASE_URL"]
    fresh, name = _create_postgres_database(admin_url)
    engine = make_engine(fresh)
    try:
        _assert_schema_matches_models(engine)
    finally:
        engine.dispose()
        _drop_postgres_database(admin_url, name)
