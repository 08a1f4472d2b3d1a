"""Creating companies' users. The first user of a company is its Account Administrator."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_api.access.models import Company, User
from billing_api.access.passwords import hash_password
from billing_api.errors import Conflict, InvalidInput


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or any(c.isspace() for c in value):
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    return value


def add_user(session: Session, company: Company, email: str, password: str,
             *, full_name: str = "") -> User:
    """Add a user; the company's first user becomes its Account Administrator (with API
    permission). Raises ``Conflict`` when the e-mail is taken, ``InvalidInput`` for a bad one."""
    address = normalise_email(email)
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict(f"a user with e-mail {address} exists already", code="user_exists")
    is_first = not session.scalar(
        select(func.count()).select_from(User).where(User.company_id == company.id)
    )
    user = User(company_id=company.id, email=address, full_name=full_name,
                password_hash=hash_password(password), is_account_admin=is_first,
                can_use_api=is_first)
    session.add(user)
    session.flush()
    return user
