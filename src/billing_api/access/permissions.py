"""Who may do what with the API: enabling it, granting permission, deactivating users.

``actor`` None means the distributor's operator working through the CLI, who may manage keys
and the whitelist on a partner's behalf. Switching a partner's API on or off is the partner's
own Account Administrator's decision (contract, access rule 1): ``set_api_enabled`` needs them
(the CLI proves it with their password). When the distributor must act without them (a
compromised partner, a contract ended), ``distributor_set_api_enabled`` does it under the
distributor's own name with a stated reason, so the audit never shows it as the partner's.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_api.access import audit, sessions
from billing_api.access.errors import NoApiPermission, NotAccountAdministrator
from billing_api.access.models import ApiKey, Company, User
from billing_api.db import utcnow
from billing_api.errors import Conflict, InvalidInput

REASON_MAX = 300  # it goes into the audit row's detail (400 characters) with a prefix


def require_admin(company: Company, user: User | None) -> User:
    """``user`` when it is the company's active Account Administrator; else raises
    ``NotAccountAdministrator``."""
    if user is None or user.company_id != company.id or not user.is_account_admin \
            or not user.is_active:
        who = user.email if user is not None else "the operator"
        raise NotAccountAdministrator(
            f"{who} is not the Account Administrator of {company.name}: only they can do this")
    return user


def has_api_permission(user: User) -> bool:
    return user.is_active and (user.is_account_admin or user.can_use_api)


def require_api_permission(company: Company, user: User | None) -> None:
    """Pass for the operator (None) and for the company's users with API permission."""
    if user is None:
        return
    if user.company_id != company.id or not has_api_permission(user):
        raise NoApiPermission(
            f"{user.email} has no API permission for {company.name}: "
            "the Account Administrator can grant it")


def set_api_enabled(session: Session, company: Company, actor: User | None, enabled: bool,
                    *, client_address: str = "") -> None:
    """Switch the company's API on or off. Raises ``NotAccountAdministrator``."""
    admin = require_admin(company, actor)
    if company.kind != "partner":
        raise InvalidInput(f"{company.name} is not a partner company", field="company")
    company.api_enabled = enabled
    company.api_enabled_at = utcnow() if enabled else None
    session.flush()
    event = audit.EventType.API_ENABLED if enabled else audit.EventType.API_DISABLED
    audit.record(session, event, company_id=company.id, actor_user_id=admin.id,
                 client_address=client_address)


def distributor_set_api_enabled(session: Session, company: Company, enabled: bool,
                                reason: str) -> None:
    """The distributor's operator switches the company's API without its Administrator: audited
    as ``api_enabled_by_distributor`` / ``api_disabled_by_distributor`` with no user as actor
    and ``reason`` as the detail. Raises ``InvalidInput`` (no reason, not a partner)."""
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("say why the distributor switches the API without the Account "
                           "Administrator: --reason is required", field="reason")
    if len(reason) > REASON_MAX:
        raise InvalidInput(f"the reason is longer than {REASON_MAX} characters", field="reason")
    if company.kind != "partner":
        raise InvalidInput(f"{company.name} is not a partner company", field="company")
    company.api_enabled = enabled
    company.api_enabled_at = utcnow() if enabled else None
    session.flush()
    event = (audit.EventType.API_ENABLED_BY_DISTRIBUTOR if enabled
             else audit.EventType.API_DISABLED_BY_DISTRIBUTOR)
    audit.record(session, event, company_id=company.id, actor_user_id=None,
                 detail=f"by the distributor's operator: {reason}")


def set_api_permission(session: Session, company: Company, actor: User | None, user: User,
                       granted: bool) -> None:
    """Grant or withdraw ``user``'s API permission. Raises ``NotAccountAdministrator``,
    ``InvalidInput`` (user of another company, or withdrawing an administrator's own)."""
    admin = require_admin(company, actor)
    if user.company_id != company.id:
        raise InvalidInput(f"{user.email} is not a user of {company.name}", field="email")
    if not granted and user.is_account_admin:
        raise InvalidInput("the Account Administrator always has API permission", field="email")
    user.can_use_api = granted
    session.flush()
    event = audit.EventType.PERMISSION_GRANTED if granted else audit.EventType.PERMISSION_WITHDRAWN
    audit.record(session, event, company_id=company.id, actor_user_id=admin.id,
                 detail=user.email)


def deactivate_user(session: Session, company: Company, user: User,
                    actor: User | None = None) -> list[ApiKey]:
    """Deactivate ``user``, end every portal session of theirs and revoke the keys they
    created (a departing person's keys should not outlive their account). Returns the revoked
    keys. Raises ``Conflict`` for the last
    active Account Administrator: a company without one could never manage its API again."""
    if user.company_id != company.id:
        raise InvalidInput(f"{user.email} is not a user of {company.name}", field="email")
    if not user.is_active:
        raise Conflict(f"{user.email} is inactive already", code="user_inactive")
    if user.is_account_admin:
        admins = session.scalar(select(func.count()).select_from(User).where(
            User.company_id == company.id, User.is_account_admin, User.is_active))
        if (admins or 0) <= 1:
            raise Conflict(f"{user.email} is the last Account Administrator of {company.name}",
                           code="last_account_admin")
    user.is_active = False
    user.can_use_api = False
    sessions.end_all(session, user.id)
    keys = list(session.scalars(select(ApiKey).where(
        ApiKey.created_by_user_id == user.id, ApiKey.revoked_at.is_(None))))
    now = utcnow()
    for key in keys:
        key.revoked_at = now
    session.flush()
    actor_id = actor.id if actor else None
    audit.record(session, audit.EventType.USER_DEACTIVATED, company_id=company.id,
                 actor_user_id=actor_id, detail=user.email)
    for key in keys:
        audit.record(session, audit.EventType.KEY_REVOKED, company_id=company.id,
                     actor_user_id=actor_id, key_id=key.id, key_prefix=key.display_prefix,
                     reason="user_deactivated")
    return keys
