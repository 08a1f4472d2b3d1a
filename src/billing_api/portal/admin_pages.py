"""Users (Account Administrator only) and Activity (the company's audit events).

Who may do what is decided by ``access.permissions``: each route asks it first
(``require_admin``), so a user who types an administrator's URL gets the 403 page and an
audit row, exactly as one who posts the form directly.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from billing_api.access import audit, permissions, users
from billing_api.access.models import User
from billing_api.access.passwords import generate_password
from billing_api.db import utcnow
from billing_api.errors import Conflict, InvalidInput, NotFound
from billing_api.portal.session import NONCE_FIELD
from billing_api.portal.web import (
    PortalRoute,
    Viewer,
    ViewerDep,
    claim_nonce,
    redirect,
    release_nonce,
    render,
)

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

USERS = "/portal/users"
ACTIVITY = "/portal/activity"
ACTIVITY_DAYS = 90
ACTIVITY_ROWS = 200
NAME_MAX = 200


def _users_page(request: Request, viewer: Viewer, status: int = 200,
                errors: dict[str, str] | None = None,
                values: dict[str, str] | None = None) -> Response:
    return render(request, "users.html", status, title="Users", users=viewer.company.users,
                  errors=errors or {}, values=values or {})


@router.get(USERS)
def users_page(request: Request, viewer: ViewerDep) -> Response:
    permissions.require_admin(viewer.company, viewer.user)
    return _users_page(request, viewer)


@router.post(USERS)
def add_user(request: Request, viewer: ViewerDep, email: Annotated[str, Form()] = "",
             full_name: Annotated[str, Form()] = "",
             form_nonce: Annotated[str, Form(alias=NONCE_FIELD)] = "") -> Response:
    """A new user with a one-time password, shown once on the answer to this POST."""
    permissions.require_admin(viewer.company, viewer.user)
    if not claim_nonce(request, form_nonce):
        return render(request, "user_gone.html", 409, title="Password no longer shown")
    password = generate_password()
    try:
        if not email.strip():
            raise InvalidInput("Enter the new user's e-mail address.", field="email")
        if len(full_name.strip()) > NAME_MAX:
            raise InvalidInput(f"Keep the name under {NAME_MAX} characters.", field="full_name")
        # The administrator saw it: the new user must choose their own at first login.
        user = users.add_user(viewer.db, viewer.company, email, password,
                              full_name=full_name.strip(), must_change_password=True)
    except (InvalidInput, Conflict) as exc:
        release_nonce(request, form_nonce)
        return _users_page(request, viewer, 400, {exc.field or "email": exc.message},
                           {"email": email, "full_name": full_name})
    return render(request, "user_created.html", title="New user", user=user, password=password)


def _own_user(viewer: Viewer, user_id: int) -> User:
    user = viewer.db.get(User, user_id)
    if user is None or user.company_id != viewer.company.id:
        raise NotFound(f"{viewer.company.name} has no user {user_id}.", code="user_not_found")
    return user


@router.post(USERS + "/{user_id}/api-permission")
def set_permission(request: Request, viewer: ViewerDep, user_id: int,
                   granted: Annotated[str, Form()] = "") -> Response:
    permissions.require_admin(viewer.company, viewer.user)
    user = _own_user(viewer, user_id)
    allow = granted == "1"
    permissions.set_api_permission(viewer.db, viewer.company, viewer.user, user, allow)
    return redirect(request, USERS, f"API permission {'granted to' if allow else 'withdrawn from'}"
                                    f" {user.email}.")


@router.get(USERS + "/{user_id}/deactivate")
def confirm_deactivate(request: Request, viewer: ViewerDep, user_id: int) -> Response:
    permissions.require_admin(viewer.company, viewer.user)
    user = _own_user(viewer, user_id)
    return render(request, "user_deactivate.html", title=f"Deactivate {user.email}", user=user)


@router.post(USERS + "/{user_id}/deactivate")
def deactivate(request: Request, viewer: ViewerDep, user_id: int) -> Response:
    permissions.require_admin(viewer.company, viewer.user)
    user = _own_user(viewer, user_id)
    revoked = permissions.deactivate_user(viewer.db, viewer.company, user, viewer.user)
    return redirect(request, USERS, f"{user.email} is deactivated and signed out everywhere; "
                                    f"{len(revoked)} API key(s) they created are revoked.")


@router.get(ACTIVITY)
def activity(request: Request, viewer: ViewerDep) -> Response:
    """The last 90 days of the company's security events, newest first."""
    permissions.require_api_permission(viewer.company, viewer.user)
    since = utcnow() - dt.timedelta(days=ACTIVITY_DAYS)
    events = audit.list_events(viewer.db, viewer.company.id, since=since)
    return render(request, "activity.html", title="Activity", events=events[:ACTIVITY_ROWS],
                  more=len(events) > ACTIVITY_ROWS, days=ACTIVITY_DAYS)
