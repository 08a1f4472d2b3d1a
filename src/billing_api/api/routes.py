"""The four document endpoints under ``/api/{version}``: parse, scope to the caller, stream.

Routes are thin: the caller (partner and environment, fixed by the key) comes from the
router's authentication dependency, parameters from ``negotiation``, documents from
``export``. Responses are files: ``Content-Disposition: attachment`` with the contract's name.
"""

from __future__ import annotations

from typing import Annotated

from anyio.to_thread import run_sync
from fastapi import Depends, Path, Query, Request, Response
from sqlalchemy import Connection

from billing_api.access import links
from billing_api.api import conditional, einvoice_bulk, negotiation
from billing_api.api.deps import ApiCaller, CallerDep, api_router
from billing_api.api.errors import VersionGone
from billing_api.api.openapi_docs import described, document_responses
from billing_api.api.versions import CURRENT, SERVED, VERSIONS, ApiVersion
from billing_api.errors import NotFound
from billing_api.export import details, stream
from billing_api.export.documents import invoice_shape
from billing_api.export.stream import document_response, invoice_document, one_chunk
from billing_api.loop_reads import LoopReads

MEDIA_TYPES = {"xml": "application/xml; charset=utf-8", "json": "application/json"}
# Every query parameter a route takes (token: a download link's, api/deps.py); others are a 400.
INVOICE_PARAMETERS = frozenset({"startDate", "endDate", "format", conditional.SINCE,
                                links.TOKEN_PARAM})
DETAILS_PARAMETERS = (INVOICE_PARAMETERS - {conditional.SINCE}) | {"subscriptionId"}
EINVOICE_COLLECTION_PARAMETERS = INVOICE_PARAMETERS | {"embedPdf"}

def served_version(version: str, request: Request) -> ApiVersion:
    """The version named in the path; raises 404 for an unknown one and 410 for one no longer
    served (every versioned route's first check)."""
    found = VERSIONS.get(version)
    if found is None:
        raise NotFound(
            f"API version {version!r} does not exist: the current version is {CURRENT}",
            code="unknown_version",
        )
    if not found.served:
        raise VersionGone(
            f"API version {version} has reached End of Life and is no longer "
            f"served: use {CURRENT}, e.g. {request.url.path.replace(version, CURRENT, 1)}"
        )
    return found


async def resolve_version(
    version: Annotated[
        str,
        Path(
            description=f"The API version: {', '.join(SERVED)} are served ({CURRENT} is "
            "current, v2 is deprecated); v1 answers 410 Gone, an unknown version 404.",
            examples=[CURRENT],
            json_schema_extra={"enum": list(SERVED)},
        ),
    ],
    request: Request,
) -> ApiVersion:
    """The requested version; 404 for an unknown one, 410 for one no longer served, 404 for
    an endpoint the version does not have.

    ``async`` although it does no I/O: FastAPI runs a sync dependency on a worker thread, and
    each such hand-off cost more than the check (bench/load.py)."""
    found = served_version(version, request)
    endpoint = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    if endpoint not in found.endpoints:
        raise NotFound(f"{endpoint} does not exist in {version}", code="unknown_endpoint")
    return found


VersionDep = Annotated[ApiVersion, Depends(resolve_version)]
# Query parameters, declared for the description (openapi_docs.described): every route reads
# its query itself through ``negotiation``.
START_DATE = Query(
    alias="startDate",
    description="First invoice date (the day an invoice was issued), inclusive: "
    "YYYYMMDD or YYYY-MM-DD, a real calendar date (an empty value is refused). "
    "Default: three months before endDate.",
    examples=["20260801"],
    json_schema_extra={"pattern": negotiation.DATE_PATTERN},
)
END_DATE = Query(
    alias="endDate",
    description="Last invoice date (the day an invoice was issued), inclusive: "
    "YYYYMMDD or YYYY-MM-DD, a real calendar date, not before startDate (an empty value "
    "is refused). Default: today.",
    examples=["20261031"],
    json_schema_extra={"pattern": negotiation.DATE_PATTERN},
)
FORMAT = Query(
    alias="format",
    description="xml or json (lower case); wins over the Accept header. Default: from "
    "Accept, else xml.",
    examples=["json"],
    json_schema_extra={"enum": ["xml", "json"]},
)
INVOICE_FORMAT = Query(
    alias="format",
    description="xml or json; wins over the Accept header. Default: from Accept, else "
    "xml. v4 on: ubl (Peppol BIS Billing 3.0) or pdf answer a ZIP with one file per "
    "invoice (docs/einvoicing.md).",
    examples=["json"],
    json_schema_extra={"enum": ["xml", "json", "ubl", "pdf"]},
)
SINCE = Query(
    alias="since",
    description="v4 only: the `X-Next-Cursor` of an earlier answer. Only the invoices "
    "of billing runs after it, whatever their invoice date (a late correction of an old "
    "period too); with no startDate/endDate no date filter applies, a date given bounds "
    "that side. A cursor of another key's account or environment, or a damaged one, is a "
    "400 `invalid_cursor` (docs/sync.md). It looks like `c1AAAAAAAAAAAIAAAAAAAAAAAMM0fUV` "
    "(no example is filled in here: a made-up cursor is refused).",
    json_schema_extra={"pattern": "^c1[A-Za-z0-9_-]{1,100}$"},
)
SUBSCRIPTION_ID = Query(
    alias="subscriptionId",
    description="Required: the subscription's id (SubscriptionID on invoice "
    "documents). One of another partner or environment is 404, like a missing one.",
    examples=["42"],
    json_schema_extra={"pattern": negotiation.SUBSCRIPTION_ID_PATTERN},
)

router = api_router(before_auth=[Depends(resolve_version)], tags=["documents"])


def _headers(version: ApiVersion, endpoint: str, fmt: str, label: str | None) -> dict[str, str]:
    """The answer's headers; without ``label`` (a 304's) no Content-Disposition."""
    headers = {
        "X-Api-Version": version.name,
        "Vary": "Accept",
        "Cache-Control": conditional.CACHE_CONTROL,
    }
    if version.deprecated_since:
        headers["Deprecation"] = version.deprecated_since
        headers["Link"] = f'</api/{CURRENT}/{endpoint}>; rel="successor-version"'
    if label is not None:
        headers["Content-Disposition"] = (
            f'attachment; filename="{endpoint}_{version.name}_{label}.{fmt}"')
    return headers


async def _document(request: Request, caller: ApiCaller, version: ApiVersion,
                    endpoint: str) -> Response:
    fmt = negotiation.choose_format(request)
    filters = conditional.window(request, caller, version, request.app.state.settings.today())
    # An ERP polling a day gets one chunk: answered on the event loop (loop_reads); a longer
    # document streams from a worker thread.
    reads: LoopReads = request.app.state.read_reads
    small = await reads.snapshot(_small_document, request, caller, version, endpoint, fmt,
                                 filters)
    if small is not None:
        return small
    return await run_sync(_streamed_document, request, caller, version, endpoint, fmt, filters)


def _small_document(connection: Connection, request: Request, caller: ApiCaller,
                    version: ApiVersion, endpoint: str, fmt: str,
                    filters: conditional.Window) -> Response | None:
    """A 304, or the whole document if it is one chunk long, else None (the runs in scope
    tell a long one before it is read; ``one_chunk`` catches the rest)."""
    found = conditional.decide_collection(connection, request, caller, version, endpoint, fmt,
                                          _headers(version, endpoint, fmt, None),
                                          embed_pdf=False, filters=filters)
    if found.not_modified is not None:
        return found.not_modified
    if found.lines >= stream.LINES_PER_CHUNK:
        # A chunk or longer by the runs' own count: straight to the thread, not rendered
        # here first (a sorted line query would run twice).
        return None
    shape = invoice_shape(endpoint, version.v4_fields)
    whole = one_chunk(lambda count: invoice_document(connection, shape, found.scope, fmt,
                                                     count, few=True), endpoint)
    if whole is None:
        return None
    headers = found.headers | _headers(version, endpoint, fmt,
                                       conditional.label(filters, found.scope))
    return Response(whole, media_type=MEDIA_TYPES[fmt], headers=headers)


def _streamed_document(request: Request, caller: ApiCaller, version: ApiVersion,
                       endpoint: str, fmt: str, filters: conditional.Window) -> Response:
    # Opened before answering, so a database that is down is a 503, not a broken stream; the
    # caller's runs are read first in it: the validators and cursor match the body's snapshot.
    found = conditional.open_collection(request, caller, version, endpoint, fmt,
                                        _headers(version, endpoint, fmt, None), filters=filters)
    if found.not_modified is not None:
        return found.not_modified
    assert found.connection is not None
    headers = found.headers | _headers(version, endpoint, fmt,
                                       conditional.label(filters, found.scope))
    body = invoice_document(found.connection, invoice_shape(endpoint, version.v4_fields),
                            found.scope, fmt)
    return document_response(body, MEDIA_TYPES[fmt], headers)


def _invoice_endpoint(endpoint: str, summary: str) -> None:
    async def handler(request: Request, caller: CallerDep, version: VersionDep) -> Response:
        negotiation.refuse_unknown_parameters(request, INVOICE_PARAMETERS)
        return await _document(request, caller, version, endpoint)

    async def einvoice_handler(request: Request, caller: CallerDep,
                               version: VersionDep) -> Response:
        negotiation.refuse_unknown_parameters(request, EINVOICE_COLLECTION_PARAMETERS)
        einvoice_bulk.embed_pdf(request)  # a bad value is a 400 whatever the format
        form = einvoice_bulk.wanted_form(request)
        if form is not None:  # a ZIP of e-invoices (v4 on), rendered on worker threads
            return await run_sync(einvoice_bulk.bulk_response, request, caller, version,
                                  endpoint, form)
        return await _document(request, caller, version, endpoint)

    einvoices = endpoint in einvoice_bulk.ENDPOINTS
    chosen = einvoice_handler if einvoices else handler
    chosen.__name__ = endpoint
    responses = document_responses(endpoint)
    if einvoices:
        einvoice_bulk.collection_additions(responses)
    queries = ((START_DATE, END_DATE, INVOICE_FORMAT, einvoice_bulk.EMBED_PDF, SINCE)
               if einvoices else (START_DATE, END_DATE, FORMAT, SINCE))
    router.add_api_route(
        f"/{endpoint}",
        chosen,
        methods=["GET"],
        summary=summary,
        response_class=Response,
        responses=responses,
        operation_id=endpoint,
        openapi_extra=described(*queries),
    )


_invoice_endpoint("invoices", "The partner's purchase invoices (distributor to partner)")
_invoice_endpoint("customerinvoices", "The partner's sales invoices, one per customer and vendor")
_invoice_endpoint(
    "consolidatedinvoices", "Purchase invoices with each line's matching sales figures"
)


@router.get(
    "/subscriptiondetails",
    summary="Plan, period, resources and rates of one subscription",
    response_class=Response,
    responses=document_responses("subscriptiondetails"),
    operation_id="subscriptiondetails",
    openapi_extra=described(SUBSCRIPTION_ID, START_DATE, END_DATE, FORMAT),
)
async def subscription_details(request: Request, caller: CallerDep,
                               version: VersionDep) -> Response:
    negotiation.refuse_unknown_parameters(request, DETAILS_PARAMETERS)
    fmt = negotiation.choose_format(request)
    window = negotiation.date_range(request, request.app.state.settings.today())
    wanted = negotiation.subscription_id(request)
    # On the event loop (``loop_reads``): two prebuilt statements read the whole tree.
    body, current = await request.app.state.read_reads.statements(
        _details_body, caller, version, wanted, fmt)
    # Named after the subscription: two subscriptions' files must not collide (curl -OJ).
    label = f"{wanted}_{negotiation.compact(window[0])}_{negotiation.compact(window[1])}"
    headers = _headers(version, "subscriptiondetails", fmt, label) | current.headers()
    if conditional.is_fresh(request, current):
        return conditional.not_modified(headers)
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)


def _details_body(connection: Connection, caller: ApiCaller, version: ApiVersion, wanted: int,
                  fmt: str) -> tuple[bytes, conditional.Validators]:
    """The subscription's document and validators; ``NotFound`` when it is not the caller's."""
    tree = details.build_details(
        connection, caller.company_id, caller.environment, wanted, version.v4_fields
    )
    if tree is None:
        raise NotFound(
            f"subscription {wanted} was not found for this account and environment",
            code="subscription_not_found",
        )
    body = details.to_xml(tree) if fmt == "xml" else details.to_json(tree)
    # Small and without price lines: the tag is the body's digest, exact by construction.
    return body, conditional.details_validators(connection, caller, wanted, body)
