"""``import_file``: load catalog, customers, subscriptions and usage from JSON or CSV files.

Every row of every file is checked and every problem collected (the first hundred listed, the
rest counted); rows are written as they are checked, in chunks, inside the caller's one
transaction. The caller's session owns the transaction (nothing here commits), so on
``ImportRejected`` the caller rolls back and nothing at all is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing_api.importer.checks import Checker
from billing_api.importer.errors import WHOLE_ROW, ImportRejected, Problems, RowError
from billing_api.importer.manifest import check_manifest, read_manifest
from billing_api.importer.reader import (
    STREAMED,
    Batch,
    InputFile,
    catalog_rows,
    chunks,
    open_files,
    reads_catalog,
)
from billing_api.importer.writer import Counts, Writer
from billing_api.sync.state import note_content_change

# Rows of a streamed section checked and written at a time: large enough for few round trips,
# small enough that a chunk's rows and the database rows they meet stay a few MiB.
CHUNK_ROWS = 2000
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


class Progress(Protocol):
    """What an import reports while it reads: a phase (``customers``…) and bytes read."""

    def phase(self, name: str, total_bytes: int) -> None: ...

    def read(self, done_bytes: int) -> None: ...


def import_file(session: Session, path: Path, *, table: str | None = None,
                manifest: Path | None = None) -> ImportSummary:
    """Import one JSON or CSV file; see ``import_files``."""
    return import_files(session, [path], table=table, manifest=manifest)


def import_files(session: Session, paths: Sequence[Path], *, table: str | None = None,
                 manifest: Path | None = None, chunk_size: int = CHUNK_ROWS,
                 progress: Progress | None = None) -> ImportSummary:
    """Check the files as one input (rows may refer to rows of another file) and write them.

    The files are streamed: the catalog is read whole, then customers, subscriptions and usage
    ``chunk_size`` rows at a time, each chunk checked and written before the next is read, so
    memory does not grow with the files. Valid rows are written even after an error (so that
    rows referring to them are checked properly); then, if there was any error, this raises
    ``ImportRejected`` and the caller, who owns the transaction, must roll it back.

    ``table`` names the table of every CSV file (default: recognised by its header);
    ``manifest`` is a file of row counts and SHA-256 digests the files must match
    (docs/import.md). Returns the counts per table.
    """
    problems = Problems()
    files = open_files(paths, table, problems)
    expected = read_manifest(manifest, files, problems) if manifest is not None else None
    catalog = Batch()
    reading = _Reading(files, progress)
    reading.phase("catalog", [f for f in files if reads_catalog(f)])
    catalog_rows(files, catalog)
    try:
        checker = Checker(session, catalog, problems)
        checker.check_catalog()
        writer = Writer(session, checker)
        writer.write_catalog(catalog)
        steps = ((checker.customers, writer.write_customers),
                 (checker.subscriptions, writer.write_subscriptions),
                 (checker.usage, writer.write_usage))
        for section, (check, write) in zip(STREAMED, steps, strict=True):
            reading.phase(section, [f for f in files if section in f.sections])
            for count, chunk in enumerate(chunks(files, section, chunk_size, catalog.broken),
                                          start=1):
                write(chunk, check(chunk))
                if count & (count - 1) == 0:  # after chunk 1, 2, 4, 8, …
                    _analyze(session, section)
        session.flush()
    except IntegrityError as exc:
        problems.raise_if_any()  # an earlier error explains it
        # Only a concurrent writer can get here: every constraint was checked.
        raise ImportRejected([RowError(
            str(paths[0]) if paths else "-", ".", WHOLE_ROW,
            f"the database refused the import (changed by someone else meanwhile?): "
            f"{str(exc.orig).splitlines()[0]}")]) from exc
    if expected is not None:
        check_manifest(expected, files, problems)
    problems.raise_if_any()
    counts = writer.counts
    if any(c.created or c.updated for name, c in counts.items() if name != "usage_records"):
        # Documents read these rows live (names, plans, parties): their ETags must change.
        note_content_change(session)
    ordered = {name: counts[name] for name in TABLES
               if name in counts and (counts[name].created or counts[name].updated
                                      or counts[name].unchanged)}
    return ImportSummary([str(p) for p in paths], ordered)


_ANALYZED = {"customers": "customers",
             "subscriptions": "subscriptions, subscription_resources, subscription_attributes",
             "usage": "usage_records"}


def _analyze(session: Session, section: str) -> None:
    """On PostgreSQL, refresh the planner's statistics of the tables a phase writes: the
    rows are new in this very transaction, which autovacuum cannot see, and with statistics
    of an empty table the look-ups of later chunks scan the whole growing table."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {_ANALYZED[section]}"))


class _Reading:
    """Feeds ``Progress``: bytes read in this phase over the sizes of the files it reads."""

    def __init__(self, files: list[InputFile], progress: Progress | None) -> None:
        self.progress = progress
        self.done = 0  # bytes of the phase's files read completely
        self.current: InputFile | None = None
        for file in files:
            file.on_read = self.read

    def phase(self, name: str, files: list[InputFile]) -> None:
        self.done, self.current = 0, None
        if self.progress is not None and files:
            self.progress.phase(name, sum(f.size for f in files))

    def read(self, file: InputFile) -> None:
        if self.current is not file:
            if self.current is not None:
                self.done += self.current.size
            self.current = file
        if self.progress is not None:
            self.progress.read(self.done + file.position)
