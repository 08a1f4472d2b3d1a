"""Billing API → "Your Endpoints": pick a key and a version, expand an endpoint, fill in its
parameters, and get the request as a green download link plus the equivalent ``curl``.

The whole explorer is one GET form page, so it works without JavaScript (htmx only swaps the
result in place). The link is ``access.links.signed_url``: a token bound to the chosen key,
the exact path and the exact query (with an explicit ``format``), valid 15 minutes, pointing
at the real API route — so the download obeys the same key, whitelist and environment rules
as a call with the ``X-Api-Key`` header. The ``curl`` line shows a placeholder for the key:
its secret is not stored anywhere and cannot be shown again.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shlex
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from billing_api.access import keys, links, whitelist
from billing_api.access.models import ApiKey
from billing_api.api import negotiation
from billing_api.api.versions import VERSIONS, ApiVersion
from billing_api.db import utcnow
from billing_api.errors import InvalidInput
from billing_api.portal.web import (
    BillingViewerDep,
    PortalRoute,
    render,
    settings_of,
    visitor_address,
)

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

ENDPOINTS_PAGE = "/portal/billing-api/endpoints"
JSON = "application/json"
ACCEPT_CHOICES = (("", "None (defaults to XML)"), (JSON, JSON))
KEY_PLACEHOLDER = "<your key>"
DESCRIPTIONS = {
    "invoices": "Your purchase invoices: what the distributor bills you, per vendor.",
    "customerinvoices": "Your sales invoices: one per customer and vendor, at your prices.",
    "consolidatedinvoices": "Purchase invoices with the matching sales figures on every line.",
    "subscriptiondetails": "Plan, period, resources and rates of one subscription.",
}


@dataclass(frozen=True)
class BuiltRequest:
    """What the explorer shows once an endpoint's form is filled in."""

    link: str  # path + query + token, for the href
    shown_url: str  # absolute URL without the token, for people to read
    curl: str
    filename: str
    expires_at: dt.datetime


def build_request(request: Request, key: ApiKey, version: ApiVersion, endpoint: str,
                  accept: str, start_text: str, end_text: str,
                  subscription_text: str) -> BuiltRequest:
    """The signed link and ``curl`` line; raises ``InvalidInput`` naming the field."""
    if accept not in (choice for choice, _ in ACCEPT_CHOICES):
        raise InvalidInput("Choose an Accept header from the list.", field="accept")
    if not start_text.strip():
        raise InvalidInput("Enter a start date.", field="startDate")
    # The API's own parser, so the explorer accepts exactly what the endpoint accepts.
    start = negotiation.parse_date("startDate", start_text)
    if not end_text.strip():
        raise InvalidInput("Enter an end date.", field="endDate")
    end = negotiation.parse_date("endDate", end_text)
    if end < start:
        raise InvalidInput("The end date is before the start date.", field="endDate")
    fmt = "json" if accept == JSON else "xml"
    params = [("startDate", negotiation.compact(start)), ("endDate", negotiation.compact(end))]
    subscription_id = None
    if endpoint == "subscriptiondetails":
        wanted = subscription_text.strip()
        if not wanted:
            raise InvalidInput("Enter a subscription ID (SubscriptionID on your invoices).",
                               field="subscriptionId")
        # ASCII digits, as the API takes them (isdigit() alone admits '²', which int() refuses).
        if not (wanted.isascii() and wanted.isdigit()) or len(wanted) > 18:
            raise InvalidInput(f"{wanted!r} is not a subscription ID: use a whole number.",
                               field="subscriptionId")
        params.append(("subscriptionId", wanted))
        subscription_id = int(wanted)
    path = f"/api/{version.name}/{endpoint}"
    now = utcnow()
    link = links.signed_url(settings_of(request), key.digest, path, [*params, ("format", fmt)],
                            now=now)
    base = str(request.base_url).rstrip("/")
    filename = negotiation.filename(endpoint, version.name, (start, end), fmt, subscription_id)
    # The header request that answers the same document: Accept instead of format=.
    curl = ["curl", "--fail-with-body", "-H", f"X-Api-Key: {KEY_PLACEHOLDER}"]
    if accept:
        curl += ["-H", f"Accept: {accept}"]
    curl += ["-o", filename, f"{base}{path}?{urlencode(params)}"]
    shown = f"{base}{path}?{urlencode([*params, ('format', fmt)])}"
    return BuiltRequest(link=link, shown_url=shown, curl=shlex.join(curl), filename=filename,
                        expires_at=now + links.MAX_LIFETIME)


def _pick_version(name: str) -> tuple[ApiVersion | None, str]:
    if not name:
        return None, ""
    version = VERSIONS.get(name)
    if version is None:
        return None, f"There is no API version {name!r}."
    if not version.served:
        return None, f"{name} has reached {version.status}: choose a newer version."
    return version, ""


@router.get(ENDPOINTS_PAGE)
def endpoints_page(request: Request, viewer: BillingViewerDep) -> Response:
    query = request.query_params
    usable = [k for k in keys.list_keys(viewer.db, viewer.company)
              if keys.key_status(k) == "active"]
    errors: dict[str, str] = {}
    key_text = query.get("key", "")
    key = next((k for k in usable if str(k.id) == key_text), None)
    if key_text and key is None:
        errors["key"] = "That key is not an active key of yours: choose another one."
    version, version_error = _pick_version(query.get("version", ""))
    if version_error:
        errors["version"] = version_error
    endpoint = query.get("endpoint", "")
    built: BuiltRequest | None = None
    if version is not None and endpoint in version.endpoints and query.get("build"):
        if key is None:
            errors.setdefault("key", "Choose an API key first.")
        else:
            try:
                built = build_request(request, key, version, endpoint, query.get("accept", ""),
                                      query.get("startDate", ""), query.get("endDate", ""),
                                      query.get("subscriptionId", ""))
            except InvalidInput as exc:
                errors[exc.field or "startDate"] = exc.message
    entries = whitelist.networks_for(viewer.db, viewer.company.id)
    mine = visitor_address(request)
    listed = bool(mine) and whitelist.is_allowed(ipaddress.ip_address(mine), entries)
    status = 400 if errors and query.get("build") else 200
    return render(
        request, "endpoints.html", status, title="Your Endpoints", keys=usable, key=key,
        versions=list(VERSIONS.values()), version=version, endpoint=endpoint, built=built,
        errors=errors, values=dict(query), accept_choices=ACCEPT_CHOICES,
        descriptions=DESCRIPTIONS, whitelist_empty=not entries, my_address=mine,
        my_address_listed=listed)
