"""Scoping queries to the caller's partner and environment, by construction.

``scoped(stmt, caller)`` finds every table in the statement that has ``partner_id`` and
``environment`` columns (customers, subscriptions, invoices, price lines, billing runs) and
adds both filters for each one, aliases included. A statement that touches no such table is
refused, so an endpoint cannot run an unscoped query by forgetting a filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, FromClause, Join, Select, and_

S = TypeVar("S", bound=Select[Any])


class Caller(Protocol):
    @property
    def company_id(self) -> int: ...

    @property
    def environment(self) -> str: ...


def scoped(stmt: S, caller: Caller) -> S:
    """``stmt`` filtered to ``caller``'s partner and environment on every partner-owned table.
    Raises ``ValueError`` when it reads no partner-owned table."""
    conditions: list[ColumnElement[bool]] = []
    seen: set[int] = set()
    for table in _leaf_froms(stmt.get_final_froms()):
        columns = table.c
        if "partner_id" in columns and "environment" in columns and id(table) not in seen:
            seen.add(id(table))
            conditions.append(columns.partner_id == caller.company_id)
            conditions.append(columns.environment == caller.environment)
    if not conditions:
        raise ValueError("scoped() found no partner-owned table in the statement")
    return stmt.where(and_(*conditions))


def _leaf_froms(froms: Iterable[FromClause]) -> Iterator[FromClause]:
    # Only what the statement actually selects FROM: a Table inside an alias is not walked
    # into, since filtering the bare table would add a cartesian FROM.
    for item in froms:
        if isinstance(item, Join):
            yield from _leaf_froms((item.left, item.right))
        else:
            yield item
