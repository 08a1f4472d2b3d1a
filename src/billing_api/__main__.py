"""``python -m billing_api`` runs the CLI."""

from billing_api.cli import main

main()
