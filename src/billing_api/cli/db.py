"""``billing-api db``: schema migrations and the restore check."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from billing_api import migrate
from billing_api.cli.context import engine, err, fail, schema_revision, settings
from billing_api.ops import dbcheck

app = typer.Typer(no_args_is_help=True, help="Database schema commands.")


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    schema_revision()  # an unreachable database: one line, not a traceback
    migrate.upgrade(engine(), revision)
    err.print(
        f"database at revision {migrate.current_revision(engine())} "
        f"({engine().url.render_as_string(hide_password=True)})"
    )


@app.command("current")
def current() -> None:
    """Print the database's current revision."""
    print(schema_revision() or "empty")
    _ = settings


@app.command("check")
def check() -> None:
    """Check the database (e.g. a restored backup): integrity, schema revision, complete
    billing runs, gap-free invoice numbers; print each table's row count.

    Read-only. Prints TABLE<TAB>ROWS, then CHECK<TAB>ok|problem; exit status 1 on a problem.
    Point BILLING_API_DATABASE_URL at the copy to check it.
    """
    # Looked at before an engine exists: making one creates a missing SQLite file.
    url = make_url(settings().database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        fail(f"no SQLite database at {url.database!r}")
    try:
        report = dbcheck.check_database(engine())
    except DBAPIError as exc:  # not a database, damaged beyond reading, unreachable
        fail(f"cannot read the database: {str(exc.orig).splitlines()[0]}")
        raise
    for table, rows in report.counts.items():
        print(f"{table}\t{rows}")
    for name, result in report.results:
        print(f"{name}\t{result}")
    if not report.ok:
        fail("the database failed a check (see above)")
    err.print(f"database ok ({url.render_as_string(hide_password=True)})")
