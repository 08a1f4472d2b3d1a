"""The floor of a small request: its own SQL statements on the raw driver, with no framework.

``capture(env, requests)`` runs each request once through the app, in this process, and
records the statements its reads send (text and parameters as the driver gets them, and
whether they ran in the request's read snapshot). ``app`` is a bare ASGI application
(no FastAPI, no SQLAlchemy, no middleware) that answers ``/healthz`` with ``ok`` and
``/<name>`` by replaying that request's statements on ``sqlite3`` or psycopg's asyncio
connection (the snapshot's between ``BEGIN`` and ``ROLLBACK``, every row fetched) and a body
of the real answer's size. ``bench/load.py`` runs it under the same uvicorn as
``billing-api serve`` (one process, the ``asyncio`` loop) and compares:
the statements' cost beyond a bare ``/healthz`` is what the database work of the request
needs at the least, whatever Python serves it; the target (≥ 0.5 × ``/healthz``) leaves a
request one ``/healthz`` of time beyond ``/healthz``'s own, to spend on that and on the
rest (authentication, the framework, rendering).

    python bench/bare.py capture PLAN REQUESTS   (in the server's environment)
    BENCH_BARE_PLAN=PLAN python -m uvicorn bare:app --app-dir bench --loop asyncio

``REQUESTS`` is JSON: name → [path with query, headers].
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

PLAN_ENV = "BENCH_BARE_PLAN"
# In the snapshot?, SQL, parameters, server-side cursor name ("" for a plain cursor).
Statement = tuple[bool, str, Any, str]
POOL_SIZE = 15  # as the server's default BILLING_API_DATABASE_POOL_SIZE


@dataclass
class Plan:
    """What the bare app replays: per request name, its statements and its body's size."""

    url: str  # the SQLAlchemy URL of the database
    statements: dict[str, list[Statement]] = field(default_factory=dict)
    body_bytes: dict[str, int] = field(default_factory=dict)


# --- capture ----------------------------------------------------------------------------------


def _in_snapshot(options: dict[str, Any]) -> bool:
    # loop_reads.statements runs autocommit (PostgreSQL) / without BEGIN (SQLite); its
    # snapshot() in a transaction.
    from billing_api.db import SQLITE_BEGIN_OPTION, SQLITE_NO_BEGIN

    if "isolation_level" in options:
        return bool(options["isolation_level"] != "AUTOCOMMIT")
    return bool(options.get(SQLITE_BEGIN_OPTION) != SQLITE_NO_BEGIN)


@contextmanager
def _recording(engines: list[Any], into: list[Statement]) -> Iterator[None]:
    """Records what SQLAlchemy sends on ``engines`` and what ``export.source.stream`` sends
    on the driver's own cursor (the documents' queries)."""
    from sqlalchemy import event

    from billing_api.export import source

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if statement.strip().upper().startswith(("BEGIN", "PRAGMA")):
            return  # the replay opens its own snapshot
        into.append((_in_snapshot(conn.get_execution_options()), statement, parameters, ""))

    real_stream = source.stream

    def recorded_stream(connection: Any, query: Any) -> Any:
        if isinstance(query, source.Prepared):
            into.append((_in_snapshot(connection.get_execution_options()), query.sql,
                         query.params, query.cursor_name))
        return real_stream(connection, query)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    source.stream = recorded_stream
    try:
        yield
    finally:
        source.stream = real_stream
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def capture(env: dict[str, str], requests: dict[str, tuple[str, dict[str, str]]]) -> Plan:
    """Each request (name → path with query, headers) sent once through the app in this
    process after a warm-up, with the statements its loop reads ran."""
    import httpx

    os.environ.update(env)
    from billing_api.app import app_from_environment

    app = app_from_environment()
    plan = Plan(env["BILLING_API_DATABASE_URL"])

    async def run() -> None:
        async with app.router.lifespan_context(app):
            # The loop's reads and the threads' (a longer document streams from one).
            engines = list({app.state.engine, app.state.read_engine})
            for reads in {app.state.primary_reads, app.state.read_reads}:
                engines.append(reads._async_engine().sync_engine if reads._on_loop
                               else reads.engine)
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4711))
            async with httpx.AsyncClient(transport=transport, base_url="http://bare") as client:
                for name, (path, headers) in requests.items():
                    for _ in range(2):  # the last-use stamp and caches settle first
                        (await client.get(path, headers=headers)).raise_for_status()
                    recorded: list[Statement] = []
                    with _recording(engines, recorded):
                        answer = await client.get(path, headers=headers)
                    answer.raise_for_status()
                    if not recorded:
                        raise SystemExit(f"{name}: no statement recorded")
                    plan.statements[name] = recorded
                    plan.body_bytes[name] = len(answer.content)
            await app.state.primary_reads.dispose()
            if app.state.read_reads is not app.state.primary_reads:
                await app.state.read_reads.dispose()

    asyncio.run(run())
    return plan


# --- the bare application ---------------------------------------------------------------------


class _Replay:
    """Replays a plan's statements on the raw driver, on the event loop."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.postgres = not plan.url.startswith("sqlite")
        self._idle: list[Any] = []
        self._opened = 0
        self._returned = asyncio.Condition()
        self._sqlite: sqlite3.Connection | None = None

    async def run(self, name: str) -> None:
        statements = self.plan.statements[name]
        if not self.postgres:
            self._replay_sqlite(statements)
            return
        connection = await self._checkout()
        try:
            in_snapshot = False
            for snapshot, sql, parameters, cursor_name in statements:
                if snapshot and not in_snapshot:
                    await connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                    in_snapshot = True
                async with (connection.cursor(cursor_name) if cursor_name
                            else connection.cursor()) as cursor:
                    await cursor.execute(sql, parameters)
                    if cursor.description is not None:
                        await cursor.fetchall()
            if in_snapshot:
                await connection.execute("ROLLBACK")
        finally:
            async with self._returned:
                self._idle.append(connection)
                self._returned.notify()

    def _replay_sqlite(self, statements: list[Statement]) -> None:
        if self._sqlite is None:
            path = self.plan.url.split("///", 1)[1]
            self._sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection = self._sqlite
        in_snapshot = False
        for snapshot, sql, parameters, _ in statements:
            if snapshot and not in_snapshot:
                connection.execute("BEGIN")
                in_snapshot = True
            connection.execute(sql, parameters).fetchall()
        if in_snapshot:
            connection.execute("ROLLBACK")

    async def _checkout(self) -> Any:
        import psycopg

        async with self._returned:
            if not self._idle and self._opened < POOL_SIZE:
                self._opened += 1
            else:
                await self._returned.wait_for(lambda: bool(self._idle))
                return self._idle.pop()
        from common import sqlalchemy_url_to_libpq

        return await psycopg.AsyncConnection.connect(sqlalchemy_url_to_libpq(self.plan.url),
                                                     autocommit=True)


def _load_plan() -> Plan:
    path = os.environ.get(PLAN_ENV)
    if not path:
        raise SystemExit(f"{PLAN_ENV} names no plan (bench/load.py writes one)")
    with open(path, "rb") as handle:
        loaded = pickle.load(handle)  # noqa: S301 - the bench's own file, written just before
    if not isinstance(loaded, Plan):
        raise SystemExit(f"{path} holds no plan")
    return loaded


_replay: _Replay | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _replay
    if scope["type"] != "http":
        return
    name = scope["path"].strip("/")
    if name == "healthz":
        body = b"ok"
    else:
        if _replay is None:
            _replay = _Replay(_load_plan())
        if name not in _replay.plan.statements:
            await _answer(send, 404, json.dumps({"unknown": name}).encode())
            return
        await _replay.run(name)
        body = b"x" * _replay.plan.body_bytes[name]
    await _answer(send, 200, body)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "capture":
        raise SystemExit("usage: python bench/bare.py capture PLAN REQUESTS")
    import bare  # pickled under its module's name, which the bare app imports

    wanted = {name: (path, headers) for name, (path, headers)
              in json.loads(sys.argv[3]).items()}
    with open(sys.argv[2], "wb") as out:
        pickle.dump(bare.capture(dict(os.environ), wanted), out)
