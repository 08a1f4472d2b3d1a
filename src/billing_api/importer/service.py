"""``import_file``: load catalog, customers, subscriptions and usage from JSON or CSV files.

Every row of every file is validated first and every problem collected; only an input without
any is written. The caller's session owns the transaction (nothing here commits), so on
``ImportRejected`` the caller rolls back and nothing at all is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing_api.importer.checks import check
from billing_api.importer.errors import WHOLE_ROW, ImportRejected, Problems, RowError
from billing_api.importer.reader import read_files
from billing_api.importer.writer import Counts, write

# Tables in the order the summary lists them.
TABLES = ("companies", "vendors", "plan_categories", "resources", "service_plans",
          "plan_periods", "resource_rates", "rate_periods", "customers", "subscriptions",
          "subscription_resources", "subscription_attributes", "usage_records")


@dataclass
class ImportSummary:
    files: list[str]
    tables: dict[str, Counts] = field(default_factory=dict)

    @property
    def created(self) -> int:
        return sum(c.created for c in self.tables.values())

    @property
    def updated(self) -> int:
        return sum(c.updated for c in self.tables.values())

    def lines(self) -> list[str]:
        """One line per table the import touched: ``customers: 3 created, 1 updated, …``."""
        return [f"{name}: {c.created} created, {c.updated} updated, {c.unchanged} unchanged"
                for name, c in self.tables.items()]


def import_file(session: Session, path: Path, *, table: str | None = None) -> ImportSummary:
    """Import one JSON or CSV file; see ``import_files``."""
    return import_files(session, [path], table=table)


def import_files(session: Session, paths: Sequence[Path], *,
                 table: str | None = None) -> ImportSummary:
    """Validate the files as one input (rows may refer to rows of another file), then write.

    ``table`` names the table of every CSV file (default: recognised by its header). Returns
    the counts per table. Raises ``ImportRejected`` with every error when there is any; the
    session may then hold a failed transaction, which the caller must roll back.
    """
    problems = Problems()
    batch = read_files(paths, table, problems)
    resolution = check(session, batch, problems)
    problems.raise_if_any()
    try:
        counts = write(session, batch, resolution)
    except IntegrityError as exc:
        # Only a concurrent writer can get here: every constraint was checked above.
        raise ImportRejected([RowError(
            str(paths[0]) if paths else "-", ".", WHOLE_ROW,
            f"the database refused the import (changed by someone else meanwhile?): "
            f"{str(exc.orig).splitlines()[0]}")]) from exc
    ordered = {name: counts[name] for name in TABLES
               if name in counts and (counts[name].created or counts[name].updated
                                      or counts[name].unchanged)}
    return ImportSummary([str(p) for p in paths], ordered)
