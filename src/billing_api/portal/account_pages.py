"""Profile → Password and Sessions: change one's own password, see and end one's sessions.

The rules are the ``access`` services': ``users.change_password`` (current password, length,
not the e-mail; it ends every session of the user) and ``access.sessions``. A password change
then starts a new session for this browser, so the person stays logged in here while every
other browser — and any copy of this browser's old cookie — is signed out.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from billing_api.access import audit, sessions, users
from billing_api.access.errors import RateLimited
from billing_api.access.passwords import MIN_LENGTH
from billing_api.access.ratelimit import SlidingWindowLimiter
from billing_api.errors import InvalidInput
from billing_api.portal.web import (
    PASSWORD_PAGE,
    PortalRoute,
    Viewer,
    ViewerDep,
    begin_login,
    end_login,
    redirect,
    render,
    settings_of,
    visitor_address,
)

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

SESSIONS = "/portal/profile/sessions"
# Guessing the current password through this form is limited like logins are.
CHANGE_ATTEMPTS = 5
CHANGE_WINDOW = 15 * 60.0


def _password_page(request: Request, viewer: Viewer, status: int = 200,
                   errors: dict[str, str] | None = None) -> Response:
    return render(request, "password.html", status, title="Change password", tab="password",
                  forced=viewer.user.must_change_password, errors=errors or {},
                  min_length=MIN_LENGTH)


@router.get(PASSWORD_PAGE)
def password_page(request: Request, viewer: ViewerDep) -> Response:
    return _password_page(request, viewer)


@router.post(PASSWORD_PAGE)
def change_password(request: Request, viewer: ViewerDep,
                    current_password: Annotated[str, Form()] = "",
                    new_password: Annotated[str, Form()] = "",
                    new_password_again: Annotated[str, Form()] = "") -> Response:
    limiter: SlidingWindowLimiter = request.app.state.portal_password_limiter
    # Counted before the password is verified, so parallel guesses cannot exceed the limit.
    decision = limiter.hit(f"password:{viewer.user.id}", CHANGE_ATTEMPTS, CHANGE_WINDOW)
    if not decision.allowed:
        raise RateLimited("Too many password changes tried: wait a few minutes.",
                          retry_after=decision.retry_after)
    try:
        if not current_password:
            raise InvalidInput("Enter your current password.", field="current_password")
        if new_password != new_password_again:
            raise InvalidInput("The two new passwords differ.", field="new_password_again")
        users.change_password(viewer.db, viewer.user, current_password, new_password)
    except InvalidInput as exc:
        return _password_page(request, viewer, 400, {exc.field or "new_password": exc.message})
    begin_login(request, viewer.user)
    return redirect(request, "/portal/profile", "Your password is changed. Every other "
                    "session of yours is signed out.")


@router.get(SESSIONS)
def sessions_page(request: Request, viewer: ViewerDep) -> Response:
    settings = settings_of(request)
    rows = sessions.list_active(viewer.db, settings, viewer.user.id)
    return render(request, "sessions.html", title="Sessions", tab="sessions", rows=rows,
                  current=viewer.session.record_id,
                  idle_minutes=max(1, settings.portal_session_idle_seconds // 60),
                  max_hours=round(settings.portal_session_max_seconds / 3600, 1))


@router.post(SESSIONS + "/{session_id}/end")
def end_session(request: Request, viewer: ViewerDep, session_id: int) -> Response:
    """End one of one's own sessions (another's id: the 404 page, audited)."""
    record = sessions.own_session(viewer.db, viewer.user.id, session_id)
    sessions.end(viewer.db, record.id)
    if record.id == viewer.session.record_id:
        end_login(request, "You are logged out.")
        return redirect(request, "/")
    return redirect(request, SESSIONS, "That session is signed out.")


@router.post(SESSIONS + "/end-all")
def sign_out_everywhere(request: Request, viewer: ViewerDep) -> Response:
    """End every session of the viewer's, this one included."""
    count = sessions.end_all(viewer.db, viewer.user.id)
    audit.record(viewer.db, audit.EventType.SESSIONS_ENDED, company_id=viewer.user.company_id,
                 actor_user_id=viewer.user.id, client_address=visitor_address(request),
                 detail=f"signed out everywhere: {count} session(s)")
    end_login(request, f"You are signed out everywhere ({count} session"
                       f"{'' if count == 1 else 's'}).")
    return redirect(request, "/")
