"""The two data environments a key can see; every partner-owned row belongs to exactly one."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column


class Environment(StrEnum):
    PRODUCTION = "production"
    SANDBOX = "sandbox"


def environment_column() -> Mapped[str]:
    return mapped_column(String(10), nullable=False)


def environment_check(column: str = "environment") -> CheckConstraint:
    values = ", ".join(f"'{e.value}'" for e in Environment)
    return CheckConstraint(f"{column} IN ({values})", name="environment")
