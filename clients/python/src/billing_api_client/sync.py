"""Keep a folder up to date with one file per invoice: the daily loop of a partner's ERP.

Each run asks for the invoices billed after the cursor kept in the folder (``since=``), writes
each new one as a file of its own (temporary file, then rename: a reader never sees half a
file), and only then moves the cursor on. A run that stops half-way is repeated by the next
one; a run right after another writes nothing.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from billing_api_client.client import BillingClient, Endpoint, FileFormat, atomic_write

SUFFIXES: dict[str, str] = {"xml": ".xml", "json": ".json", "ubl": ".ubl.xml", "pdf": ".pdf"}
# An InvoiceID becomes a file name: refuse anything that could leave the folder.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
MAX_PAGES = 1000


class SyncError(Exception):
    pass


@dataclass
class SyncResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # already there from an earlier run
    cursor: str | None = None


def cursor_path(out: Path, endpoint: str) -> Path:
    return out / f".billing-api-client.{endpoint}.cursor"


def read_cursor(out: Path, endpoint: str) -> str | None:
    try:
        value = json.loads(cursor_path(out, endpoint).read_text())["cursor"]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise SyncError(f"{cursor_path(out, endpoint)} is damaged ({exc}): remove it to "
                        "start over (files already there are kept)") from None
    return str(value)


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One sync per folder at a time (a cron job overlapping a manual run)."""
    with open(out / ".billing-api-client.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncError(f"another sync is running in {out}") from None
        yield


def sync_directory(client: BillingClient, out: Path, *, endpoint: Endpoint = "invoices",
                   fmt: FileFormat = "xml", start_date: str | None = None) -> SyncResult:
    """Write every invoice billed since the last run into ``out``; see the module's text.
    ``start_date`` (YYYYMMDD) bounds the first run; later runs follow the cursor."""
    out.mkdir(parents=True, exist_ok=True)
    result = SyncResult()
    with _locked(out):
        cursor = read_cursor(out, endpoint)
        for _ in range(MAX_PAGES):
            page = client.changes(endpoint, cursor,
                                  start_date=start_date if cursor is None else None)
            for invoice_id in page.invoice_ids:
                if not _SAFE_ID.match(invoice_id):
                    raise SyncError(f"InvoiceID {invoice_id!r} cannot be a file name")
                target = out / f"{invoice_id}{SUFFIXES[fmt]}"
                if target.exists():
                    result.skipped.append(target)
                    continue
                answer = client.invoice_file(endpoint, invoice_id, fmt)
                atomic_write(target, answer.content)
                result.written.append(target)
            if page.next_cursor != cursor:
                atomic_write(cursor_path(out, endpoint),
                             json.dumps({"cursor": page.next_cursor}).encode() + b"\n")
            done = not page.invoice_ids or page.next_cursor == cursor
            cursor = page.next_cursor
            if done:
                break
        result.cursor = cursor
    return result
