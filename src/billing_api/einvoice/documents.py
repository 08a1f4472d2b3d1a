"""E-invoices for the API: one invoice in a form, or every invoice of a window as ZIP entries.

Both read inside one transaction (one snapshot) like the v4 documents; the bulk path holds one
invoice at a time and yields each ZIP entry's bytes as soon as they are written.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

from sqlalchemy import Connection

from billing_api.einvoice import pdf, ubl
from billing_api.einvoice import source as s
from billing_api.einvoice.zipstream import ZipStream
from billing_api.errors import NotFound
from billing_api.export.source import Scope

KINDS = {"invoices": "purchase", "customerinvoices": "customer"}
FORMS = ("ubl", "pdf")


def load(connection: Connection, endpoint: str, partner_id: int, environment: str,
         number: str) -> s.EInvoice:
    """One invoice of the caller's, complete; ``NotFound`` for another partner's or
    environment's as for a missing one."""
    header = s.find_invoice(connection, KINDS[endpoint], partner_id, environment, number)
    if header is None:
        raise NotFound(
            f"invoice {number!r} was not found among your {endpoint} in this environment",
            code="invoice_not_found",
        )
    seller, buyer = s.Parties(connection, environment).of(header)
    return s.EInvoice(header, s.invoice_lines(connection, header, environment), seller, buyer,
                      s.tax_zones(connection))


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
        yield s.EInvoice(header, lines, seller, buyer, zones)


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
    found: Iterator[Any] = invoices(connection, endpoint, scope)
    try:
        for inv in found:
            yield from archive.entry(f"{inv.header.number}.{suffix}", render_one(inv))
        yield from archive.close()
    finally:
        close = getattr(found, "close", None)
        if close is not None:
            close()
        connection.close()
