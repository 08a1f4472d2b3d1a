"""Before and after: the product at a git revision against the working tree, in one run.

    python bench/compare.py [--baseline HEAD] [--lines 200000] [--subscriptions 10000]
                            [--backend sqlite] [--repeats 2] [--quick]

``git archive`` extracts the baseline's ``src/`` into a temporary folder; each subject runs
in a child process whose ``PYTHONPATH`` points at one tree or the other, alternately, best of
``--repeats``:

- **export**: the product's ``invoice_document`` in-process (no HTTP) for every endpoint and
  format of the demo database (``bench/profile.py``'s child), lines per second;
- **billing**: the billing benchmark's child on fresh copies of the unbilled world.

So an optimisation's effect is a ratio measured under the same load. The last line printed
is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

BENCH = Path(__file__).resolve().parent
ENDPOINTS = ("invoices", "customerinvoices", "consolidatedinvoices")


def extract(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(common.ROOT), "archive", revision, "src"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _child(src: Path, argv: list[str]) -> tuple[float, str]:
    env = common.database("x", "sqlite").env(PYTHONPATH=str(src))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"{argv} with {src} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started, result.stdout


def export_seconds(src: Path, url: str, endpoint: str, fmt: str) -> float:
    """Seconds of the export itself, as the child measures it (imports excluded)."""
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "import floor\n"
        "from billing_api.db import make_engine\n"
        "from billing_api.export.documents import invoice_shape\n"
        "from billing_api.export.stream import invoice_document, open_export\n"
        f"engine = make_engine({url!r})\n"
        f"shape = invoice_shape({endpoint!r}, v4=True)\n"
        "started = time.perf_counter()\n"
        f"for _ in invoice_document(open_export(engine), shape, floor.scope(2), {fmt!r}):\n"
        "    pass\n"
        "print(time.perf_counter() - started)\n"
    )
    _, out = _child(src, ["-c", code])
    return float(out.strip().splitlines()[-1])


def billing_seconds(src: Path, base: common.Database) -> dict[str, Any]:
    import billing

    copy = billing.fresh_copy(base, "compare")
    try:
        _, out = _child(src, [str(BENCH / "billing.py"), "child", "run", copy.url])
    finally:
        copy.drop()
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--lines", type=int, help="default 200,000 (20,000 quick)")
    parser.add_argument("--subscriptions", type=int, help="default 10,000 (5,000 quick)")
    parser.add_argument("--repeats", type=int, help="default 2")
    args = parser.parse_args()
    lines = args.lines or (common.QUICK_LINES if args.quick else 200_000)
    subscriptions = args.subscriptions or (5_000 if args.quick else 10_000)
    repeats = args.repeats or 2
    backends, notes = common.chosen_backends(args.backend)
    summary: dict[str, Any] = {"benchmark": "compare", "baseline": args.baseline,
                               "notes": notes, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as folder:
        trees = {"before": extract(args.baseline, Path(folder)),
                 "after": common.ROOT / "src"}
        for backend in backends:
            import billing

            db = common.demo_database(lines, backend)
            count = db.built_info().get("lines", 0) // 2  # one kind's lines: one document
            figures: dict[str, Any] = {"lines_per_document": count, "export": {}}
            for endpoint in ENDPOINTS:
                for fmt in ("xml", "json"):
                    best = {name: float("inf") for name in trees}
                    for _ in range(repeats):
                        for name, src in trees.items():
                            best[name] = min(best[name],
                                             export_seconds(src, db.url, endpoint, fmt))
                    figures["export"][f"{endpoint}.{fmt}"] = {
                        "before_lines_per_s": round(count / best["before"]),
                        "after_lines_per_s": round(count / best["after"]),
                        "speedup": common.ratio(best["before"], best["after"]),
                        "load": common.load_text()}
                    common.say(f"{backend:>10} {endpoint:>21} {fmt:>4}: before "
                               f"{count / best['before']:8.0f}/s, after "
                               f"{count / best['after']:8.0f}/s ({common.load_text()})")
            base = billing.base_database(subscriptions, backend)
            runs: dict[str, dict[str, Any]] = {}
            for _ in range(repeats):
                for name, src in trees.items():
                    run = billing_seconds(src, base)
                    if name not in runs or run["seconds"] < runs[name]["seconds"]:
                        runs[name] = run
            figures["billing"] = {
                "subscriptions": base.built_info().get("subscriptions"),
                "lines": runs["after"]["lines"],
                "before_seconds": round(runs["before"]["seconds"], 2),
                "after_seconds": round(runs["after"]["seconds"], 2),
                "speedup": common.ratio(runs["before"]["seconds"], runs["after"]["seconds"]),
                "before_peak_rss_mib": round(runs["before"]["peak_rss_kib"] / 1024, 1),
                "after_peak_rss_mib": round(runs["after"]["peak_rss_kib"] / 1024, 1),
                "load": common.load_text()}
            common.say(f"{backend:>10} billing: before {runs['before']['seconds']:.2f} s, after "
                       f"{runs['after']['seconds']:.2f} s ({common.load_text()})")
            summary["backends"][backend] = figures
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
