"""Floors for the export: the same rows without the service around them.

- ``writer_floor``: the document's queries run with the raw driver (``sqlite3``, ``psycopg``),
  their rows merged and serialized by the product's own writer (``export.stream._merge``) in
  this process: no SQLAlchemy, no HTTP, no thread hand-over. Our HTTP download divided by
  this is the overhead the service adds.
- What an operator would use instead, on the same line query: ``sqlite3 -json`` (the Debian
  CLI; money comes out as integers of 1/10,000 here, i.e. not the document's text) and
  PostgreSQL's ``COPY (query) TO STDOUT`` as CSV and as ``row_to_json``, read by ``psql``.

    python bench/floor.py --database-url URL [--partner-id N]

prints each floor's lines/s for every endpoint and format of that database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit_summary, load_text, say, sqlalchemy_url_to_libpq

from billing_api.db import make_engine
from billing_api.export import source as s
from billing_api.export import stream
from billing_api.export.documents import DocumentShape, invoice_shape
from billing_api.export.writers import JsonWriter, XmlWriter

ENDPOINTS = ("invoices", "customerinvoices", "consolidatedinvoices")
FORMATS = ("xml", "json")
FETCH = s.FETCH_ROWS
WHOLE_RANGE = (dt.date(2000, 1, 1), dt.date(2099, 12, 31))


def scope(partner_id: int, environment: str = "production") -> s.Scope:
    return s.Scope(partner_id, environment, *WHOLE_RANGE)


def literal_sql(url: str, statement: Any) -> str:
    """A query as SQL text with its parameters inlined (what psql or sqlite3 would be given)."""
    engine = make_engine(url)
    try:
        return str(statement.compile(dialect=engine.dialect,
                                     compile_kwargs={"literal_binds": True}))
    finally:
        engine.dispose()


def document_queries(url: str, shape: DocumentShape, where: s.Scope) -> tuple[str, str]:
    """(invoice query, line query) of one document, as SQL text for the raw driver."""
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    invoices = s.invoice_query(dialect, shape.kind, where)
    lines = s.line_query(dialect, shape.kind, where, with_attributes=shape.subscription_details,
                         with_sales=shape.consolidated)
    return literal_sql(url, invoices), literal_sql(url, lines)


def _sqlite_rows(connection: Any, sql: str, counted: list[int]) -> Iterator[Sequence[Any]]:
    cursor = connection.execute(sql)
    try:
        while batch := cursor.fetchmany(FETCH):
            counted[0] += len(batch)
            yield from batch
    finally:
        cursor.close()


def _postgres_rows(connection: Any, sql: str, name: str, counted: list[int]
                   ) -> Iterator[Sequence[Any]]:
    # A server-side cursor read in batches: what an export of any size must do.
    with connection.cursor(name=name) as cursor:
        cursor.itersize = FETCH
        cursor.execute(sql)
        while batch := cursor.fetchmany(FETCH):
            counted[0] += len(batch)
            yield from batch


def writer_floor(url: str, endpoint: str, fmt: str, partner_id: int,
                 checksum: bool = True) -> tuple[int, int, int]:
    """One document through the raw driver and the product's writer; (lines, bytes, CRC-32)
    (CRC 0 without ``checksum``, for timed runs)."""
    shape = invoice_shape(endpoint, v4=True)
    invoice_sql, line_sql = document_queries(url, shape, scope(partner_id))
    writer: XmlWriter | JsonWriter = XmlWriter(shape) if fmt == "xml" else JsonWriter(shape)
    counted, ignored = [0], [0]
    size = crc = 0
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        try:
            connection.execute("BEGIN")
            chunks = stream._merge(writer, shape, _sqlite_rows(connection, invoice_sql, ignored),
                                   _sqlite_rows(connection, line_sql, counted))
            for chunk in chunks:
                size += len(chunk)
                if checksum:
                    crc = zlib.crc32(chunk, crc)
        finally:
            connection.close()
    else:
        import psycopg

        with psycopg.connect(sqlalchemy_url_to_libpq(url)) as connection:
            # As the product's connections (db.make_engine): cursors planned for all rows.
            connection.execute("SET cursor_tuple_fraction = 1")
            invoices = _postgres_rows(connection, invoice_sql, "floor_invoices", ignored)
            lines = _postgres_rows(connection, line_sql, "floor_lines", counted)
            for chunk in stream._merge(writer, shape, invoices, lines):
                size += len(chunk)
                if checksum:
                    crc = zlib.crc32(chunk, crc)
            lines.close()
            invoices.close()
    return counted[0], size, crc


def _count_lines(process: subprocess.Popen[bytes]) -> tuple[int, int]:
    assert process.stdout is not None
    lines = size = 0
    while block := process.stdout.read(1 << 20):
        lines += block.count(b"\n")
        size += len(block)
    if process.wait() != 0:
        raise SystemExit(f"{process.args!r} failed")
    return lines, size


def sqlite_cli_json(url: str, endpoint: str, partner_id: int) -> tuple[int, int]:
    """``sqlite3 -json`` on the document's line query; (rows, bytes)."""
    if shutil.which("sqlite3") is None:
        raise FileNotFoundError("sqlite3 (Debian package sqlite3)")
    shape = invoice_shape(endpoint, v4=True)
    _, line_sql = document_queries(url, shape, scope(partner_id))
    process = subprocess.Popen(["sqlite3", "-readonly", "-json", url.split("///", 1)[1],
                                line_sql], stdout=subprocess.PIPE)
    rows, size = _count_lines(process)
    return rows, size  # -json prints one row per line between "[" and "]"


def postgres_copy(url: str, endpoint: str, partner_id: int, mode: str) -> tuple[int, int]:
    """``psql -c "COPY (line query) TO STDOUT …"``; mode ``csv`` or ``row_to_json``."""
    if shutil.which("psql") is None:
        raise FileNotFoundError("psql (Debian package postgresql-client)")
    shape = invoice_shape(endpoint, v4=True)
    _, line_sql = document_queries(url, shape, scope(partner_id))
    if mode == "csv":
        copy = f"COPY ({line_sql}) TO STDOUT (FORMAT csv)"
    else:
        copy = f"COPY (SELECT row_to_json(t) FROM ({line_sql}) AS t) TO STDOUT"
    libpq = sqlalchemy_url_to_libpq(url)
    process = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq,
                                "-c", copy], stdout=subprocess.PIPE,
                               env=os.environ | {"PGOPTIONS": "-c jit=off"})
    return _count_lines(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--partner-id", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, Any] = {"load": load_text()}
    for endpoint in ENDPOINTS:
        for fmt in FORMATS:
            started = time.perf_counter()
            lines, size, _ = writer_floor(args.database_url, endpoint, fmt, args.partner_id)
            seconds = time.perf_counter() - started
            results[f"writer.{endpoint}.{fmt}"] = round(lines / seconds)
            say(f"writer floor {endpoint:>21} {fmt:>4}: {lines} lines {seconds:6.2f} s "
                f"{lines / seconds:9.0f} lines/s {size / seconds / 1e6:6.1f} MB/s")
        operators: dict[str, Any] = (
            {"sqlite3_json": lambda e=endpoint: sqlite_cli_json(args.database_url, e,
                                                                args.partner_id)}
            if args.database_url.startswith("sqlite") else
            {f"copy_{m}": lambda e=endpoint, m=m: postgres_copy(args.database_url, e,
                                                                args.partner_id, m)
             for m in ("csv", "row_to_json")})
        for name, run in operators.items():
            started = time.perf_counter()
            lines, size = run()
            seconds = time.perf_counter() - started
            results[f"{name}.{endpoint}"] = round(lines / seconds)
            say(f"{name:>12} {endpoint:>21}: {lines} rows {seconds:6.2f} s "
                f"{lines / seconds:9.0f} rows/s")
    emit_summary({"benchmark": "floor", **results})


if __name__ == "__main__":
    main()
