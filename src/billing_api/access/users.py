"""Partner companies and their users. The first user of a company is its Account Administrator."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_api.access import audit, sessions
from billing_api.access.models import Company, User
from billing_api.access.passwords import check_new_password, hash_password, verify_password
from billing_api.errors import Conflict, InvalidInput, NotFound


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or any(c.isspace() for c in value):
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    return value


def add_user(session: Session, company: Company, email: str, password: str,
             *, full_name: str = "", must_change_password: bool = False) -> User:
    """Add a user; the company's first user becomes its Account Administrator (with API
    permission). ``must_change_password`` for a one-time password someone else saw: the portal
    then asks for a new one at first login. Raises ``Conflict`` when the e-mail is taken,
    ``InvalidInput`` for a bad one."""
    address = normalise_email(email)
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict(f"a user with e-mail {address} exists already", code="user_exists")
    is_first = not session.scalar(
        select(func.count()).select_from(User).where(User.company_id == company.id)
    )
    user = User(company_id=company.id, email=address, full_name=full_name,
                password_hash=hash_password(password), is_account_admin=is_first,
                can_use_api=is_first, must_change_password=must_change_password)
    session.add(user)
    session.flush()
    return user


def create_company(session: Session, name: str, admin_email: str, password: str, *,
                   must_change_password: bool = False) -> tuple[Company, User]:
    """A partner company with its Account Administrator (the first user). Raises ``Conflict``
    when the name or e-mail is taken, ``InvalidInput`` for an empty name or bad e-mail."""
    name = name.strip()
    if not name:
        raise InvalidInput("a company needs a name", field="name")
    if session.scalar(select(Company.id).where(Company.name == name)) is not None:
        raise Conflict(f"a company named {name!r} exists already", code="company_exists")
    company = Company(kind="partner", name=name, invoice_prefix=_invoice_prefix(session))
    session.add(company)
    session.flush()
    admin = add_user(session, company, admin_email, password,
                     must_change_password=must_change_password)
    return company, admin


def _invoice_prefix(session: Session) -> str:
    count = session.scalar(select(func.count()).select_from(Company)) or 0
    return f"P{count + 1}"


def find_company(session: Session, ref: str) -> Company:
    """A partner company by id or exact name. Raises ``NotFound``."""
    stmt = select(Company).where(Company.kind == "partner")
    by_name = session.scalars(stmt.where(Company.name == ref)).one_or_none()
    if by_name is not None:
        return by_name
    if ref.isdigit():
        by_id = session.scalars(stmt.where(Company.id == int(ref))).one_or_none()
        if by_id is not None:
            return by_id
    raise NotFound(f"no partner company has the id or name {ref!r}", code="company_not_found")


def list_partners(session: Session) -> list[Company]:
    return list(session.scalars(
        select(Company).where(Company.kind == "partner").order_by(Company.id)))


def find_user(session: Session, company: Company, email: str) -> User:
    """The company's user with this e-mail. Raises ``NotFound`` (also for another company's)."""
    user = session.scalars(select(User).where(User.email == normalise_email(email))).one_or_none()
    if user is None or user.company_id != company.id:
        raise NotFound(f"{company.name} has no user {email}", code="user_not_found")
    return user


def change_password(session: Session, user: User, current: str, new: str) -> None:
    """The user's own change: ``current`` must verify, ``new`` must pass
    ``passwords.check_new_password`` and differ from it. Ends every portal session of the user
    (the caller starts a fresh one for the browser that made the change). Raises
    ``InvalidInput`` naming the field (``current_password`` or ``new_password``)."""
    if not verify_password(user.password_hash, current):
        audit.record(session, audit.EventType.PASSWORD_CHANGE_REFUSED,
                     company_id=user.company_id, actor_user_id=user.id,
                     reason="wrong_current_password")
        raise InvalidInput("That is not your current password.", field="current_password")
    check_new_password(new, user.email)
    if new == current:
        raise InvalidInput("Choose a password different from the current one.",
                           field="new_password")
    _set_password(session, user, new, must_change=False)
    audit.record(session, audit.EventType.PASSWORD_CHANGED, company_id=user.company_id,
                 actor_user_id=user.id, detail="every other portal session ended")


def reset_password(session: Session, user: User, password: str, *, must_change: bool) -> None:
    """The operator sets a password (``billing-api users reset-password``); every portal session
    of the user ends. ``must_change`` when the password was printed for someone to pass on."""
    _set_password(session, user, password, must_change=must_change)
    audit.record(session, audit.EventType.PASSWORD_RESET, company_id=user.company_id,
                 detail=f"for {user.email}; every portal session ended"
                        + ("; one-time, to be changed at the next login" if must_change else ""))


def _set_password(session: Session, user: User, password: str, *, must_change: bool) -> None:
    user.password_hash = hash_password(password)
    user.must_change_password = must_change
    session.flush()
    sessions.end_all(session, user.id)
