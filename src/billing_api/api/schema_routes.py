"""The published XML Schemas: ``GET /api/schemas/{version}/{document}.xsd``, no key needed.

They describe the format, not anybody's data, so they are public (and on the explicit public
list in ``tests/test_access_routes.py``). The files ship inside the package
(``api/schemas/<version>/<name>.xsd``) and are read with ``importlib.resources``; a schema may
``xs:include`` another by a relative path (``types.xsd``, ``../v2/invoices.xsd``), which
resolves to another URL of this route.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path, Response

from billing_api.api.openapi_problems import error_responses
from billing_api.api.versions import ENDPOINTS
from billing_api.errors import NotFound

SCHEMA_PACKAGE = "billing_api.api"
SCHEMA_FOLDER = "schemas"
MEDIA_TYPE = "application/xml"
# Declared in the description (a combination that has no file is a 404, also declared).
SCHEMA_VERSIONS = ("v2", "v3", "v4")
SCHEMA_DOCUMENTS = (*ENDPOINTS, "types")

router = APIRouter(prefix="/api/schemas", tags=["schemas"])


@cache
def published() -> dict[tuple[str, str], bytes]:
    """Every schema file shipped in the package, by (version, name without ``.xsd``)."""
    root = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FOLDER)
    found: dict[tuple[str, str], bytes] = {}
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.is_file() and item.name.endswith(".xsd"):
                found[(folder.name, item.name.removesuffix(".xsd"))] = item.read_bytes()
    return found


@router.get(
    "/{version}/{document}.xsd",
    summary="The XML Schema (XSD) of one document in one API version",
    description="Public: no key needed. `document` is invoices, customerinvoices, "
    "consolidatedinvoices or subscriptiondetails; `types` holds what they share (they include "
    "it, and v3's schemas include v2's, by relative URL).",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}}},
        **error_responses([404]),
    },
    operation_id="schema",
)
def schema(
    version: Annotated[str, Path(description="An API version that has schemas.",
                                 json_schema_extra={"enum": list(SCHEMA_VERSIONS)})],
    document: Annotated[str, Path(description="A document, or `types` (shared types; only "
                                  "in the versions whose schemas define them).",
                                  json_schema_extra={"enum": list(SCHEMA_DOCUMENTS)})],
) -> Response:
    body = published().get((version, document))
    if body is None:
        versions = sorted({v for v, _ in published()})
        raise NotFound(
            f"there is no schema {document}.xsd for version {version!r}: schemas exist for "
            f"{', '.join(versions)}, e.g. /api/schemas/v4/invoices.xsd",
            code="unknown_schema",
        )
    return Response(body, media_type=MEDIA_TYPE, headers={"Cache-Control": "public, max-age=3600"})
