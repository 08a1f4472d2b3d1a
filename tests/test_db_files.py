"""The embedded SQLite database holds password hashes and key digests: only its owner reads it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from billing_api.db import make_engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_wal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "billing.db"
    old_umask = os.umask(0o022)  # the usual umask, under which files come out world-readable
    try:
        engine = make_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            wal = Path(f"{path}-wal")
            assert wal.exists()
            assert _mode(wal) == 0o600
        engine.dispose()
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    path.touch()
    path.chmod(0o640)  # an operator's choice, e.g. a backup group
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))
    engine.dispose()
    assert _mode(path) == 0o640
