"""E-invoice forms on the v4 collections: ``format=ubl|pdf`` answers a ZIP of e-invoices.

Shared with the single-invoice routes (``einvoice_routes``): the form a request asks for,
the refusal before v4, ``embedPdf``, and what these add to the OpenAPI description.
"""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request, Response
from starlette.responses import StreamingResponse

from billing_api.api import conditional
from billing_api.api.deps import ApiCaller
from billing_api.api.openapi_problems import problem_example, problem_xml
from billing_api.api.versions import CURRENT, ApiVersion
from billing_api.einvoice import documents
from billing_api.errors import InvalidInput, NotFound
from billing_api.export.stream import in_export_threads

FORMS = documents.FORMS
ENDPOINTS = tuple(documents.KINDS)
MEDIA_TYPES = {
    "ubl": "application/xml; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
    "json": "application/json",
    "pdf": "application/pdf",
}
INVOICE_ID_PATTERN = "^[^/]{1,40}$"


def wanted_form(request: Request) -> str | None:
    """``ubl`` or ``pdf`` when ``format=`` asks for an e-invoice form, else None."""
    value = request.query_params.get("format")
    # Exactly as declared (lower case), like format=xml|json (api/negotiation.py).
    return value if value in FORMS else None


def refuse_before_v4(version: ApiVersion, endpoint: str, form: str) -> None:
    """The e-invoice forms do not exist before v4: 404 like single invoices there (the format
    itself is well-formed, so not a 400), naming where they are."""
    if not version.v4_fields:
        raise NotFound(
            f"format={form} starts in {CURRENT}: use /api/{CURRENT}/{endpoint}?format={form}",
            code="format_not_in_version",
        )


def embed_pdf(request: Request) -> bool:
    value = request.query_params.get("embedPdf", "false")
    if value not in ("true", "false"):
        raise InvalidInput(f"embedPdf={value!r} is not a boolean: use true or false",
                           field="embedPdf")
    return value == "true"


def headers_for(version: ApiVersion, filename: str | None) -> dict[str, str]:
    """The answer's headers; without ``filename`` (a 304's) no Content-Disposition."""
    headers = {
        "X-Api-Version": version.name,
        "Vary": "Accept",
        "Cache-Control": conditional.CACHE_CONTROL,
    }
    if filename is not None:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return headers


def bulk_response(
    request: Request, caller: ApiCaller, version: ApiVersion, endpoint: str, form: str
) -> Response:
    """The collection as a ZIP of e-invoices (``format=ubl|pdf``), streamed."""
    refuse_before_v4(version, endpoint, form)
    embed = embed_pdf(request)
    filters = conditional.window(request, caller, version, request.app.state.settings.today())
    found = conditional.open_collection(request, caller, version, endpoint, form,
                                        headers_for(version, None), embed_pdf=embed,
                                        filters=filters)
    if found.not_modified is not None:
        return found.not_modified
    assert found.connection is not None
    chunks = documents.zip_document(found.connection, endpoint, found.scope, form,
                                    embed_pdf=embed)
    name = f"{endpoint}_{version.name}_{conditional.label(filters, found.scope)}_{form}.zip"
    headers = found.headers | headers_for(version, name)
    try:
        first = next(chunks)  # the first invoice is rendered (and checked) before answering
    except BaseException:
        chunks.close()
        raise
    return _streamed_zip(first, chunks, headers)


def _streamed_zip(first: bytes, rest: Any, headers: dict[str, str]) -> Response:
    def body() -> Any:
        try:
            yield first
            yield from rest
        finally:
            rest.close()

    return StreamingResponse(in_export_threads(body()), media_type="application/zip",
                             headers=headers)


EMBED_PDF = Query(alias="embedPdf",  # for the description: ``embed_pdf`` reads it
                  description="With format=ubl: true adds the PDF inside the UBL as an "
                  "AdditionalDocumentReference.",
                  examples=["true"], json_schema_extra={"enum": ["true", "false"]})


def incomplete_party_response() -> dict[str, Any]:
    body = problem_example(
        409, "einvoice_party_incomplete",
        "invoice NW-0000042 cannot be an e-invoice: the buyer (customer) (Acme BV) has no "
        "electronic address (EndpointID); add EndpointID to its data (import or portal) and "
        "ask again",
        "buyer (customer).EndpointID",
    )

    return {
        "description": "A party of the invoice lacks what a valid e-invoice needs: the "
        "problem names the field and the party (never an invalid document).",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"},
                                         "example": body},
            "application/problem+xml": {"schema": {"$ref": "#/components/schemas/Problem"},
                                        "example": problem_xml(body)},
        },
    }


def collection_additions(responses: dict[int | str, dict[str, Any]]) -> None:
    """What ``format=ubl|pdf`` adds to a collection's documented answers."""
    responses[200]["content"]["application/zip"] = {"schema": {"type": "string",
                                                               "format": "binary"}}
    responses[409] = incomplete_party_response()
