"""``billing-api audit``: a partner's audit log, newest first."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from billing_api.access import audit as audit_log
from billing_api.access import retention, users
from billing_api.cli.context import fail, settings, unit_of_work


def audit(
    company: Annotated[str, typer.Option("--company", help="Company id or exact name.")],
    since: Annotated[str | None, typer.Option(
        help="Only from this day on, YYYY-MM-DD (operator's timezone).")] = None,
) -> None:
    """Print CREATED, EVENT, ACTOR, CLIENT, KEY_PREFIX, PATH, REASON, DETAIL, COUNT
    (tab-separated). COUNT is how many refusals one row stands for: refused calls and failed
    logins are aggregated per address, reason and minute (CREATED is the first of them)."""
    start = None
    if since is not None:
        try:
            day = dt.date.fromisoformat(since)
        except ValueError:
            fail(f"--since {since!r} is not a date of the form YYYY-MM-DD")
            raise
        start = dt.datetime.combine(day, dt.time(0), ZoneInfo(settings().timezone))
    with unit_of_work() as session:
        rows = audit_log.list_events(session, users.find_company(session, company).id,
                                     since=start)
    for r in rows:
        fields = (r.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"), r.event_type, r.actor_email or "-",
                  r.client_address or "-", r.key_prefix or "-", r.path or "-", r.reason or "-",
                  r.detail or "-", str(r.count))
        sys.stdout.write("\t".join(fields) + "\n")


DEFAULT_RETENTION_DAYS = 400


def prune(
    older_than: Annotated[int, typer.Option(
        min=1, help="Delete events older than this many days.")] = DEFAULT_RETENTION_DAYS,
    dry_run: Annotated[bool, typer.Option(help="Only count what would go.")] = False,
) -> None:
    """Delete every company's audit events older than --older-than days; print the count.

    The default, 400 days, keeps a whole year and the review that follows it."""
    cutoff = audit_log.now() - dt.timedelta(days=older_than)
    with unit_of_work(writer=True) as session:
        count = retention.prune_events(session, before=cutoff, dry_run=dry_run)
    sys.stdout.write(f"{count}\n")
    typer.echo(f"{'would delete' if dry_run else 'deleted'} {count} audit events from before "
               f"{cutoff:%Y-%m-%d %H:%M} UTC", err=True)
