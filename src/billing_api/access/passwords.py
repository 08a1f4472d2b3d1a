"""Password hashing with argon2id (memory-hard); ~85 ms a verify, for logins only."""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from billing_api.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 256  # enough for any passphrase; a megabyte "password" is not one

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A real hash to verify against when the e-mail is unknown, so that a login takes as long
    whether or not the account exists. Made on first use, not at import: one argon2 hash
    takes 64 MiB and 0.1 s, which every process (API workers, CLI commands) paid at start."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; always spends one argon2 verify."""
    try:
        matches = _hasher.verify(password_hash or _dummy_hash(), password)
        return matches and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A one-time password for a new user: 16 URL-safe characters (~96 bits)."""
    return secrets.token_urlsafe(12)


def check_new_password(password: str, email: str) -> None:
    """Refuse a password a person should not choose. Raises ``InvalidInput`` (field
    ``new_password``): shorter than 12 characters, longer than 256, or holding the e-mail
    address or its name part (what a guesser tries first)."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"Use at least {MIN_LENGTH} characters.", field="new_password")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"Use at most {MAX_LENGTH} characters.", field="new_password")
    lowered = password.casefold()
    local = email.casefold().partition("@")[0]
    if email.casefold() in lowered or (len(local) >= 3 and local in lowered):
        raise InvalidInput("Do not use your e-mail address (or its name part) in your "
                           "password.", field="new_password")
