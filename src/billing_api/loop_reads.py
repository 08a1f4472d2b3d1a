"""Reads on the event loop: a small API request answered without a worker thread.

FastAPI runs a sync dependency or route on a worker thread; under load the hand-offs and the
threads' fight for the GIL cost more than the request's own work (bench/load.py: 3.1 ms of
server CPU per one-invoice request with 40 threads, 1.1 ms on the loop). So authentication,
one invoice and subscriptiondetails run on the loop and read through ``LoopReads``, which
runs the same sync functions of a ``Connection`` as the threads do:

* SQLite: directly, on the loop, on a connection of its own. A read in WAL mode waits for no
  lock (at most ``SQLITE_LOOP_WAIT_MS``, should SQLite ever answer busy, rather than the
  writers' 30 s) and an indexed look-up takes microseconds, less than a hand-off to a
  thread. Not from
  the threads' pool: while its connections are all streaming downloads, waiting for one
  would stop the loop that sends their chunks. The loop runs one read at a time, so the one
  connection is kept open between reads (``_KeptConnection``): a checkout from a pool and
  back cost ~120 µs of a small request's ~1.2 ms (bench/load.py).
* PostgreSQL: on psycopg's asyncio connection through SQLAlchemy's ``run_sync``: the function
  runs in a greenlet and each statement's round trip is awaited, so the loop serves other
  requests meanwhile. The asyncio engine has its own pool of ``database_pool_size``
  connections beside the threads' (large exports keep streaming from threads), one per event
  loop: an asyncio connection belongs to the loop that opened it (a server has one loop; a
  test may serve one app from several in turn).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_api.db import (
    SQLITE_BEGIN_OPTION,
    SQLITE_BUSY_TIMEOUT_OPTION,
    SQLITE_NO_BEGIN,
    make_async_engine,
    make_engine,
)

T = TypeVar("T")
SQLITE_LOOP_WAIT_MS = 1000
_SQLITE_STATEMENTS = {SQLITE_BEGIN_OPTION: SQLITE_NO_BEGIN,
                      SQLITE_BUSY_TIMEOUT_OPTION: SQLITE_LOOP_WAIT_MS}
# Said in full: the kept connection carries the last read's options.
_SQLITE_SNAPSHOT = {SQLITE_BEGIN_OPTION: "DEFERRED",
                    SQLITE_BUSY_TIMEOUT_OPTION: SQLITE_LOOP_WAIT_MS}


class _KeptConnection(Connection):
    """The loop's SQLite connection, open from one read to the next. ``close()``, which a
    finished document calls (``db.close_read``), ends the read's transaction and keeps the
    connection; ``discard()`` closes it for good."""

    def close(self) -> None:
        if not self.usable:
            self.discard()
            return
        try:
            if self.in_transaction():
                self.commit()  # a read transaction: nothing to write, as db.close_read
        except SQLAlchemyError:
            self.discard()  # a connection that cannot end its transaction is not reused

    def discard(self) -> None:
        super().close()

    @property
    def usable(self) -> bool:
        return not (self.closed or self.invalidated)


class LoopReads:
    """Runs ``fn(connection, ...)`` for a coroutine, on ``engine``'s database."""

    def __init__(self, engine: Engine, *, pool_size: int | None = None) -> None:
        self._pool_size = pool_size
        self._on_loop = engine.dialect.name == "postgresql"
        self.engine = engine
        if not self._on_loop and engine.url.database not in (None, "", ":memory:"):
            self.engine = make_engine(engine.url.render_as_string(hide_password=False),
                                      pool_size=1)
        self._engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine] = (
            weakref.WeakKeyDictionary())
        self._kept: _KeptConnection | None = None
        # One loop at a time uses it; a test may serve one app from two loops in threads.
        self._kept_lock = threading.Lock()

    def _async_engine(self) -> AsyncEngine:
        loop = asyncio.get_running_loop()
        found = self._engines.get(loop)
        if found is None:
            url = self.engine.url.render_as_string(hide_password=False)
            found = self._engines[loop] = make_async_engine(url, pool_size=self._pool_size)
        return found

    async def statements(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on a connection whose statements each stand alone, such as the API key
        look-up: no BEGIN. On PostgreSQL in autocommit (each statement under READ COMMITTED
        sees a snapshot of its own anyway; BEGIN and COMMIT were two more round trips per
        small request, bench/load.py); on SQLite the driver runs in autocommit mode, so each
        statement is its own read transaction."""
        if not self._on_loop:
            return self._on_sqlite(_SQLITE_STATEMENTS, fn, *args)
        async with self._async_engine().connect() as on_loop:
            await on_loop.execution_options(isolation_level="AUTOCOMMIT")
            return await on_loop.run_sync(fn, *args)

    async def snapshot(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in one read transaction with one snapshot for all its statements
        (``export.stream.open_export``'s), ended (``db.close_read``) after ``fn``, or by
        ``fn`` itself (a finished document closes its connection)."""
        if not self._on_loop:
            return self._on_sqlite(_SQLITE_SNAPSHOT, fn, *args)
        async with self._async_engine().connect() as on_loop:
            await on_loop.execution_options(isolation_level="REPEATABLE READ")
            await on_loop.begin()
            found = await on_loop.run_sync(fn, *args)
            if on_loop.in_transaction():  # COMMIT, not close()'s ROLLBACK: see close_read
                await on_loop.commit()
            return found

    def _on_sqlite(self, options: dict[str, Any], fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on the kept connection in a transaction begun with ``options`` (the begin
        event sets the busy wait; BEGIN is sent unless the options say none)."""
        with self._kept_lock:
            connection = self._sqlite_connection()
            try:
                connection.execution_options(**options)
                connection.begin()
                return fn(connection, *args)
            finally:
                connection.close()  # ends the transaction, keeps the connection

    def _sqlite_connection(self) -> _KeptConnection:
        """The kept connection, opened again if the last one was lost (an error invalidated
        it, or it could not end its transaction). Under ``_kept_lock``."""
        if self._kept is None or not self._kept.usable:
            self._kept = _KeptConnection(self.engine)
        return self._kept

    async def dispose(self) -> None:
        """Close this event loop's connections (the app's shutdown)."""
        if not self._on_loop:
            with self._kept_lock:
                if self._kept is not None:
                    self._kept.discard()
                    self._kept = None
            self.engine.dispose()
        found = self._engines.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.dispose()
