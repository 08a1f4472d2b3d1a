"""Billing API → Webhooks (Account Administrator only): endpoints, the signing secret shown
once, the delivery log with "resend", and the notice of an endpoint disabled after failing.

As for API keys, the secret is rendered straight into the answer to the POST and the form
carries a one-time nonce: a reload shows "gone" and creates nothing. Every route asks
``permissions.require_admin`` first, so a user who types the URL gets the 403 page and an
audit row."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from billing_api.access import permissions
from billing_api.environments import Environment
from billing_api.errors import Conflict, InvalidInput
from billing_api.portal.session import NONCE_FIELD
from billing_api.portal.web import (
    ApiNotEnabled,
    PortalRoute,
    Viewer,
    ViewerDep,
    claim_nonce,
    redirect,
    release_nonce,
    render,
    settings_of,
)
from billing_api.webhooks import delivery, endpoints, outbox

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

WEBHOOKS = "/portal/billing-api/webhooks"
LOG_ROWS = 20


def _admin(viewer: Viewer) -> Viewer:
    """The Administrator first (anyone else: 403 and a ``not_account_admin`` audit row), then
    the API switched on, as on every Billing API page."""
    permissions.require_admin(viewer.company, viewer.user)
    if not viewer.company.api_enabled:
        raise ApiNotEnabled(f"The Billing API is not enabled for {viewer.company.name} yet: "
                            "enable it under Profile → Your APIs first.")
    return viewer


def _page(request: Request, viewer: Viewer, status: int = 200,
          errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None) -> Response:
    rows = [(state, outbox.delivery_log(viewer.db, state.endpoint, LOG_ROWS))
            for state in endpoints.list_endpoints(viewer.db, viewer.company)]
    return render(request, "webhooks.html", status, title="Webhooks", rows=rows,
                  errors=errors or {}, values=values or {"environment": "production"},
                  environments=[e.value for e in Environment])


@router.get(WEBHOOKS)
def webhooks_page(request: Request, viewer: ViewerDep) -> Response:
    return _page(request, _admin(viewer))


@router.post(WEBHOOKS)
def add(request: Request, viewer: ViewerDep, url: Annotated[str, Form()] = "",
        environment: Annotated[str, Form()] = "",
        form_nonce: Annotated[str, Form(alias=NONCE_FIELD)] = "") -> Response:
    _admin(viewer)
    if not claim_nonce(request, form_nonce):
        return render(request, "key_gone.html", 409, title="Secret no longer shown")
    try:
        endpoint, secret = endpoints.add_endpoint(
            viewer.db, settings_of(request), viewer.company, environment, url,
            actor=viewer.user, resolve=delivery.resolve)
    except (InvalidInput, Conflict) as exc:
        release_nonce(request, form_nonce)
        return _page(request, viewer, 400, {exc.field or "url": exc.message},
                     {"url": url, "environment": environment})
    return render(request, "webhook_created.html", title="Your new webhook",
                  endpoint=endpoint, secret=secret)


@router.post(WEBHOOKS + "/{endpoint_id}/remove")
def remove(request: Request, viewer: ViewerDep, endpoint_id: int) -> Response:
    _admin(viewer)
    endpoint = endpoints.own_endpoint(viewer.db, viewer.company, endpoint_id)
    url = endpoint.url
    endpoints.remove_endpoint(viewer.db, viewer.company, endpoint, actor=viewer.user)
    return redirect(request, WEBHOOKS, f"{url} no longer receives events.")


@router.post(WEBHOOKS + "/{endpoint_id}/enable")
def enable(request: Request, viewer: ViewerDep, endpoint_id: int) -> Response:
    _admin(viewer)
    endpoint = endpoints.own_endpoint(viewer.db, viewer.company, endpoint_id)
    endpoints.enable_endpoint(viewer.db, viewer.company, endpoint, actor=viewer.user)
    return redirect(request, WEBHOOKS, f"{endpoint.url} is enabled again: waiting events are "
                                       "sent now.")


@router.post(WEBHOOKS + "/messages/{msg_id}/resend")
def resend(request: Request, viewer: ViewerDep, msg_id: str) -> Response:
    _admin(viewer)
    message = outbox.own_message(viewer.db, viewer.company, msg_id)
    outbox.resend(viewer.db, viewer.company, message, actor=viewer.user)
    return redirect(request, WEBHOOKS, f"{msg_id} will be sent again in a moment.")
