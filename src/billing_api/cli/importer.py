"""``billing-api import``: load catalog, customers, subscriptions and usage from files."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from billing_api.cli.context import unit_of_work
from billing_api.importer import ImportRejected, ImportSummary, RowError, import_files


class CsvTable(StrEnum):
    """The tables a CSV file can hold (``importer.schema.CSV_TABLES``)."""

    PARTNERS = "partners"
    VENDORS = "vendors"
    RESOURCES = "resources"
    CUSTOMERS = "customers"
    USAGE = "usage"


class _RollBack(Exception):
    """Leaves the unit of work by an exception, so that its transaction is rolled back."""

    def __init__(self, errors: Sequence[RowError] = (), summary: ImportSummary | None = None,
                 more: int = 0):
        super().__init__("roll back")
        self.errors, self.summary, self.more = errors, summary, more


def import_command(
    files: Annotated[list[Path], typer.Argument(
        help="JSON or CSV files, imported together: rows may refer to rows of another file.",
        metavar="FILE...", show_default=False)],
    table: Annotated[CsvTable | None, typer.Option(
        help="The table every CSV file holds (default: recognised by the header).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check everything and report, then roll back.")] = False,
    manifest: Annotated[Path | None, typer.Option(
        help="A JSON file of row counts and SHA-256 digests the files must match "
        "(docs/import.md).", show_default=False)] = None,
) -> None:
    """Import FILE... in one transaction: every row, or on any error nothing at all.

    Each error is printed on stderr as FILE:ROW: FIELD: message and the command exits with
    status 1. The formats are described in docs/import.md.
    """
    summary: ImportSummary | None = None
    try:
        with unit_of_work(writer=True) as session, _ProgressBar() as progress:
            try:
                summary = import_files(session, files, table=table.value if table else None,
                                       manifest=manifest, progress=progress)
            except ImportRejected as exc:
                raise _RollBack(exc.errors, more=exc.more) from None
            if dry_run:
                raise _RollBack(summary=summary)
    except _RollBack as rollback:
        if rollback.summary is None:
            _reject(rollback.errors, rollback.more)
        summary = rollback.summary
    _report(summary, dry_run)


class _ProgressBar:
    """A rich progress bar on stderr, per phase (catalog, customers, …) over the bytes read;
    shown only when stderr is a terminal, and gone when the import ends."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description:>13}"), BarColumn(), DownloadColumn(),
            TimeElapsedColumn(), console=self.console, transient=True,
            disable=not self.console.is_terminal)
        self.task: TaskID | None = None

    def __enter__(self) -> _ProgressBar:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def phase(self, name: str, total_bytes: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=self.bar.tasks[-1].total or 0)
        self.task = self.bar.add_task(name, total=max(total_bytes, 1))

    def read(self, done_bytes: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=done_bytes)


def _reject(errors: Sequence[RowError], more: int = 0) -> None:
    # Plain lines (no markup, no wrapping): editors and scripts parse FILE:ROW: FIELD: message.
    for error in errors:
        typer.echo(str(error), err=True)
    if more:
        typer.echo(f"and {more} more", err=True)
    count = len(errors) + more
    typer.echo(f"import rejected: {count} error{'s' if count != 1 else ''}, "
               "nothing was imported", err=True)
    raise typer.Exit(1)


def _report(summary: ImportSummary | None, dry_run: bool) -> None:
    assert summary is not None
    for line in summary.lines():
        typer.echo(line, err=True)
    if dry_run:
        typer.echo("dry run: everything checked, nothing was written", err=True)
    else:
        typer.echo(f"imported {', '.join(summary.files)}: {summary.created} rows created, "
                   f"{summary.updated} updated", err=True)
