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
  would stop the loop that sends their chunks (the loop runs one read at a time, so one
  connection never waits).
* PostgreSQL: on psycopg's asyncio connection through SQLAlchemy's ``run_sync``: the function
  runs in a greenlet and each statement's round trip is awaited, so the loop serves other
  requests meanwhile. The asyncio engine has its own pool of ``database_pool_size``
  connections beside the threads' (large exports keep streaming from threads), one per event
  loop: an asyncio connection belongs to the loop that opened it (a server has one loop; a
  test may serve one app from several in turn).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_api.db import (
    SQLITE_BEGIN_OPTION,
    SQLITE_BUSY_TIMEOUT_OPTION,
    SQLITE_NO_BEGIN,
    close_read,
    make_async_engine,
    make_engine,
)

T = TypeVar("T")
SQLITE_LOOP_WAIT_MS = 1000
_SQLITE_STATEMENTS = {SQLITE_BEGIN_OPTION: SQLITE_NO_BEGIN,
                      SQLITE_BUSY_TIMEOUT_OPTION: SQLITE_LOOP_WAIT_MS}
_SQLITE_SNAPSHOT = {SQLITE_BUSY_TIMEOUT_OPTION: SQLITE_LOOP_WAIT_MS}


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
            with self.engine.connect() as connection:
                connection.execution_options(**_SQLITE_STATEMENTS)
                return fn(connection, *args)
        async with self._async_engine().connect() as on_loop:
            await on_loop.execution_options(isolation_level="AUTOCOMMIT")
            return await on_loop.run_sync(fn, *args)

    async def snapshot(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in one read transaction with one snapshot for all its statements
        (``export.stream.open_export``'s), ended (``db.close_read``) after ``fn``, or by
        ``fn`` itself (a finished document closes its connection)."""
        if not self._on_loop:
            connection = self.engine.connect()
            try:
                connection.execution_options(**_SQLITE_SNAPSHOT)
                connection.begin()
                return fn(connection, *args)
            finally:
                close_read(connection)
        async with self._async_engine().connect() as on_loop:
            await on_loop.execution_options(isolation_level="REPEATABLE READ")
            await on_loop.begin()
            found = await on_loop.run_sync(fn, *args)
            if on_loop.in_transaction():  # COMMIT, not close()'s ROLLBACK: see close_read
                await on_loop.commit()
            return found

    async def dispose(self) -> None:
        """Close this event loop's connections (the app's shutdown)."""
        if not self._on_loop:
            self.engine.dispose()
        found = self._engines.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.dispose()
