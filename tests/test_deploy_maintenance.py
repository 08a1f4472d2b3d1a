"""docs/operations.md's routine: backups readable by their owner only, the restore check
(``billing-api db check``) and audit log retention (``billing-api audit prune``).

Commands run as the operator runs them (``python -m billing_api`` in a subprocess, backups
with ``sqlite3``/``pg_dump`` under a shell), on the suite's database.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, make_url, select, update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import AuditEvent, Company
from billing_api.billing.models import InvoiceSequence, PriceLine
from billing_api.db import transaction, utcnow
from billing_api.demo.generator import build_demo
from tests.conftest import _drop_postgres_database, skip_or_fail
from tests.test_cli_billing import run_cli
from tests.test_ops import TODAY, _libpq

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def db_check(url: str) -> tuple[int, dict[str, str], str]:
    """Exit status, each output line's first field → the rest, and stderr."""
    result = run_cli(url, "db", "check")
    assert "Traceback" not in result.stderr, result.stderr
    lines = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    return result.returncode, lines, " ".join(result.stderr.split())


# --- backups: mode 0600 ------------------------------------------------------------------------


def shell(command: str, **env: str) -> None:
    subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=120,
                   env={**os.environ, **env})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backups_under_umask_077_are_0600_and_pass_the_restore_check(
        factory: sessionmaker[Session], engine: Engine, database_url: str, backend: str,
        tmp_path: Path) -> None:
    build_demo(factory, customers=4, months=2, today=TODAY)
    assert "umask 077" in OPERATIONS
    if backend == "sqlite":
        if shutil.which("sqlite3") is None:
            skip_or_fail("sqlite3 is not installed (Debian package sqlite3)")
        live = make_url(database_url).database
        # The problem: a default umask leaves the backup readable by every local user.
        shell(f"umask 022 && sqlite3 '{live}' \".backup '{tmp_path}/open.db'\"")
        assert mode(tmp_path / "open.db") == 0o644
        shell(f"umask 077 && sqlite3 '{live}' \".backup '{tmp_path}/billing-backup.db'\"")
        backup = tmp_path / "billing-backup.db"
        restored_url = f"sqlite:///{backup}"
    else:
        shell(f"umask 022 && pg_dump --format=custom --file={tmp_path}/open.dump "
              f"'{_libpq(database_url)}'")
        assert mode(tmp_path / "open.dump") == 0o644
        backup = tmp_path / "billing.dump"
        shell(f"umask 077 && pg_dump --format=custom --file={backup} '{_libpq(database_url)}'")
        name = f"{make_url(database_url).database}_check"
        shell(f"createdb --maintenance-db='{_libpq(database_url, 'postgres')}' "
              f"--template=template0 {name} && pg_restore --no-owner --exit-on-error "
              f"--dbname='{_libpq(database_url, name)}' {backup}")
        restored_url = make_url(database_url).set(database=name).render_as_string(
            hide_password=False)
    try:
        assert mode(backup) == 0o600
        code, lines, err = db_check(restored_url)
        assert code == 0, (lines, err)
        assert lines["schema revision"] == "ok" and lines["billing runs complete"] == "ok"
        assert lines["invoice numbers gap-free"] == "ok"
        with Session(engine) as session:
            assert int(lines["price_lines"]) == session.scalar(
                select(func.count()).select_from(PriceLine)) > 0
    finally:
        if backend != "sqlite":
            _drop_postgres_database(database_url, name)


# --- the restore check ---------------------------------------------------------------------------


def test_db_check_finds_a_run_missing_lines_and_a_gap_in_the_numbers(
        factory: sessionmaker[Session], engine: Engine, database_url: str) -> None:
    build_demo(factory, customers=4, months=2, today=TODAY)
    code, lines, _ = db_check(database_url)
    assert code == 0 and int(lines["invoices"]) > 0
    with transaction(factory) as session:
        first = session.scalar(select(func.min(PriceLine.id)))
        session.execute(delete(PriceLine).where(PriceLine.id == first))
        session.execute(update(InvoiceSequence).values(last_number=InvoiceSequence.last_number + 1)
                        .where(InvoiceSequence.sender_company_id == select(func.min(
                            Company.id)).scalar_subquery()))
    code, lines, err = db_check(database_url)
    assert code == 1 and "failed a check" in err
    assert lines["billing runs complete"].startswith("1 run(s) without all their")
    assert "last number" in lines["invoice numbers gap-free"]
    assert lines["schema revision"] == "ok"


def test_db_check_on_sqlite_files_missing_empty_and_damaged(tmp_path: Path) -> None:
    """On SQLite files of its own, whichever backend the suite runs on."""
    missing = tmp_path / "missing.db"
    code, _, err = db_check(f"sqlite:///{missing}")
    assert code == 1 and "no SQLite database" in err
    assert not missing.exists()  # the check never creates what it checks

    empty = tmp_path / "empty.db"
    empty.touch()
    code, lines, err = db_check(f"sqlite:///{empty}")
    assert code == 1 and lines["schema revision"].startswith("at no schema")
    assert "db upgrade" in lines["schema revision"]

    good = tmp_path / "good.db"
    assert run_cli(f"sqlite:///{good}", "demo", "--customers", "3", "--months", "1").returncode == 0
    damaged = tmp_path / "damaged.db"
    data = bytearray(good.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):  # spoil every third page
        data[offset + 100 : offset + 600] = os.urandom(500)
    damaged.write_bytes(bytes(data))
    code, lines, err = db_check(f"sqlite:///{damaged}")
    assert code == 1
    assert "cannot read the database" in err or lines.get("integrity", "ok") != "ok"


# --- audit retention --------------------------------------------------------------------------


def add_events(factory: sessionmaker[Session], ages_in_days: list[int]) -> None:
    now = utcnow()
    with transaction(factory) as session:
        for age in ages_in_days:
            session.add(AuditEvent(event_type="api_denied", company_id=None,
                                   reason=f"age {age}",
                                   created_at=now - dt.timedelta(days=age)))


def remaining(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(AuditEvent.reason)))


def test_audit_prune_keeps_400_days_by_default(
        factory: sessionmaker[Session], engine: Engine, database_url: str) -> None:
    add_events(factory, [1, 399, 401, 800])
    dry = run_cli(database_url, "audit", "prune", "--dry-run")
    assert dry.returncode == 0 and dry.stdout == "2\n" and "would delete 2" in dry.stderr
    assert len(remaining(engine)) == 4
    pruned = run_cli(database_url, "audit", "prune")
    assert pruned.returncode == 0 and pruned.stdout == "2\n"
    assert remaining(engine) == ["age 1", "age 399"]
    pruned = run_cli(database_url, "audit", "prune", "--older-than", "30")
    assert pruned.stdout == "1\n" and remaining(engine) == ["age 1"]
    assert run_cli(database_url, "audit", "prune", "--older-than", "0").returncode == 2
    # The listing is still `audit --company C` (the group's default command).
    listing = run_cli(database_url, "audit", "--company", "nobody")
    assert listing.returncode == 1 and "nobody" in listing.stderr


@pytest.mark.parametrize("command", ["prune", "list"])
def test_audit_group_help_names_its_commands(command: str, database_url: str) -> None:
    shown = run_cli(database_url, "audit", "--help")
    assert shown.returncode == 0 and command in shown.stdout
