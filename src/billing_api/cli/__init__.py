"""``billing-api``: the operator's command line. One module per command group."""

from __future__ import annotations

import typer

from billing_api.cli import bill, customers, db, demo, importer, serve, webhooks, worker
from billing_api.cli.groups import DefaultCommandGroup

from billing_api.cli import api_access, audit, companies, keys, users, whitelist  # isort: skip

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(db.app, name="db")
app.command("bill")(bill.bill)
app.command("unbill")(bill.unbill)
app.command("demo")(demo.demo)
app.command("import")(importer.import_command)
app.command("serve")(serve.serve)
app.add_typer(companies.app, name="companies")
app.add_typer(users.app, name="users")
app.add_typer(api_access.app, name="api")
app.add_typer(keys.app, name="keys")
app.add_typer(whitelist.app, name="whitelist")
app.add_typer(customers.app, name="customers")
app.add_typer(webhooks.app, name="webhooks")
app.command("worker")(worker.worker)
# `audit --company C` lists (the default command); `audit prune` deletes old events.
audit_app = typer.Typer(cls=DefaultCommandGroup, no_args_is_help=True,
                        help="A partner's audit log (the default command) and its retention.")
audit_app.command("list")(audit.audit)
audit_app.command("prune")(audit.prune)
app.add_typer(audit_app, name="audit")


def main() -> None:
    app()
