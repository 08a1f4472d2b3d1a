"""The Invoices page's download links: signed links to the API's single-invoice routes.

A download is ``GET /api/v4/{invoices|customerinvoices}/{InvoiceID}?format=pdf|ubl|xml|json
&token=…``, signed with ``access.links`` for one of the company's active keys of the page's
environment, exactly as the explorer's links: bound to the key, the exact path and query,
valid 15 minutes. The API then applies its own rules to it (key state, API switch,
whitelist, environment, partner scoping), so the page can show a link for nothing the key
could not fetch with its header. Who may get a link is who may use the explorer: a user with
API permission, the API enabled, and an active key of that environment. Everybody else sees
the listing and the charts, and what they need to download.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import Request

from billing_api.access import keys, links, whitelist
from billing_api.access.models import ApiKey, User
from billing_api.api.versions import CURRENT
from billing_api.portal.web import Viewer, settings_of, visitor_address

FORMATS = ("pdf", "ubl", "xml", "json")
ENDPOINTS = {"purchase": "invoices", "customer": "customerinvoices"}


@dataclass
class Downloads:
    """Whether links can be made, with which key, and what to tell the viewer otherwise."""

    keys: list[ApiKey] = field(default_factory=list)  # active keys of the environment
    key: ApiKey | None = None
    needs: str = ""  # why there are no links ("" when there are)
    whitelist_empty: bool = False
    address: str = ""
    address_listed: bool = True
    expires_at: dt.datetime | None = None


def _administrator(viewer: Viewer) -> str:
    admins = [u for u in viewer.company.users if u.is_account_admin and u.is_active]
    return ", ".join(f"{u.full_name or u.email} ({u.email})" for u in admins) or \
        "your Account Administrator"


def plan(request: Request, viewer: Viewer, environment: str, key_text: str,
         errors: dict[str, str]) -> Downloads:
    """Which key signs the page's links (the chosen one, else the newest active key of the
    environment); a key id that is not an active key of the viewer's company in that
    environment is an error under the field, and no link is signed."""
    found = Downloads()
    user: User = viewer.user
    if not viewer.me.has_api_permission:
        found.needs = ("Downloads go through the Billing API with one of your company's API "
                       "keys, and you have no API permission: ask "
                       f"{_administrator(viewer)} to grant it under Users.")
        return found
    if not viewer.company.api_enabled:
        found.needs = (f"Downloads go through the Billing API, which is not enabled for "
                       f"{viewer.company.name} yet: " +
                       ("enable it under Profile → Your APIs." if user.is_account_admin else
                        f"ask {_administrator(viewer)} to enable it under Profile → Your APIs."))
        return found
    found.keys = [k for k in keys.list_keys(viewer.db, viewer.company)
                  if k.environment == environment and keys.key_status(k) == "active"]
    if not found.keys:
        found.needs = (f"Downloads are signed with one of your company's API keys, and there is "
                       f"no active {environment} key: create one under Billing API → API keys.")
        return found
    if key_text:
        found.key = next((k for k in found.keys if str(k.id) == key_text), None)
        if found.key is None:
            errors["key"] = (f"That is not an active {environment} key of yours: "
                             "choose another one.")
            return found
    else:
        found.key = found.keys[-1]
    entries = whitelist.networks_for(viewer.db, viewer.company.id)
    found.whitelist_empty = not entries
    found.address = visitor_address(request)
    found.address_listed = bool(found.address) and whitelist.is_allowed(
        ipaddress.ip_address(found.address), entries)
    return found


def signed_links(request: Request, key: ApiKey, kind: str, number: str,
                 now: dt.datetime) -> dict[str, str]:
    """format → signed link to this invoice in that form (valid 15 minutes from ``now``)."""
    settings = settings_of(request)
    # The token signs the path as the server sees it (decoded); the href carries it quoted.
    path = f"/api/{CURRENT}/{ENDPOINTS[kind]}/{number}"
    quoted = f"/api/{CURRENT}/{ENDPOINTS[kind]}/{quote(number, safe='')}"
    found = {}
    for form in FORMATS:
        params = [("format", form)]
        token = links.sign_link(settings, key.digest, path, params, now=now)
        found[form] = f"{quoted}?format={form}&{links.TOKEN_PARAM}={token}"
    return found
