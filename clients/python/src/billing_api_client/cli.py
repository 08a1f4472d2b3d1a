"""``billing-api-client``: the command line. The key comes from ``BILLING_API_KEY`` only: a
key on the command line would be visible to every user of the machine (``ps``) and kept in
shell histories."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from billing_api_client.client import ApiError, BillingClient
from billing_api_client.sync import SyncError, sync_directory

KEY_VARIABLE = "BILLING_API_KEY"
_KEY_OPTIONS = ("--key", "--api-key", "--apikey", "-k")


class _RefuseKey(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(f"the API key is never taken on the command line: set {KEY_VARIABLE} "
                     "in the environment (e.g. from your secret store)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billing-api-client",
                                     description="Client of the partner Billing API.")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser(
        "sync", help="write one file per invoice billed since the last run into a folder",
        description=f"Write one file per new invoice into OUT (atomically) and keep the "
        f"cursor there; a second run right after writes nothing. Key: ${KEY_VARIABLE}.")
    sync.add_argument("--url", required=True, help="the server, e.g. https://billing.example")
    sync.add_argument("--out", required=True, type=Path, help="the folder to keep up to date")
    sync.add_argument("--endpoint", choices=("invoices", "customerinvoices"),
                      default="invoices")
    sync.add_argument("--format", choices=("xml", "json", "ubl", "pdf"), default="xml",
                      dest="fmt")
    sync.add_argument("--start-date", help="first run only: invoices from this date "
                      "(YYYYMMDD); default the server's window (three months)")
    sync.add_argument(*_KEY_OPTIONS, nargs="?", action=_RefuseKey, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    key = os.environ.get(KEY_VARIABLE, "")
    if not key:
        print(f"billing-api-client: set {KEY_VARIABLE} to your API key", file=sys.stderr)
        return 2
    try:
        with BillingClient(args.url, key) as client:
            result = sync_directory(client, args.out, endpoint=args.endpoint, fmt=args.fmt,
                                    start_date=args.start_date)
    except (ApiError, SyncError, httpx.HTTPError) as exc:
        print(f"billing-api-client: {exc}", file=sys.stderr)
        return 1
    for path in result.written:
        print(path)
    print(f"{len(result.written)} new, {len(result.skipped)} already there",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
