"""``billing-api``: the operator's command line. One module per command group."""

from __future__ import annotations

import typer

from billing_api.cli import bill, db, demo, serve

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(db.app, name="db")
app.command("bill")(bill.bill)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)


def main() -> None:
    app()
