"""Billing API → API keys and IP whitelist. The rules are the access services'; these routes
parse the form, call the service, and show its message next to the field it names.

A new key's secret is rendered straight into the answer to the POST (it is never stored, not
even in the session) and the form carries a one-time nonce: posting it again, as a reload
does, shows "gone" instead of the secret and creates nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from billing_api.access import keys, whitelist
from billing_api.access.models import ApiKey
from billing_api.environments import Environment
from billing_api.errors import BillingError, Conflict, InvalidInput, NotFound
from billing_api.portal.session import NONCE_FIELD
from billing_api.portal.web import (
    BillingViewerDep,
    PortalRoute,
    Viewer,
    claim_nonce,
    redirect,
    release_nonce,
    render,
    settings_of,
    visitor_address,
)

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

KEYS = "/portal/billing-api/keys"
WHITELIST = "/portal/billing-api/whitelist"
DESCRIPTION_MAX = 200


def _keys_page(request: Request, viewer: Viewer, status: int = 200,
               errors: dict[str, str] | None = None,
               values: dict[str, str] | None = None) -> Response:
    rows = [(key, keys.key_status(key)) for key in reversed(keys.list_keys(viewer.db,
                                                                           viewer.company))]
    return render(request, "keys.html", status, title="API keys", rows=rows,
                  errors=errors or {}, values=values or {"environment": "production"},
                  environments=[e.value for e in Environment])


@router.get(KEYS)
def keys_page(request: Request, viewer: BillingViewerDep) -> Response:
    return _keys_page(request, viewer)


def _parse_expiry(text: str) -> dt.date | None:
    if not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{text.strip()!r} is not a date: use YYYY-MM-DD, e.g. 2027-12-31",
                           field="expires") from None


@router.post(KEYS)
def create_key(request: Request, viewer: BillingViewerDep,
               name: Annotated[str, Form()] = "",
               environment: Annotated[str, Form()] = "",
               expires: Annotated[str, Form()] = "",
               form_nonce: Annotated[str, Form(alias=NONCE_FIELD)] = "") -> Response:
    values = {"name": name, "environment": environment, "expires": expires}
    if not claim_nonce(request, form_nonce):
        return render(request, "key_gone.html", 409, title="Secret no longer shown")
    try:
        if environment not in {e.value for e in Environment}:
            raise InvalidInput("Choose production or sandbox.", field="environment")
        key, secret = keys.create_key(
            viewer.db, settings_of(request), viewer.company, environment=Environment(environment),
            name=name, expires_on=_parse_expiry(expires), actor=viewer.user)
    except InvalidInput as exc:
        # Nothing was created: the corrected form may be sent again.
        release_nonce(request, form_nonce)
        return _keys_page(request, viewer, 400, {exc.field or "name": exc.message}, values)
    return render(request, "key_created.html", title="Your new API key", key=key,
                  secret=secret)


def _own_key(viewer: Viewer, key_id: int) -> ApiKey:
    key = viewer.db.get(ApiKey, key_id)
    if key is None or key.company_id != viewer.company.id:
        raise NotFound(f"{viewer.company.name} has no API key {key_id}.", code="key_not_found")
    return key


@router.get(KEYS + "/{key_id}/revoke")
def confirm_revoke(request: Request, viewer: BillingViewerDep, key_id: int) -> Response:
    """The confirmation step (a page, so it works without JavaScript)."""
    key = _own_key(viewer, key_id)
    return render(request, "key_revoke.html", title=f"Revoke API key {key.name}", key=key,
                  status=keys.key_status(key))


@router.post(KEYS + "/{key_id}/revoke")
def revoke(request: Request, viewer: BillingViewerDep, key_id: int) -> Response:
    key = keys.revoke_key(viewer.db, viewer.company, key_id, actor=viewer.user)
    return redirect(request, KEYS, f"API key “{key.name}” ({key.display_prefix}…) is revoked: "
                                   "calls and download links made with it are refused.")


def _whitelist_page(request: Request, viewer: Viewer, status: int = 200,
                    errors: dict[str, str] | None = None,
                    values: dict[str, str] | None = None) -> Response:
    entries = whitelist.list_entries(viewer.db, viewer.company)
    mine = visitor_address(request)
    listed = bool(mine) and whitelist.is_allowed(ipaddress.ip_address(mine),
                                                 [e.network for e in entries])
    return render(request, "whitelist.html", status, title="IP whitelist", entries=entries,
                  my_address=mine, my_address_listed=listed, errors=errors or {},
                  values=values or {})


@router.get(WHITELIST)
def whitelist_page(request: Request, viewer: BillingViewerDep) -> Response:
    return _whitelist_page(request, viewer)


def _check_entry(network: str, description: str) -> None:
    if not network.strip():
        raise InvalidInput("Enter an IP address (192.0.2.7) or a range (192.0.2.0/24).",
                           field="network")
    if whitelist.parse_network(network, allow_any=True).prefixlen == 0:
        raise InvalidInput(f"{network.strip()} would let every address in: enter your own "
                           "addresses or ranges instead.", field="network")
    if len(description.strip()) > DESCRIPTION_MAX:
        raise InvalidInput(f"Keep the description under {DESCRIPTION_MAX} characters.",
                           field="description")


@router.post(WHITELIST)
def add_entry(request: Request, viewer: BillingViewerDep,
              network: Annotated[str, Form()] = "",
              description: Annotated[str, Form()] = "") -> Response:
    try:
        _check_entry(network, description)
        entry = whitelist.add_entry(viewer.db, viewer.company, network,
                                    description=description, actor=viewer.user)
    except (InvalidInput, Conflict) as exc:
        errors = {exc.field or "network": exc.message}
        return _whitelist_page(request, viewer, 400, errors,
                               {"network": network, "description": description})
    return redirect(request, WHITELIST, f"{entry.network} is whitelisted.")


@router.post(WHITELIST + "/mine")
def add_my_address(request: Request, viewer: BillingViewerDep) -> Response:
    """One click: whitelist the address this browser connects from."""
    mine = visitor_address(request)
    if not mine:
        raise InvalidInput("Your address could not be determined: enter it by hand.",
                           field="network")
    try:
        entry = whitelist.add_entry(viewer.db, viewer.company, mine,
                                    description=f"added by {viewer.user.email} from the portal",
                                    actor=viewer.user)
    except BillingError as exc:
        return _whitelist_page(request, viewer, 400, {"network": exc.message})
    return redirect(request, WHITELIST, f"Your address {entry.network} is whitelisted.")


@router.post(WHITELIST + "/{entry_id}/remove")
def remove_entry(request: Request, viewer: BillingViewerDep, entry_id: int) -> Response:
    entry = whitelist.remove_entry(viewer.db, viewer.company, entry_id, actor=viewer.user)
    return redirect(request, WHITELIST, f"{entry.network} is no longer whitelisted.")
