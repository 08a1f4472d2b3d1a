"""Who may sign in through the distributor's identity provider (OpenID Connect).

The provider proves an identity (its ``sub``, e-mail, the partner's company id); this module
decides which portal user, if any, that is. It never creates an account and never changes a
role: the Account Administrator stays whoever the portal says, whatever the provider claims.

* A user already linked to the ``sub`` is that user.
* Otherwise the provider's **verified** e-mail names a user, who is then pinned to the ``sub``
  (``oidc_subject``): from then on only that identity signs in as them, whatever e-mail it
  shows later.
* Either way the company claim must name the user's own company, and the user must be active
  in a partner company. Anything else raises ``SsoRefused`` with a reason the caller audits.

The protocol itself (discovery, PKCE, the ID token's signature and claims) is
``portal/sso_client.py``'s, with Authlib.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing_api.access import audit
from billing_api.access.models import Company, User, UserSession
from billing_api.db import utcnow
from billing_api.errors import Conflict, InvalidInput, PermissionDenied

SUBJECT_MAX = 255


class SsoRefused(PermissionDenied):
    """A sign-in through the provider that does not lead to a portal session. ``code`` is the
    audited reason; ``company_id`` the company the attempt concerns, when one is known."""

    code = "sso_refused"

    def __init__(self, reason: str, message: str, *, company_id: int | None = None,
                 detail: str = "") -> None:
        super().__init__(message)
        self.code = reason
        self.company_id = company_id
        self.detail = detail


@dataclass(frozen=True)
class Identity:
    """What the provider's verified ID token says about the person."""

    subject: str
    email: str
    email_verified: bool
    company: str  # the company claim's value as text; "" when the claim is missing

    @classmethod
    def from_claims(cls, claims: Mapping[str, object], company_claim: str) -> Identity:
        company = claims.get(company_claim)
        return cls(subject=str(claims.get("sub") or ""),
                   email=str(claims.get("email") or "").strip().lower(),
                   email_verified=claims.get("email_verified") is True,
                   company="" if company is None else str(company).strip())

    def describe(self) -> str:
        return f"sub {self.subject[:80]}, e-mail {self.email[:120] or '-'}, " \
               f"company claim {self.company[:40] or '-'}"


UNKNOWN = ("unknown_identity", "Your account on the platform is not linked to a portal user. "
           "Ask your Account Administrator to add you to the portal with the e-mail address "
           "you use on the platform.")


def resolve(session: Session, identity: Identity) -> User:
    """The portal user this identity signs in as; pins the ``sub`` to a user found by verified
    e-mail. Raises ``SsoRefused`` (reasons ``unknown_identity``, ``company_claim_missing``,
    ``company_mismatch``, ``linked_to_other_identity``, ``user_inactive``)."""
    if not identity.subject or len(identity.subject) > SUBJECT_MAX:
        raise SsoRefused(*UNKNOWN, detail=identity.describe())
    user = session.scalars(select(User).where(User.oidc_subject == identity.subject)
                           ).one_or_none()
    pin = False
    if user is None:
        if not identity.email or not identity.email_verified:
            raise SsoRefused(*UNKNOWN, company_id=_claimed_company(session, identity),
                             detail=identity.describe() + " (no verified e-mail)")
        user = session.scalars(select(User).where(User.email == identity.email)).one_or_none()
        if user is None:
            raise SsoRefused(*UNKNOWN, company_id=_claimed_company(session, identity),
                             detail=identity.describe())
        if user.oidc_subject is not None:
            raise SsoRefused("linked_to_other_identity",
                             f"{user.email} is linked to another account on the platform.",
                             company_id=user.company_id, detail=identity.describe())
        pin = True
    company = session.get(Company, user.company_id)
    if company is None or company.kind != "partner":
        raise SsoRefused(*UNKNOWN, detail=identity.describe())
    if not identity.company:
        raise SsoRefused("company_claim_missing", "The platform did not say which partner "
                         "company you belong to, so the portal cannot let you in.",
                         company_id=company.id, detail=identity.describe())
    if identity.company != str(company.id):
        raise SsoRefused("company_mismatch", "The platform signed you in for another partner "
                         "company than the one your portal account belongs to.",
                         company_id=company.id, detail=identity.describe())
    if not user.is_active:
        raise SsoRefused("user_inactive", "Your portal account is deactivated.",
                         company_id=company.id, detail=identity.describe())
    if pin:
        _pin(session, user, identity.subject, detail="matched by verified e-mail at sign-in")
    return user


def _claimed_company(session: Session, identity: Identity) -> int | None:
    """The partner the company claim names, for the audit row (None: none by that id)."""
    if not identity.company.isdigit():
        return None
    company = session.get(Company, int(identity.company))
    return company.id if company is not None and company.kind == "partner" else None


def _pin(session: Session, user: User, subject: str, *, detail: str) -> None:
    user.oidc_subject = subject
    user.oidc_linked_at = utcnow()
    session.flush()
    audit.record(session, audit.EventType.SSO_LINKED, company_id=user.company_id,
                 detail=f"{user.email} ↔ sub {subject[:80]}: {detail}")


def link(session: Session, user: User, subject: str) -> None:
    """The operator pins ``subject`` to ``user``. Raises ``InvalidInput`` (empty or too long),
    ``Conflict`` when another user has it."""
    subject = subject.strip()
    if not subject or len(subject) > SUBJECT_MAX:
        raise InvalidInput(f"a provider subject has 1 to {SUBJECT_MAX} characters",
                           field="subject")
    holder = session.scalars(select(User).where(User.oidc_subject == subject)).one_or_none()
    if holder is not None and holder.id != user.id:
        raise Conflict(f"sub {subject} is linked to {holder.email} already: unlink it first",
                       code="subject_taken")
    _pin(session, user, subject, detail="by the operator")


def unlink(session: Session, user: User) -> bool:
    """Take the provider identity off ``user`` and end the portal sessions it started; False
    when there was none. The next sign-in is matched by verified e-mail again."""
    if user.oidc_subject is None:
        return False
    subject = user.oidc_subject
    user.oidc_subject = None
    user.oidc_linked_at = None
    for record in session.scalars(select(UserSession).where(
            UserSession.user_id == user.id, UserSession.signed_in_with == "oidc")):
        session.delete(record)
    session.flush()
    audit.record(session, audit.EventType.SSO_UNLINKED, company_id=user.company_id,
                 detail=f"{user.email} ↔ sub {subject[:80]}: by the operator; its sessions "
                        "ended")
    return True


@dataclass(frozen=True)
class LinkedUser:
    company: str
    email: str
    subject: str
    linked_at: dt.datetime | None
    is_active: bool


def linked_users(session: Session, company: Company | None = None) -> list[LinkedUser]:
    """Users with a provider identity, by company and e-mail."""
    stmt = (select(Company.name, User.email, User.oidc_subject, User.oidc_linked_at,
                   User.is_active).join(Company, Company.id == User.company_id)
            .where(User.oidc_subject.is_not(None)).order_by(Company.name, User.email))
    if company is not None:
        stmt = stmt.where(User.company_id == company.id)
    return [LinkedUser(name, email, subject or "", linked_at, active)
            for name, email, subject, linked_at, active in session.execute(stmt)]
