"""``billing-api``: the operator's command line. One module per command group."""

from __future__ import annotations

import typer

from billing_api.cli import bill, customers, db, demo, importer, serve

from billing_api.cli import api_access, audit, companies, keys, users, whitelist  # isort: skip

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(db.app, name="db")
app.command("bill")(bill.bill)
app.command("demo")(demo.demo)
app.command("import")(importer.import_command)
app.command("serve")(serve.serve)
app.add_typer(companies.app, name="companies")
app.add_typer(users.app, name="users")
app.add_typer(api_access.app, name="api")
app.add_typer(keys.app, name="keys")
app.add_typer(whitelist.app, name="whitelist")
app.command("audit")(audit.audit)
app.add_typer(customers.app, name="customers")


def main() -> None:
    app()
