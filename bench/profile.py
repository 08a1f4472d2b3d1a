"""Profile what falls short: the export path, a billing run, or small requests under load.

    python bench/profile.py export  [--endpoint customerinvoices] [--format xml] [--backend B]
    python bench/profile.py billing [--subscriptions 10000] [--backend B]
    python bench/profile.py request [--seconds 8]

Records with ``py-spy`` (the ``bench`` extra; sampling, so the code runs at full speed) into
``bench/out/profile-<target>.svg`` (a flame graph) and prints the functions with the most
samples, inclusive and own. ``export`` runs the product's ``invoice_document`` in-process on
the demo database (no HTTP), ``billing`` the billing benchmark's child on a fresh copy of the
unbilled world, ``request`` samples the server (``--gil``: only the thread holding the GIL)
while ``wrk`` downloads one invoice. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

OUT = common.ROOT / "bench" / "out"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is missing: pip install -e '.[bench]'")
    return found


def summarise(raw: Path, top: int) -> dict[str, Any]:
    """Inclusive and own sample shares per function from py-spy's raw (folded) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / samples, 1)) for f, c in counter.most_common(top)]
    return {"samples": samples, "inclusive": share(total), "own": share(own)}


def record(argv: list[str], name: str, extra: list[str] | None = None) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    raw = OUT / f"profile-{name}.folded"
    svg = OUT / f"profile-{name}.svg"
    spy = py_spy()
    subprocess.run([spy, "record", "-r", "250", "-f", "raw", "-o", str(raw), *(extra or []),
                    "--", *argv], check=True, capture_output=True)
    subprocess.run([spy, "record", "-r", "250", "-o", str(svg), *(extra or []), "--", *argv],
                   check=False, capture_output=True)
    return {"flamegraph": str(svg), **summarise(raw, 25)}


def child_export(url: str, endpoint: str, fmt: str) -> None:
    """The product's export path in this process: engine, transaction, queries, writer."""
    from billing_api.db import make_engine
    from billing_api.export.documents import invoice_shape
    from billing_api.export.stream import invoice_document, open_export

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import floor

    engine = make_engine(url)
    shape = invoice_shape(endpoint, v4=True)
    started = time.perf_counter()
    size = 0
    for chunk in invoice_document(open_export(engine), shape, floor.scope(2), fmt):
        size += len(chunk)
    common.say(f"{endpoint} {fmt}: {size} bytes in {time.perf_counter() - started:.2f} s")


def profile_request(seconds: int) -> dict[str, Any]:
    import load

    wrk = load.ensure_wrk()
    db = common.database("bench_load", "sqlite")
    if not db.is_built():
        db.mark_built(**common.build_world(db, 1, bill=True))
    _, secret = common.api_key(db)
    OUT.mkdir(parents=True, exist_ok=True)
    raw = OUT / "profile-request.folded"
    path = f"/api/v4/invoices?startDate={load.ONE_INVOICE_DAY}&endDate={load.ONE_INVOICE_DAY}"
    with common.server(db.env()) as srv:
        traffic = subprocess.Popen([wrk, "-t1", "-c16", f"-d{seconds + 2}s", "-H",
                                    f"X-Api-Key: {secret}", srv.base + path],
                                   stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        subprocess.run([py_spy(), "record", "-p", str(srv.pid), "-d", str(seconds), "-r", "250",
                        "--gil", "--nonblocking", "-f", "raw", "-o", str(raw)],
                       check=True, capture_output=True)
        output, _ = traffic.communicate()
    return {"wrk": load.parse_wrk(output), **summarise(raw, 25)}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "child-export":
        child_export(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=("export", "billing", "request"))
    parser.add_argument("--backend", choices=common.BACKENDS, default="sqlite")
    parser.add_argument("--endpoint", default="customerinvoices")
    parser.add_argument("--format", default="xml", choices=("xml", "json"))
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if args.target == "export":
        db = common.demo_database(args.lines, args.backend)
        result = record([sys.executable, __file__, "child-export", db.url, args.endpoint,
                         args.format], f"export-{args.backend}-{args.endpoint}-{args.format}")
    elif args.target == "billing":
        import billing

        copy = billing.fresh_copy(billing.base_database(args.subscriptions, args.backend),
                                  "profile")
        try:
            result = record([sys.executable, str(Path(billing.__file__).resolve()), "child",
                             "run", copy.url], f"billing-{args.backend}")
        finally:
            copy.drop()
    else:
        if os.geteuid() != 0:
            common.say("py-spy needs ptrace rights to attach to the server (run as root)")
        result = profile_request(args.seconds)
    for kind in ("inclusive", "own"):
        common.say(f"--- {kind} (% of {result['samples']} samples)")
        for frame, percent in result[kind]:
            common.say(f"{percent:5.1f}%  {frame[:120]}")
    common.emit_summary({"benchmark": "profile", "target": args.target, **result})


if __name__ == "__main__":
    main()
