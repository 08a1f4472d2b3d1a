"""A hot read statement compiled once per database and run on the driver's own cursor.

Inside a served small request, ``Connection.execute`` of one small indexed statement took
~86 µs on SQLite where the driver alone took ~19 µs (the cache key's hashing, the execution
context, the result's metadata): for the two or three statements every small request runs
(the key's grant, the invoice's or the partner's state) that was a tenth of the request's CPU
(bench/load.py). ``CompiledQuery`` keeps SQLAlchemy for what matters and skips the rest:

* the ``Select`` is compiled by SQLAlchemy, once per kind of dialect;
* parameters and result values pass through the very processors SQLAlchemy would apply
  (a ``UTCDateTime`` comes back aware, a ``ScaledDecimal`` as a ``Decimal``, a SQLite date as
  a ``date``), taken from the column types the first time each statement runs;
* the statement runs in the connection's transaction (begun as ``execute`` would, so the
  begin events, SQLite's busy timeout and BEGIN among them, still run);
* ``before_cursor_execute`` listeners see the statement, as they see ``execute``'s;
* a driver error is handed to SQLAlchemy's own handling: the caller sees the same
  ``OperationalError`` (a database that is down is a 503) and a lost connection is
  invalidated, as after ``execute``.

Rows come back as plain tuples, in the statement's column order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Select

Processor = Callable[[Any], Any] | None
AnySelect = Select[*tuple[Any, ...]]  # any number of columns


@dataclass(slots=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # a positional driver's parameter order (sqlite3)
    constants: dict[str, Any]  # the statement's own literals, bind-processed once
    binds: dict[str, Processor]  # the named parameters' bind processors
    types: tuple[Any, ...]  # the result columns' types
    results: tuple[Processor, ...] | None = None  # known after the first run


class CompiledQuery:
    """``statement`` (a ``Select`` with named ``bindparam``s), ready to run on any
    connection; see the module's note."""

    def __init__(self, statement: AnySelect) -> None:
        self.statement = statement
        # By the dialect's class: psycopg's sync and asyncio dialects share a name.
        self._by_dialect: dict[type[Dialect], _Compiled] = {}

    def all(self, connection: Connection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Every row, typed as ``connection.execute(statement, params).all()`` would be."""
        compiled = self._by_dialect.get(type(connection.dialect))
        if compiled is None:
            compiled = self._by_dialect[type(connection.dialect)] = self._compile(
                connection.dialect)
        values = dict(compiled.constants)
        for name, value in params.items():
            process = compiled.binds[name]  # a name the statement lacks is a KeyError
            values[name] = value if process is None or value is None else process(value)
        arguments: Any = (tuple(values[name] for name in compiled.order)
                          if compiled.order is not None else values)
        if not connection.in_transaction():
            connection.begin()  # as execute() would: the begin events run
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for listener in connection.dispatch.before_cursor_execute:  # tests', bench's
                listener(connection, cursor, compiled.sql, arguments, None, False)
            cursor.execute(compiled.sql, arguments)
            rows: list[Sequence[Any]] = list(cursor.fetchall())
            if compiled.results is None:
                compiled.results = _result_processors(connection.dialect, compiled.types,
                                                      cursor.description)
        except connection.dialect.loaded_dbapi.Error as exc:
            # SQLAlchemy's own path: wraps the error, invalidates a lost connection.
            connection._handle_dbapi_exception(exc, compiled.sql, arguments, cursor, None)
        finally:
            cursor.close()
        results = compiled.results
        if not any(results):
            return rows
        return [tuple(value if process is None or value is None else process(value)
                      for process, value in zip(results, row, strict=True)) for row in rows]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        rows = self.all(connection, params)
        return rows[0] if rows else None

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("CompiledQuery takes no expanding (IN) parameters")
        binds: dict[str, Processor] = {name: bind.type._cached_bind_processor(dialect)
                 for name, bind in compiled.binds.items()}
        constants = {}
        for name, bind in compiled.binds.items():
            if not bind.required:  # a literal of the statement's own, e.g. ``total < 0``
                process = binds[name]
                constants[name] = (bind.effective_value if process is None
                                   else process(bind.effective_value))
        order = (tuple(compiled.positiontup)
                 if compiled.positional and compiled.positiontup else None)
        types = tuple(column[3] for column in compiled._result_columns)
        return _Compiled(compiled.string, order, constants, binds, types)


def _result_processors(dialect: Dialect, types: tuple[Any, ...],
                       description: Sequence[Any]) -> tuple[Processor, ...]:
    # As SQLAlchemy's cursor result does: per column type, given the driver's type code.
    return tuple(type_._cached_result_processor(dialect, column[1])
                 for type_, column in zip(types, description, strict=True))
