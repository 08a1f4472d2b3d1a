"""``billing-api db``: schema migrations."""

from __future__ import annotations

import typer

from billing_api import migrate
from billing_api.cli.context import engine, err, schema_revision, settings

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
