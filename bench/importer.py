"""Import benchmark: wall time and peak RSS of ``billing-api import`` on large files.

    python bench/importer.py [--customers 100000] [--usage 100000] [--backend sqlite] [--quick]

Generates, with a fixed seed, a customers CSV (N customers), a subscriptions JSON (3 per
customer, two resources and an attribute each) and a usage CSV (one row per customer, up to
``--usage``), then runs ``billing-api import`` as a subprocess on a fresh database per backend:

1. ``customers.csv subscriptions.json`` into a database holding only the catalog,
2. the same two files again (everything exists: every row is compared, nothing written),
3. ``usage.csv``.

Each run's wall time, CPU time (user + system: on a shared machine the fairer measure of
speed) and peak resident set (``ru_maxrss`` of the child, read with
``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper process of its own) are printed; the
target is a peak under 300 MiB whatever the size. The last line printed is a JSON summary.
``--baseline DIR`` runs the import of another checkout (``git archive REV | tar -x -C DIR``)
instead, for before/after figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

SEED = 20261205
TARGET_MIB = 300
EXAMPLE = common.ROOT / "docs" / "examples" / "import-example.json"
CATALOG_SECTIONS = ("distributor", "partners", "vendors", "resources", "service_plans")
COUNTRIES = ("NL", "BE", "DE", "FR", "GB", "US")
CITIES = ("Amsterdam", "Utrecht", "Antwerpen", "Köln", "Lyon", "London", "Boston")
# Runs the import in a process of its own and prints the child's peak RSS (KiB) and wall time:
# RUSAGE_CHILDREN is the maximum over every child waited for, so each run needs a fresh parent.
WRAPPER = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - started, usage.ru_maxrss, code, usage.ru_utime + usage.ru_stime)
"""


def write_files(folder: Path, customers: int, usage: int) -> dict[str, Path]:
    """The catalog (the documented example's), customers, subscriptions and usage files."""
    rng = random.Random(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    example = json.loads(EXAMPLE.read_text())
    paths = {name: folder / name for name in
             ("catalog.json", "customers.csv", "subscriptions.json", "usage.csv")}
    paths["catalog.json"].write_text(json.dumps({k: example[k] for k in CATALOG_SECTIONS}))
    numbers = [f"B-{i:07d}" for i in range(customers)]
    with paths["customers.csv"].open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["partner", "environment", "customer_number", "company_name",
                         "country_code", "address", "postal_code", "city", "email",
                         "contact_first_name", "contact_last_name", "language_code"])
        for number in numbers:
            writer.writerow([common.PARTNER, "production", number,
                             f"Customer {number} {rng.choice(('BV', 'GmbH', 'Ltd', 'SA'))}",
                             rng.choice(COUNTRIES), f"Main Street {rng.randint(1, 999)}",
                             f"{rng.randint(1000, 9999)} AB", rng.choice(CITIES),
                             f"ap@{number.lower()}.example", "Ann", "Smith", "en"])
    with paths["subscriptions.json"].open("w", encoding="utf-8") as out:
        out.write('{"subscriptions": [\n')
        for i, number in enumerate(numbers):
            for k in range(3):
                sub: dict[str, Any] = {
                    "partner": common.PARTNER, "environment": "production",
                    "customer_number": number, "plan": "VMware Cloud Director vDC",
                    "name": f"vDC {k}", "start_date": f"2026-0{rng.randint(1, 9)}-01",
                    "po_number": f"PO-{rng.randint(1, 10**6)}",
                    "resources": [{"resource": "vCPU", "amount": rng.randint(1, 32)},
                                  {"resource": "Storage", "amount": 0}],
                    "attributes": [{"attribute": "Datacenter",
                                    "value": rng.choice(("AMS-1", "FRA-2"))}]}
                out.write(("" if i == k == 0 else ",\n") + json.dumps(sub))
        out.write("\n]}\n")
    with paths["usage.csv"].open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["partner", "environment", "customer_number", "subscription",
                         "resource", "period", "quantity"])
        for number in numbers[:usage]:
            writer.writerow([common.PARTNER, "production", number, "vDC 0", "Storage",
                             "2026-10", f"{rng.randint(0, 10**6) / 100:.2f}"])
    return paths


BASELINE: list[Path] = []  # the source folder of another checkout, if --baseline


def _env(db: common.Database) -> dict[str, str]:
    return db.env(PYTHONPATH=str(BASELINE[0] / "src")) if BASELINE else db.env()


def measure(db: common.Database, *args: str) -> dict[str, Any]:
    """One ``billing-api import ARGS`` in a fresh wrapper: seconds, peak RSS MiB, exit code."""
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, sys.executable, "-m", "billing_api", "import", *args],
        env=_env(db), capture_output=True, text=True, check=False, timeout=7200)
    try:
        seconds, kib, code, cpu = result.stdout.split()
    except ValueError:
        raise SystemExit(f"the wrapper failed:\n{result.stderr}") from None
    return {"seconds": round(float(seconds), 1), "cpu_seconds": round(float(cpu), 1),
            "peak_rss_mib": round(int(kib) / 1024, 1), "exit": int(code)}


def run(backend: str, paths: dict[str, Path], customers: int, usage: int) -> dict[str, Any]:
    # The process id in the name: a baseline run may go on beside this one.
    db = common.database(f"bench_import_{customers}_{os.getpid()}", backend)
    db.create_empty()
    common.cli(_env(db), "import", str(paths["catalog.json"]))
    results: dict[str, Any] = {}
    main_files = (str(paths["customers.csv"]), str(paths["subscriptions.json"]))
    for name, files in (("import", main_files), ("reimport", main_files),
                        ("usage", (str(paths["usage.csv"]),))):
        results[name] = measure(db, *files)
        common.say(f"{backend:>10}: {name:>8} of {customers} customers, {3 * customers} "
                   f"subscriptions, {usage} usage rows: {results[name]['seconds']} s "
                   f"({results[name]['cpu_seconds']} s CPU), peak "
                   f"{results[name]['peak_rss_mib']} MiB, exit {results[name]['exit']} "
                   f"({common.load_text()})")
    db.drop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--customers", type=int,
                        help="default 100,000 (3 subscriptions each); 2,000 with --quick")
    parser.add_argument("--usage", type=int, help="usage rows (default: one per customer)")
    parser.add_argument("--baseline", type=Path,
                        help="import with the code of this checkout instead (before/after)")
    args = parser.parse_args()
    if args.baseline:
        BASELINE.append(args.baseline.resolve())
    customers = args.customers or (2_000 if args.quick else 100_000)
    usage = min(args.usage or customers, customers)
    backends, notes = common.chosen_backends(args.backend)
    if args.quick:
        notes.append(f"--quick: {customers} customers; the full run imports 100,000")
    folder = common.DATA / f"import-{customers}-{usage}"
    started = time.perf_counter()
    paths = write_files(folder, customers, usage)
    common.say(f"generated {folder} in {time.perf_counter() - started:.1f} s")
    summary: dict[str, Any] = {"benchmark": "importer", "quick": args.quick, "notes": notes,
                               "baseline": str(args.baseline) if args.baseline else None,
                               "customers": customers, "subscriptions": 3 * customers,
                               "usage_rows": usage, "target_mib": TARGET_MIB, "backends": {}}
    for backend in backends:
        result = run(backend, paths, customers, usage)
        result["within_target"] = all(r["peak_rss_mib"] < TARGET_MIB and r["exit"] == 0
                                      for r in result.values())
        summary["backends"][backend] = result
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
