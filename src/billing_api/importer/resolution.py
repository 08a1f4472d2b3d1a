"""What the checks hand the writer: the plans as they will be, and what exists already."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing_api.customers.models import UsageRecord
from billing_api.importer.database import Existing
from billing_api.importer.errors import Source
from billing_api.importer.reader import Parsed
from billing_api.importer.schema import KEYS, PeriodKey, UsageRow


@dataclass
class PlanView:
    """A plan as it will be after the import: its periods, and its rates' rate period skus."""

    periods: set[PeriodKey] = field(default_factory=set)
    rates: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class UsageTarget:
    parsed: Parsed[UsageRow]
    subscription_id: int  # in the database: subscriptions are written before usage is read
    rate_id: int | None = None  # the resource rate
    existing: UsageRecord | None = None  # the record to update, if there is one


@dataclass
class Resolution:
    existing: Existing
    # The chunk's subscription rows by index: the plan period of each, the id of an identical
    # existing subscription.
    periods: dict[int, PeriodKey] = field(default_factory=dict)
    unchanged_subscriptions: dict[int, int] = field(default_factory=dict)
    usage: list[UsageTarget] = field(default_factory=list)
    unchanged_usage: list[tuple[int, Source]] = field(default_factory=list)  # (id, row)


def row_key(section: str, row: Any) -> tuple[str, ...]:
    """A row's natural key as text, comparable with the keys of rows that failed to parse."""
    values = (getattr(row, name) for name in KEYS[section])
    return tuple("" if v is None else str(v) for v in values)
