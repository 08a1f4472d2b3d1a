"""E-invoice forms on the API (v4 on): one invoice, and the bulk ZIP on the collections.

``GET /api/v4/{invoices|customerinvoices}/{InvoiceID}`` answers one invoice as Peppol UBL,
PDF, or the v4 XML/JSON document holding only it; ``format=ubl|pdf`` on the two collections
answers a ZIP streamed entry by entry (``einvoice.documents``). Authentication and scoping
are the collections': the router's dependency fixes partner and environment, and another
partner's or environment's invoice is 404 like a missing one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Annotated, Any

from anyio.to_thread import run_sync
from fastapi import Depends, Path, Query, Request, Response
from sqlalchemy import Connection

from billing_api.access import links
from billing_api.api import conditional, einvoice_bulk, negotiation
from billing_api.api.deps import ApiCaller, CallerDep, api_router
from billing_api.api.openapi_docs import DOCUMENT_HEADERS, described, not_modified_response
from billing_api.api.openapi_problems import error_responses
from billing_api.api.routes import served_version
from billing_api.api.versions import CURRENT, SERVED, ApiVersion
from billing_api.db import close_read
from billing_api.einvoice import documents
from billing_api.errors import NotFound
from billing_api.export import stream
from billing_api.export.documents import invoice_shape
from billing_api.export.stream import document_response, one_chunk, open_export
from billing_api.loop_reads import LoopReads
from billing_api.sync.state import InvoiceState, invoice_state


async def resolve_version(
    version: Annotated[
        str,
        Path(description=f"The API version: single invoices exist from {CURRENT} on.",
             examples=[CURRENT], json_schema_extra={"enum": list(SERVED)}),
    ],
    request: Request,
) -> ApiVersion:
    # async: no I/O, so no hand-off to a worker thread (see routes.resolve_version).
    found = served_version(version, request)
    if not found.v4_fields:
        raise NotFound(
            f"single invoices start in {CURRENT}: use "
            f"{request.url.path.replace(version, CURRENT, 1)}",
            code="unknown_endpoint",
        )
    return found


VersionDep = Annotated[ApiVersion, Depends(resolve_version)]
InvoiceId = Annotated[
    str,
    Path(alias="InvoiceID", description="The invoice's `InvoiceID` as the documents show it.",
         examples=["NW-0000042"], json_schema_extra={"pattern": einvoice_bulk.INVOICE_ID_PATTERN}),
]
FORMAT = Query(alias="format",  # for the description: negotiation reads it
               description="ubl (Peppol BIS Billing 3.0), pdf, xml or json (the v4 document "
               "holding this one invoice); wins over Accept. Default: from Accept "
               "(application/pdf gives the PDF), else xml.",
               examples=["ubl"], json_schema_extra={"enum": ["ubl", "pdf", "xml", "json"]})
router = api_router(before_auth=[Depends(resolve_version)], tags=["e-invoices"])


def _accepts_pdf(request: Request) -> bool:
    """``Accept`` prefers ``application/pdf`` to the XML and JSON types, negotiated by the
    same q-value rules as every document and problem (``negotiation.negotiate``)."""
    accept = negotiation.accept_header(request)
    return bool(accept.strip()) and negotiation.negotiate(accept, PDF_TYPE) == "pdf"


ONE_INVOICE_PARAMETERS = frozenset({"format", "embedPdf", links.TOKEN_PARAM})
PDF_TYPE = {"application/pdf": "pdf"}


def _one_invoice(endpoint: str, summary: str) -> None:
    async def handler(
        request: Request,
        caller: CallerDep,
        version: VersionDep,
        invoice_id: InvoiceId,
    ) -> Response:
        negotiation.refuse_unknown_parameters(request, ONE_INVOICE_PARAMETERS)
        embed_it = einvoice_bulk.embed_pdf(request)  # a bad value is a 400 whatever the form
        form = einvoice_bulk.wanted_form(request)
        if form is None and request.query_params.get("format") is None and _accepts_pdf(request):
            form = "pdf"
        asked = _Asked(endpoint, invoice_id, form, form or negotiation.choose_format(request),
                       embed_it)
        if form is None:
            # The XML or JSON document of one invoice is a few KB: answered on the event
            # loop (``loop_reads``) unless it turns out longer than one chunk.
            reads: LoopReads = request.app.state.read_reads
            small = await reads.snapshot(_small_answer, request, caller, version, asked)
            if small is not None:
                return small
        return await run_sync(_answer, request, caller, version, asked)

    handler.__name__ = f"{endpoint}_one"
    router.add_api_route(
        f"/{endpoint}/{{InvoiceID}}",
        handler,
        methods=["GET"],
        summary=summary,
        response_class=Response,
        responses=one_invoice_responses(),
        operation_id=f"{endpoint}_one",
        openapi_extra=described(FORMAT, einvoice_bulk.EMBED_PDF),
    )


@dataclass(frozen=True, slots=True)
class _Asked:
    """What a one-invoice request asks for, parsed."""

    endpoint: str
    invoice_id: str
    form: str | None  # ubl or pdf; None for the v4 XML or JSON document
    fmt: str  # the form, or xml / json
    embed_pdf: bool


def _validated(connection: Connection, request: Request, caller: ApiCaller,
               version: ApiVersion, asked: _Asked
               ) -> tuple[InvoiceState | None, Response | dict[str, str]]:
    """The invoice's state and a 304 when the client's copy is current, else the answer's
    validators (none when no state is found: the answer is then a 404, or a run without a
    position). One indexed statement."""
    state = invoice_state(connection, documents.KINDS[asked.endpoint], caller.company_id,
                          caller.environment, asked.invoice_id)
    if state is None:
        return None, {}
    current = conditional.invoice_validators(version, asked.endpoint, asked.fmt,
                                             asked.embed_pdf, state)
    if conditional.is_fresh(request, current):
        return state, conditional.not_modified(einvoice_bulk.headers_for(version, None)
                                               | current.headers())
    return state, current.headers()


def _small_answer(connection: Connection, request: Request, caller: ApiCaller,
                  version: ApiVersion, asked: _Asked) -> Response | None:
    """The v4 document in one snapshot on ``connection``, or None when it is longer than one
    chunk (``_answer`` then streams it from a thread)."""
    state, validated = _validated(connection, request, caller, version, asked)
    if isinstance(validated, Response):
        return validated
    if state is not None and state.run_lines >= stream.LINES_PER_CHUNK:
        # Possibly long (its run is): straight to the thread, not read here first (one
        # invoice's lines come at once, a large one would stall the loop).
        return None
    invoice_id, day = _located(connection, caller, asked, state)
    whole = one_chunk(lambda count: _v4_chunks(connection, caller, version, asked, invoice_id,
                                               day, count), asked.endpoint)
    if whole is None:
        return None
    return Response(whole, media_type=einvoice_bulk.MEDIA_TYPES[asked.fmt],
                    headers=einvoice_bulk.headers_for(version, _v4_name(version, asked, day))
                    | validated)


def _answer(request: Request, caller: ApiCaller, version: ApiVersion,
            asked: _Asked) -> Response:
    """Any form, on a worker thread: a long document streams, a UBL or PDF is rendered off
    the event loop. One connection and snapshot decides a 304 and reads the invoice."""
    connection = open_export(request.app.state.read_engine)
    handed_over = False
    try:
        state, validated = _validated(connection, request, caller, version, asked)
        if isinstance(validated, Response):
            return validated
        if asked.form is None:
            invoice_id, day = _located(connection, caller, asked, state)
            body = _v4_chunks(connection, caller, version, asked, invoice_id, day)
            handed_over = True  # closed after the last chunk
            return document_response(
                _closing(body, connection), einvoice_bulk.MEDIA_TYPES[asked.fmt],
                einvoice_bulk.headers_for(version, _v4_name(version, asked, day)) | validated)
        inv = documents.load(connection, asked.endpoint, caller.company_id, caller.environment,
                             asked.invoice_id)
    finally:
        if not handed_over:
            close_read(connection)
    rendered = documents.render(inv, asked.form, embed_pdf=asked.embed_pdf)
    suffix = "pdf" if asked.form == "pdf" else "xml"
    headers = einvoice_bulk.headers_for(version, f"{inv.header.number}.{suffix}")
    return Response(rendered, media_type=einvoice_bulk.MEDIA_TYPES[asked.form],
                    headers=headers | validated)


def _closing(chunks: Generator[bytes, None, None],
             connection: Connection) -> Generator[bytes, None, None]:
    try:
        yield from chunks
    finally:
        chunks.close()
        close_read(connection)


def _located(connection: Connection, caller: ApiCaller, asked: _Asked,
             state: InvoiceState | None) -> tuple[int, dt.date]:
    """The invoice's row id and date: from ``state`` when it was found, else looked up
    (raising the 404 when the invoice is not the caller's)."""
    if state is not None:
        return state.id, state.invoice_date
    header = documents.find(connection, asked.endpoint, caller.company_id, caller.environment,
                            asked.invoice_id)
    return header.id, negotiation.parse_date("Date", header.date)


def _v4_chunks(connection: Connection, caller: ApiCaller, version: ApiVersion, asked: _Asked,
               invoice_id: int, day: dt.date, count: Callable[[int], None] | None = None
               ) -> Generator[bytes, None, None]:
    """The v4 XML or JSON document holding only this invoice, read on ``connection`` (the
    caller's snapshot)."""
    scope = negotiation.scope_for(caller.company_id, caller.environment, (day, day))
    shape = invoice_shape(asked.endpoint, version.v4_fields)
    return documents.v4_document(connection, shape, scope, asked.fmt, invoice_id, count)


def _v4_name(version: ApiVersion, asked: _Asked, day: dt.date) -> str:
    # Named as the collections name theirs (the window is the invoice's day): <InvoiceID>.xml
    # is the UBL's name.
    compact = negotiation.compact(day)  # not strftime: slower, and year 1 is "1" on glibc
    return f"{asked.endpoint}_{version.name}_{compact}_{compact}.{asked.fmt}"


def one_invoice_responses() -> dict[int | str, dict[str, Any]]:
    binary = {"type": "string", "format": "binary"}
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The invoice as a file: Peppol BIS Billing 3.0 UBL (`format=ubl`, "
            "an Invoice or, for a negative total, a CreditNote), a PDF, or the v4 document "
            "holding only this invoice (XML or JSON).",
            "headers": {k: v for k, v in DOCUMENT_HEADERS.items() if k not in ("Deprecation",
                                                                              "Link")},
            "content": {
                "application/xml": {"schema": binary},
                "application/pdf": {"schema": binary},
                "application/json": {"schema": {"type": "object"}},
            },
        },
    }
    responses[304] = not_modified_response(False)
    responses.update(error_responses())
    responses.pop(410, None)
    responses[409] = einvoice_bulk.incomplete_party_response()
    return responses


_one_invoice("invoices", "One purchase invoice as Peppol UBL, PDF, XML or JSON")
_one_invoice("customerinvoices", "One sales invoice as Peppol UBL, PDF, XML or JSON")
