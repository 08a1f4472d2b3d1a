"""One invoice document as a stream of UTF-8 chunks, merged from two ordered queries.

The invoice query and the line query are ordered alike (invoice date, invoice id, then
customer, subscription, line), so one pass opens and closes elements as the group keys change,
holding a single invoice header at a time: memory is flat whatever the date range. Both
queries run in one transaction (REPEATABLE READ on PostgreSQL, one WAL snapshot on SQLite), so
a billing run committing meanwhile cannot make headers and lines disagree.

A database error mid-stream propagates: the server then aborts the transfer, so the client
sees an incomplete download, never a well-formed but truncated document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from sqlalchemy import Connection, Engine
from starlette.responses import Response, StreamingResponse

from billing_api.db import close_read
from billing_api.export import source as s
from billing_api.export.documents import DocumentShape
from billing_api.export.writers import JsonWriter, XmlWriter, writer_for
from billing_api.ops.metrics import EXPORT_LINES

LINES_PER_CHUNK = 400  # about 250 KB of XML
MEMO_SIZE = 4096  # customers and subscriptions rendered per document; emptied when full
EXPORT_THREADS = 40  # worker threads stepping document streams, per event loop
_export_limiter: RunVar[anyio.CapacityLimiter] = RunVar("billing_api_export_threads")


def open_export(engine: Engine) -> Connection:
    """A connection in a read transaction with one snapshot for the whole document."""
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    connection.begin()
    return connection


def invoice_document(
    connection: Connection, shape: DocumentShape, scope: s.Scope, fmt: str,
    count: Callable[[int], None] | None = None, *, few: bool = False,
) -> Generator[bytes, None, None]:
    """Yield the document in chunks; closes ``connection`` when done or abandoned. ``count``
    gets the lines written (default: the export metric, as they are sent). ``few``: the
    caller knows the document is short (plain cursors, see ``source._prepared``)."""
    writer = writer_for(shape, fmt)
    dialect = connection.dialect
    invoices = s.stream(connection, s.prepared_invoice_query(dialect, shape.kind, scope,
                                                             few=few))
    lines = s.stream(
        connection,
        s.prepared_line_query(
            dialect,
            shape.kind,
            scope,
            with_attributes=shape.subscription_details,
            with_sales=shape.consolidated,
            few=few,
        ),
    )
    try:
        yield from _merge(writer, shape, invoices, lines, count)
    finally:
        # Close the cursors (the header stream is never read to its end) before the
        # connection, or they would be closed later on a closed connection.
        lines.close()
        invoices.close()
        close_read(connection)


def _merge(
    writer: XmlWriter | JsonWriter,
    shape: DocumentShape,
    invoices: Iterator[Any],
    lines: Iterator[Any],
    count: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    # Column positions and writer methods as locals: this loop runs once per line, and on a
    # document of small invoices its own look-ups were a quarter of the Python time.
    invoice_key, customer_key, subscription_key = s.INVOICE_ID, s.CUSTOMER_ID, s.SUBSCRIPTION_ID
    header_key, sales_key, sales_vat_key = s.H_ID, s.SALES_EXTENDED, s.SALES_VAT
    invoice_start, invoice_end = writer.invoice_start, writer.invoice_end
    customer_start, customer_end = writer.customer_start, writer.customer_end
    subscription_start, subscription_end = writer.subscription_start, writer.subscription_end
    line, consolidated, separator = writer.line, shape.consolidated, writer.separator
    # A customer's and a subscription's elements, rendered once per document: their columns
    # are functions of the id within one snapshot, and a customer invoice document repeats
    # each customer month after month (1,991 customers on 11,686 invoices in the demo).
    customers: dict[Any, str] = {}
    subscriptions: dict[Any, tuple[str, str]] = {}
    out = [writer.begin()]
    append = out.append
    invoice: Any = None
    customer_id = subscription_id = None
    sub_end = ""
    first_invoice = first_customer = first_subscription = first_line = True
    sales_excl = sales_vat = 0
    pending = 0
    # Counted per chunk, not per line, once the chunk is taken (the generator resumed).
    streamed = count or EXPORT_LINES.labels(shape.endpoint).inc
    for row in lines:
        if invoice is None or row[invoice_key] != invoice[header_key]:
            if invoice is not None:
                append(sub_end)
                append(customer_end())
                append(invoice_end(invoice, (sales_excl, sales_vat)))
            invoice = next(invoices)
            while invoice[header_key] != row[invoice_key]:  # an invoice without lines: none exist
                invoice = next(invoices)
            append(invoice_start(invoice, first_invoice))
            first_invoice, first_customer = False, True
            customer_id = subscription_id = None
            sales_excl = sales_vat = 0
        if row[customer_key] != customer_id:
            if customer_id is not None:
                append(sub_end)
                append(customer_end())
            customer_id, subscription_id = row[customer_key], None
            text = customers.get(customer_id)
            if text is None:
                if len(customers) >= MEMO_SIZE:
                    customers.clear()
                text = customers[customer_id] = customer_start(row, True)
            append(text if first_customer else separator + text)
            first_customer, first_subscription = False, True
        if row[subscription_key] != subscription_id:
            if subscription_id is not None:
                append(sub_end)
            subscription_id = row[subscription_key]
            texts = subscriptions.get(subscription_id)
            if texts is None:
                if len(subscriptions) >= MEMO_SIZE:
                    subscriptions.clear()
                texts = subscriptions[subscription_id] = (subscription_start(row, True),
                                                          subscription_end(row))
            sub_start, sub_end = texts
            append(sub_start if first_subscription else separator + sub_start)
            first_subscription, first_line = False, True
        append(line(row, first_line))
        first_line = False
        if consolidated and row[sales_key] is not None:
            sales_excl += row[sales_key]
            sales_vat += row[sales_vat_key]
        pending += 1
        if pending >= LINES_PER_CHUNK:
            yield "".join(out).encode()
            streamed(pending)
            out, pending = [], 0
            append = out.append
    if invoice is not None:
        append(sub_end)
        append(customer_end())
        append(invoice_end(invoice, (sales_excl, sales_vat)))
    append(writer.end())
    yield "".join(out).encode()
    streamed(pending)


def one_chunk(document: Callable[[Callable[[int], None]], Generator[bytes, None, None]],
              endpoint: str) -> bytes | None:
    """The whole document when it ends within its first chunk, else None (its chunks are
    closed): what an event-loop answer can send without a thread (api/routes.py).
    ``document(count)`` makes the chunks; its lines reach the export metric only when it is
    whole: a longer one is written again, and counted, by the thread that streams it."""
    lines = 0

    def count(written: int) -> None:
        nonlocal lines
        lines += written

    chunks = document(count)
    first = next(chunks)  # a document always has at least one chunk
    try:
        next(chunks)
    except StopIteration:
        EXPORT_LINES.labels(endpoint).inc(lines)
        return first
    chunks.close()
    return None


# The second chunk is written before the first batch of rows is read to its end, so
# ``one_chunk`` never reaches ``source._prefetched``'s thread (it must not on the event loop).
assert 2 * LINES_PER_CHUNK <= s.FETCH_ROWS


def document_response(
    chunks: Generator[bytes, None, None], media_type: str, headers: dict[str, str]
) -> Response:
    """The response for a document's chunks, started in the calling (request) thread.

    A document that ends within its first chunk (an ERP polling one day: one invoice, a few
    KB) is sent whole with its length, with no further thread hand-off: under load each hop
    cost more than writing the document (bench/load.py). A longer one streams the rest from
    the export threads. An error before the first byte is then an ordinary error answer.
    """
    first = next(chunks)  # a document always has at least one chunk
    try:
        second = next(chunks)
    except StopIteration:
        return Response(first, media_type=media_type, headers=headers)
    return StreamingResponse(
        in_export_threads(_continued((first, second), chunks)),
        media_type=media_type,
        headers=headers,
    )


def _continued(
    head: tuple[bytes, ...], rest: Generator[bytes, None, None]
) -> Generator[bytes, None, None]:
    try:
        yield from head
        yield from rest
    finally:
        rest.close()  # the connection is released even if the client left during ``head``


async def in_export_threads(chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """Step a document generator in worker threads of its own, not the request threadpool.

    A stream holds a pooled connection until its last chunk. Were its steps queued on the
    threadpool that sync routes and dependencies use, the requests waiting for a connection
    could fill every thread while the streams holding the connections waited for one: a
    deadlock until the pool timeout (seen from ~55 concurrent downloads with 15 pooled
    connections and 40 threads; see docs/reliability.md). The generator is closed (cursors,
    connection) even when the client goes away mid-document.
    """
    try:
        limiter = _export_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(EXPORT_THREADS)
        _export_limiter.set(limiter)
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None, limiter=limiter)
            if chunk is None:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(chunks.close, limiter=limiter)
