"""E-invoices for the API: one invoice in a form, or every invoice of a window as ZIP entries.

Both read inside one transaction (one snapshot) like the v4 documents; the bulk path holds one
invoice at a time and yields each ZIP entry's bytes as soon as they are written.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

from sqlalchemy import Connection

from billing_api.db import close_read
from billing_api.einvoice import pdf, ubl
from billing_api.einvoice import source as s
from billing_api.einvoice.zipstream import ZipStream
from billing_api.errors import NotFound
from billing_api.export import source as export_source
from billing_api.export.documents import DocumentShape
from billing_api.export.source import Scope
from billing_api.export.stream import _merge as merge  # the v4 documents' own merge
from billing_api.export.writers import writer_for

KINDS = {"invoices": "purchase", "customerinvoices": "customer"}
CHUNK_BYTES = 256 * 1024  # of the ZIP, per hand-over to the server (as the export's chunks)
FORMS = ("ubl", "pdf")


def find(connection: Connection, endpoint: str, partner_id: int, environment: str,
         number: str) -> s.Header:
    """One invoice's header; ``NotFound`` for another partner's or environment's invoice as
    for a missing one."""
    header = s.find_invoice(connection, KINDS[endpoint], partner_id, environment, number)
    if header is None:
        raise NotFound(
            f"invoice {number!r} was not found among your {endpoint} in this environment",
            code="invoice_not_found",
        )
    return header


def load(connection: Connection, endpoint: str, partner_id: int, environment: str,
         number: str) -> s.EInvoice:
    """One invoice of the caller's, complete (see ``find``)."""
    header = find(connection, endpoint, partner_id, environment, number)
    seller, buyer = s.Parties(connection, environment).of(header)
    return s.EInvoice(header, s.invoice_lines(connection, header, environment), seller, buyer,
                      s.tax_zones(connection), _corrects(connection, header, environment))


def _corrects(connection: Connection, header: s.Header, environment: str
              ) -> tuple[str, str] | None:
    if header.total_incl >= 0:
        return None
    return s.corrected_invoice(connection, header, environment)


def render(inv: s.EInvoice, form: str, *, embed_pdf: bool = False) -> bytes:
    """``ubl`` (optionally with the PDF inside) or ``pdf``."""
    if form == "pdf":
        ubl.check_parties(inv)  # the PDF shows the same parties: the same 409 when incomplete
        return pdf.render(inv)
    return ubl.render(inv, pdf.render(inv) if embed_pdf else None)


def invoices(connection: Connection, endpoint: str, scope: Scope) -> Iterator[s.EInvoice]:
    """Every invoice of the window, complete, one at a time."""
    parties = s.Parties(connection, scope.environment)
    zones = s.tax_zones(connection)
    for header, lines in s.stream_invoices(connection, KINDS[endpoint], scope):
        seller, buyer = parties.of(header)
        yield s.EInvoice(header, lines, seller, buyer, zones,
                         _corrects(connection, header, scope.environment))


def v4_document(
    connection: Connection, shape: DocumentShape, scope: Scope, fmt: str, invoice_id: int,
    count: Callable[[int], None] | None = None,
) -> Generator[bytes, None, None]:
    """The v4 XML or JSON document holding only invoice ``invoice_id`` (dated in ``scope``),
    written by the export's own writer and merge; ``connection`` stays open (its owner closes
    it: a streamed answer after the last chunk, the event loop's read at once)."""
    dialect = connection.dialect
    # Compiled once per document kind, read with the driver's cursor (as the collections).
    headers = export_source.stream(
        connection,
        export_source.prepared_invoice_query(dialect, shape.kind, scope, invoice_id=invoice_id),
    )
    lines = export_source.stream(
        connection,
        export_source.prepared_line_query(
            dialect, shape.kind, scope, with_attributes=shape.subscription_details,
            with_sales=shape.consolidated, invoice_id=invoice_id,
        ),
    )
    try:
        yield from merge(writer_for(shape, fmt), shape, headers, lines, count)
    finally:
        lines.close()
        headers.close()


def zip_document(
    connection: Connection, endpoint: str, scope: Scope, form: str, *, embed_pdf: bool = False
) -> Generator[bytes, None, None]:
    """The ZIP's bytes in chunks, one or more per entry; closes ``connection`` when done.

    Every invoice is checked before its entry is written, but a window's incomplete party is
    found only when its invoice is reached: the first one is checked before the first byte
    (a 409 then), a later one aborts the transfer (an incomplete download, never an invalid
    document in a complete-looking archive)."""
    render_one: Callable[[s.EInvoice], bytes] = lambda inv: render(  # noqa: E731
        inv, form, embed_pdf=embed_pdf
    )
    suffix = "pdf" if form == "pdf" else "xml"
    archive = ZipStream()
    first = True
    found: Iterator[Any] = invoices(connection, endpoint, scope)
    try:
        pending: list[bytes] = []
        size = 0
        for inv in found:
            head, body = archive.entry(f"{inv.header.number}.{suffix}", render_one(inv),
                                       compress=False)
            pending += (head, body)
            size += len(head) + len(body)
            if size >= CHUNK_BYTES or (size and len(pending) == 2 and first):
                # The first entry goes out at once (it was checked: the answer can start),
                # then chunks of CHUNK_BYTES: each is one hand-over between threads.
                yield b"".join(pending)
                pending, size, first = [], 0, False
        pending.extend(archive.close())
        yield b"".join(pending)
    finally:
        close = getattr(found, "close", None)
        if close is not None:
            close()
        close_read(connection)
