"""Engine, session factory and the column types every domain shares.

Money and quantities are exact on both databases: they are stored as integers in units of
1/10,000 (``ScaledDecimal``), because SQLite would turn ``"12.50"`` into a binary float.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    MetaData,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import InvalidatePoolError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

SCALE = 4
SCALE_FACTOR = 10**SCALE
MAX_UNITS = 2**63 - 1  # a BIGINT

# Stable constraint names so Alembic migrations can refer to them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def to_units(value: Decimal | int) -> int:
    """Decimal → integer 1/10,000 units; refuses values that would lose digits or overflow."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"exact decimal expected, got {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{value} is not a finite number")
    # Enough precision that the multiplication itself can never round.
    with localcontext(prec=len(number.as_tuple().digits) + 2 * SCALE + 2):
        scaled = number * SCALE_FACTOR
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {SCALE} decimal places")
    units = int(scaled)
    if not -MAX_UNITS <= units <= MAX_UNITS:
        raise ValueError(f"{value} is too large to store")
    return units


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-SCALE)


class ScaledDecimal(TypeDecorator[Decimal]):
    """An exact decimal with 4 decimal places, stored as a BIGINT of 1/10,000 units."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> int | None:
        return None if value is None else to_units(value)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else from_units(value)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite keeps no zone of its own)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


SQLITE_BUSY_TIMEOUT_MS = 30000  # how long a writer queues for SQLite's one write lock


def _sqlite_on_connect(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets API reads go on while a billing run writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
    record.info[SQLITE_BUSY_TIMEOUT_OPTION] = SQLITE_BUSY_TIMEOUT_MS


SQLITE_BEGIN_OPTION = "sqlite_begin"
SQLITE_NO_BEGIN = "NONE"  # the driver's autocommit: no BEGIN at all
SQLITE_BUSY_TIMEOUT_OPTION = "sqlite_busy_timeout_ms"
PG_CONNECT_TIMEOUT = 10  # seconds


def _postgres_on_connect(dbapi_connection: Any, record: Any) -> None:
    # Server-side cursors (every export) are read to their end: plan them for the whole
    # result, as COPY is, not for the first 10 % of rows (PostgreSQL's default). The
    # consolidated document's sales join then runs as a hash join, ~30 % less server time.
    # No JIT: an export's line query is costed above jit_above_cost, and compiling it took
    # 20-25 ms before the first row, more than it ever saved (bench/export.py's COPY runs
    # without JIT too). Set once per connection, not per request: a SET LOCAL would cost a
    # round trip each. A plain cursor, closed by hand: the asyncio driver's adapted cursor
    # (loop_reads.py) is no context manager.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET cursor_tuple_fraction = 1; SET jit = off")
    cursor.close()
    dbapi_connection.commit()


def _sqlite_begin(conn: Any) -> None:
    # The driver runs in autocommit mode so that SQLAlchemy's BEGIN is the only one. Writers
    # ask for BEGIN IMMEDIATE (see ``writer_connection``) so that two of them queue on the busy
    # timeout instead of failing when a read snapshot cannot be upgraded to a write.
    options = conn.get_execution_options()
    mode = options.get(SQLITE_BEGIN_OPTION, "DEFERRED")
    # Checked on every BEGIN: a pooled connection must not keep a shorter wait from its last
    # user. Set only when it differs: a statement per transaction was a tenth of a small API
    # request's time (profiled).
    wait_ms = int(options.get(SQLITE_BUSY_TIMEOUT_OPTION, SQLITE_BUSY_TIMEOUT_MS))
    record = conn.connection
    if record.info.get(SQLITE_BUSY_TIMEOUT_OPTION) != wait_ms:
        record.dbapi_connection.execute(f"PRAGMA busy_timeout={wait_ms}")
        record.info[SQLITE_BUSY_TIMEOUT_OPTION] = wait_ms
    if mode == SQLITE_NO_BEGIN:  # each statement its own transaction (``read_statements``)
        return
    # Through SQLAlchemy, so that "database is locked" arrives as its OperationalError.
    conn.exec_driver_sql(f"BEGIN {mode}")


def _create_private_file(path: Path) -> None:
    """Create a new SQLite database file readable by its owner only: it holds password hashes
    and key digests. SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # An existing database keeps the mode its operator gave it.
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(url: str, *, pool_size: int | None = None, **kwargs: Any) -> Engine:
    """An engine tuned per database: SQLite pragmas, psycopg 3 for PostgreSQL.

    ``pool_size`` connections are kept open for good (no overflow, whose connections are
    closed on return); an in-memory SQLite database has its own one-connection pool."""
    url = _postgres_url(url)
    in_memory = url.startswith("sqlite") and (
        "///" not in url or url.split("///", 1)[1] in ("", ":memory:")
    )
    if pool_size is not None and not in_memory:
        kwargs |= {"pool_size": pool_size, "max_overflow": 0}
    if url.startswith("sqlite"):
        if not in_memory:
            _create_private_file(Path(make_url(url).database or ""))
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "isolation_level": None}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, **_postgres_options(url, kwargs))
    _tune_postgres(engine)
    return engine


def make_async_engine(url: str, *, pool_size: int | None = None) -> AsyncEngine:
    """A PostgreSQL engine on psycopg's asyncio connection, tuned as ``make_engine``'s: for
    reads that run on the event loop (``loop_reads``)."""
    url = _postgres_url(url)
    kwargs: dict[str, Any] = {}
    if pool_size is not None:
        kwargs |= {"pool_size": pool_size, "max_overflow": 0}
    engine = create_async_engine(url, **_postgres_options(url, kwargs))
    _tune_postgres(engine.sync_engine)
    return engine


def _postgres_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _postgres_options(url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    # libpq waits for ever on a server that accepts TCP but does not answer (hung host):
    # give up after a while so the request becomes a 503 instead of a stuck worker thread.
    # A ``connect_timeout`` in the URL wins.
    if "connect_timeout" not in make_url(url).query:
        connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT, **kwargs.pop("connect_args", {})}
        kwargs["connect_args"] = connect_args
    return kwargs


def _tune_postgres(engine: Engine) -> None:
    event.listen(engine, "connect", _postgres_on_connect)
    _ping_when_idle(engine)


PING_AFTER_IDLE = 1.0  # seconds a pooled PostgreSQL connection may rest unchecked
_LAST_USED = "billing_api_last_used"


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, but only for a connection that rested in the pool for
    more than ``PING_AFTER_IDLE``: a ping on every checkout was a quarter of a small
    request's round trips (bench/load.py). A dead connection (server restarted, idle timeout)
    is still found before use; one that died within the last second fails its request with
    a 503 and, as a disconnect, invalidates the pool so the next request connects afresh."""
    dialect = engine.dialect

    def stamp(dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, -math.inf) < PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError() from exc  # the pool reconnects and retries
            raise

    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", checkout)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(
    factory: sessionmaker[Session], *, writer: bool = False, lock_wait: float | None = None
) -> Iterator[Session]:
    """One session, one transaction: committed when the block ends, rolled back on error.

    ``writer=True`` begins it as a writer (``BEGIN IMMEDIATE`` on SQLite; PostgreSQL needs
    nothing), for transactions that read and then write, such as a billing run.
    ``lock_wait`` (seconds) bounds the wait for a lock, for best-effort writes that should
    rather give up than queue behind a long writer: SQLite's busy timeout (default 30 s),
    PostgreSQL's ``lock_timeout``. Giving up raises an ``OperationalError`` that
    ``is_lock_timeout`` recognises.
    """
    options: dict[str, Any] = {}
    if writer:
        options[SQLITE_BEGIN_OPTION] = "IMMEDIATE"
    if lock_wait is not None:
        options[SQLITE_BUSY_TIMEOUT_OPTION] = max(0, int(lock_wait * 1000))
    with factory() as session, session.begin():
        if options:
            connection = session.connection(execution_options=options)
            if lock_wait is not None and connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_wait * 1000)}")
        yield session


def close_read(connection: Connection) -> None:
    """End a read transaction with COMMIT, then close the connection.

    Not with ROLLBACK, which is what a plain ``close()`` sends: psycopg forgets every
    statement it prepared on the connection at each rollback, so a pooled connection whose
    reads all ended that way planned every statement afresh, forever (the one-day
    collection: 1.4 ms of PostgreSQL CPU per request where a prepared one needs 0.3 ms).
    A read-only transaction commits nothing. One that cannot commit (aborted by an error, its
    connection lost) is rolled back by ``close()`` as before."""
    try:
        if connection.in_transaction() and not connection.invalidated:
            connection.commit()
    except SQLAlchemyError:
        pass  # rolled back below; the error that ended the read has been raised already
    finally:
        connection.close()


def is_lock_timeout(exc: OperationalError) -> bool:
    """True when ``exc`` is a lock wait that gave up (see ``transaction(lock_wait=…)``), not a
    database that is down."""
    original = exc.orig
    return getattr(original, "sqlstate", None) == "55P03" or (
        "database is locked" in str(original)
    )
