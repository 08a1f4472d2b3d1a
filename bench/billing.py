"""Billing-run benchmark: the monthly run against bulk-inserting its rows, and its memory.

    python bench/billing.py [--subscriptions 100000] [--small 25000] [--backend sqlite]
                            [--repeats 2] [--quick]

A demo world of about ``--subscriptions`` production subscriptions is built once, unbilled
(``bench_billing_<n>``). Each timed run works on a fresh copy of it (a file copy on SQLite,
``CREATE DATABASE … TEMPLATE`` on PostgreSQL) in a child process:

- **run**: ``bill_partner`` for the demo's four months, one transaction per month as
  ``billing-api bill`` does (≈ 10 price lines per subscription in all). The child reports the
  seconds spent billing and its peak RSS.
- **floor**: the same invoice and price-line rows (read back from a billed copy beforehand)
  inserted in one transaction with the same driver and nothing else: ``executemany`` on
  SQLite; on PostgreSQL both ``executemany`` and ``COPY … FROM STDIN`` (the faster is the
  floor).

Run and floor alternate, best of ``--repeats``. Targets: run ≤ 2 × floor; peak RSS at
``--subscriptions`` about equal to that at ``--small`` (memory that does not grow with the
number of subscriptions). The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

TARGET_RATIO = 2.0
SUBSCRIPTIONS_PER_CUSTOMER = 2  # the demo gives each customer 1–3 plans
TABLES = ("billing_runs", "invoice_sequences", "invoices", "price_lines")


# --- databases --------------------------------------------------------------------------------


def base_database(subscriptions: int, backend: str) -> common.Database:
    db = common.database(f"bench_billing_{subscriptions}", backend)
    if not db.is_built():
        customers = max(1, subscriptions // SUBSCRIPTIONS_PER_CUSTOMER)
        common.say(f"building an unbilled {backend} world of ~{subscriptions} subscriptions …")
        info = common.build_world(db, customers, bill=False)
        info["subscriptions"] = _count(db, "subscriptions")
        if backend == "sqlite":
            _checkpoint(db)
        db.mark_built(**info)
    return db


def _checkpoint(db: common.Database) -> None:
    import sqlite3

    with sqlite3.connect(db.sqlite_path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _count(db: common.Database, table: str) -> int:
    from sqlalchemy import text

    from billing_api.db import make_engine

    engine = make_engine(db.url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def fresh_copy(base: common.Database, suffix: str) -> common.Database:
    copy = common.database(f"{base.name}_{suffix}", base.backend)
    copy.drop()
    if base.backend == "sqlite":
        shutil.copyfile(base.sqlite_path, copy.sqlite_path)
    else:
        common._postgres_admin(
            f'CREATE DATABASE "{copy.server_name}" TEMPLATE "{base.server_name}"')
    return copy


# --- the children (own processes, so that their peak RSS is theirs) ---------------------------


def child_run(url: str) -> dict[str, Any]:
    """Bill the demo's months on ``url``; seconds billing, lines, peak RSS."""
    from billing_api.db import make_engine, make_session_factory, transaction
    from billing_api.demo.generator import PARTNER_NAME, completed_periods, invoice_date
    from billing_api.environments import Environment

    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        from sqlalchemy import select

        from billing_api.access.models import Company
        partner_id = session.scalar(select(Company.id).where(Company.name == PARTNER_NAME))
    assert partner_id is not None
    from billing_api.billing.run import bill_partner

    lines = invoices = 0
    started = time.perf_counter()
    today = dt.date.fromisoformat(common.TODAY)
    for period in completed_periods(today, common.DEMO_MONTHS):
        with transaction(factory, writer=True) as session:
            summary = bill_partner(session, partner_id, Environment.PRODUCTION, period,
                                   invoice_date(period, today))
        lines += summary.lines
        invoices += summary.invoices
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "lines": lines, "invoices": invoices,
            "peak_rss_kib": common.peak_rss_kib(os.getpid())}


def _columns(connection: Any, table: str, backend: str) -> list[str]:
    if backend == "sqlite":
        return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
    cursor = connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "ORDER BY ordinal_position", (table,))
    return [row[0] for row in cursor]


def dump_rows(db: common.Database, path: Path) -> dict[str, int]:
    """The rows a billing run wrote, as the driver returns them, pickled to ``path``."""
    rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    with _connect(db) as connection:
        for table in TABLES:
            columns = _columns(connection, table, db.backend)
            names = ", ".join(columns)
            rows[table] = (columns, [tuple(r) for r in connection.execute(
                f"SELECT {names} FROM {table} ORDER BY 1")])
    with path.open("wb") as out:
        pickle.dump(rows, out, protocol=pickle.HIGHEST_PROTOCOL)
    return {table: len(data) for table, (_, data) in rows.items()}


def _connect(db: common.Database) -> Any:
    if db.backend == "sqlite":
        import sqlite3

        return sqlite3.connect(db.url.split("///", 1)[1], isolation_level=None)
    import psycopg

    return psycopg.connect(common.sqlalchemy_url_to_libpq(db.url))


def child_floor(backend: str, url: str, rows_path: str, method: str) -> dict[str, Any]:
    """Insert the dumped rows into the fresh copy at ``url`` in one transaction."""
    db = common.Database("floor", backend, url)
    with open(rows_path, "rb") as source:
        rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = pickle.load(source)  # noqa: S301
    if backend == "postgresql":  # JSON columns come back as dicts: send them as JSON again
        from psycopg.types.json import Json

        for table, (columns, data) in rows.items():
            rows[table] = (columns, [tuple(Json(v) if isinstance(v, dict | list) else v
                                           for v in row) for row in data])
    connection = _connect(db)
    started = time.perf_counter()
    if backend == "sqlite":
        # The product's connection settings (``db._sqlite_on_connect``): the floor checks the
        # same foreign keys and syncs the same way as the run's inserts.
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("BEGIN IMMEDIATE")
        for table in TABLES:
            columns, data = rows[table]
            marks = ", ".join("?" for _ in columns)
            if table == "invoice_sequences":
                connection.execute("DELETE FROM invoice_sequences")
            connection.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", data)
        connection.execute("COMMIT")
    else:
        with connection.transaction(), connection.cursor() as cursor:
            for table in TABLES:
                columns, data = rows[table]
                names = ", ".join(columns)
                if table == "invoice_sequences":
                    cursor.execute("DELETE FROM invoice_sequences")
                if method == "copy":
                    with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                        for row in data:
                            copy.write_row(row)
                else:
                    marks = ", ".join("%s" for _ in columns)
                    cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", data)
    seconds = time.perf_counter() - started
    connection.close()
    return {"seconds": seconds, "lines": len(rows["price_lines"][1]),
            "peak_rss_kib": common.peak_rss_kib(os.getpid())}


def _child(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "child", *args],
                            capture_output=True, text=True, check=False,
                            env=common.database("x", "sqlite").env())
    if result.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# --- the benchmark ----------------------------------------------------------------------------


def measure(subscriptions: int, backend: str, repeats: int) -> dict[str, Any]:
    base = base_database(subscriptions, backend)
    info = base.built_info()
    rows_path = common.DATA / f"{base.name}.{backend}.rows.pickle"
    methods = ["executemany"] if backend == "sqlite" else ["executemany", "copy"]
    best: dict[str, float] = {}
    last: dict[str, dict[str, Any]] = {}
    for attempt in range(repeats):
        copy = fresh_copy(base, "run")
        run = _child("run", copy.url)
        if attempt == 0:
            dumped = dump_rows(copy, rows_path)
            common.say(f"{backend:>10}: rows written by the run: {dumped}")
        copy.drop()
        best["run"] = min(best.get("run", float("inf")), run["seconds"])
        last["run"] = run
        common.say(f"{backend:>10} {subscriptions:>7} subs: run {run['seconds']:7.2f} s, "
                   f"{run['lines']} lines, peak {run['peak_rss_kib'] / 1024:.0f} MiB "
                   f"({common.load_text()})")
        for method in methods:
            copy = fresh_copy(base, "floor")
            floor = _child("floor", backend, copy.url, str(rows_path), method)
            copy.drop()
            best[method] = min(best.get(method, float("inf")), floor["seconds"])
            last[method] = floor
            common.say(f"{backend:>10} {subscriptions:>7} subs: floor ({method}) "
                       f"{floor['seconds']:7.2f} s ({common.load_text()})")
    rows_path.unlink(missing_ok=True)
    floor_seconds = min(best[m] for m in methods)
    lines = last["run"]["lines"]
    return {
        "subscriptions": info.get("subscriptions"), "lines": lines,
        "invoices": last["run"]["invoices"],
        "run_seconds": round(best["run"], 2),
        "run_lines_per_s": round(lines / best["run"]),
        **{f"floor_{m}_seconds": round(best[m], 2) for m in methods},
        "floor_seconds": round(floor_seconds, 2),
        "ratio_to_floor": common.ratio(best["run"], floor_seconds),
        **{f"ratio_to_{m}": common.ratio(best["run"], best[m]) for m in methods},
        "target_ratio": TARGET_RATIO,
        "run_peak_rss_mib": round(last["run"]["peak_rss_kib"] / 1024, 1),
        "load": common.machine_load(),
    }


def peak_only(subscriptions: int, backend: str) -> dict[str, Any]:
    base = base_database(subscriptions, backend)
    copy = fresh_copy(base, "run")
    run = _child("run", copy.url)
    copy.drop()
    common.say(f"{backend:>10} {subscriptions:>7} subs: run {run['seconds']:7.2f} s, "
               f"peak {run['peak_rss_kib'] / 1024:.0f} MiB ({common.load_text()})")
    return {"subscriptions": base.built_info().get("subscriptions"), "lines": run["lines"],
            "run_seconds": round(run["seconds"], 2),
            "run_peak_rss_mib": round(run["peak_rss_kib"] / 1024, 1)}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        kind, *rest = sys.argv[2:]
        result = child_run(rest[0]) if kind == "run" else child_floor(*rest)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--subscriptions", type=int, help="default 100,000 (5,000 quick)")
    parser.add_argument("--small", type=int, help="for the memory comparison: default 25,000 "
                        "(1,250 quick)")
    parser.add_argument("--repeats", type=int, help="default 2 (1 quick)")
    args = parser.parse_args()
    large = args.subscriptions or (5_000 if args.quick else 100_000)
    small = args.small or large // 4
    repeats = args.repeats or (1 if args.quick else 2)
    backends, notes = common.chosen_backends(args.backend)
    if args.quick:
        notes.append(f"--quick: {large} subscriptions (memory against {small}); the full run "
                     "bills 100,000")
    summary: dict[str, Any] = {"benchmark": "billing", "quick": args.quick, "notes": notes,
                               "backends": {}}
    for backend in backends:
        result = measure(large, backend, repeats)
        result["small"] = peak_only(small, backend)
        result["memory_growth_mib"] = round(
            result["run_peak_rss_mib"] - result["small"]["run_peak_rss_mib"], 1)
        summary["backends"][backend] = result
        common.say(f"{backend:>10}: run/floor = {result['ratio_to_floor']} (target ≤ "
                   f"{TARGET_RATIO}); peak RSS {result['small']['run_peak_rss_mib']} MiB at "
                   f"{small} → {result['run_peak_rss_mib']} MiB at {large}")
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
