"""Run every benchmark and write ``docs/performance.md`` with its chart.

    python bench/run.py [--quick] [--only export,load] [--backend sqlite] [--output DIR]
                        [--baseline REV] [--repeats N]

Runs ``export``, ``memory``, ``naive``, ``load``, ``workers`` (2 worker processes against 1),
``billing`` and ``importer`` (each is also a script of its own), each in its own process,
passing ``--quick`` along (``importer --quick`` imports 2,000 customers, about 40 s for both
backends). Their progress goes to stderr; the last line on stdout is one JSON object: per
benchmark its figures and ratios, and a list of
targets with whether each is met. ``--quick`` (smaller sizes, fewer repeats; said so in the
output) finishes within 5 minutes on 2 cores once the small databases exist (about 3 minutes
measured), and in about 6 when a fresh clone must build them first; the full run took 65
minutes with ``--repeats 2``. Reports go to ``docs/performance.md`` and
``docs/performance.png`` unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import report

BENCHMARKS = ("export", "memory", "naive", "load", "workers", "billing", "importer")


REPEATABLE = ("export", "naive", "load", "workers", "billing")  # the benchmarks that take --repeats


def run_benchmark(name: str, quick: bool, backends: list[str] | None,
                  extra: list[str] | None = None, repeats: int | None = None) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve().parent / f"{name}.py"), *(extra or [])]
    if quick:
        argv.append("--quick")
    if repeats and name in REPEATABLE:
        argv += ["--repeats", str(repeats)]
    for backend in backends or []:
        argv += ["--backend", backend]
    common.say(f"=== {name} ({common.load_text()})")
    started = time.perf_counter()
    process = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    seconds = round(time.perf_counter() - started, 1)
    lines = process.stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        common.say(f"=== {name} failed (exit {process.returncode})")
        return {"benchmark": name, "failed": True, "exit": process.returncode,
                "elapsed_seconds": seconds}
    result = dict(json.loads(lines[-1]))
    result["elapsed_seconds"] = seconds
    common.say(f"=== {name} done in {seconds} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, fewer repeats (within 5 minutes on 2 cores)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--backend", choices=common.BACKENDS, action="append")
    parser.add_argument("--repeats", type=int, help="best of N for every benchmark that "
                        "repeats (default: each benchmark's own)")
    parser.add_argument("--baseline", help="also compare the product with this git revision "
                        "(bench/compare.py): before/after figures of the optimisations")
    parser.add_argument("--output", type=Path, default=common.ROOT / "docs",
                        help="where performance.md and performance.png go")
    parser.add_argument("--from-json", type=Path, help="only rewrite the report from a saved "
                        "summary (each run saves its own as bench/out/run-{quick,full}.json)")
    args = parser.parse_args()
    if args.from_json:
        summary = json.loads(args.from_json.read_text())
        summary["targets"] = report.targets(summary["benchmarks"])
        args.output.mkdir(parents=True, exist_ok=True)
        report.write(summary, args.output / "performance.md", args.output / "performance.png")
        common.say(f"wrote {args.output / 'performance.md'} from {args.from_json}")
        return
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    load_at_start = common.machine_load()
    results = {name: run_benchmark(name, args.quick, args.backend, repeats=args.repeats)
               for name in chosen}
    if args.baseline:
        results["compare"] = run_benchmark("compare", args.quick, args.backend,
                                           ["--baseline", args.baseline])
    summary: dict[str, Any] = {
        "quick": args.quick,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "started_load": load_at_start,
        "finished_load": common.machine_load(),
        "seconds": round(time.perf_counter() - started, 1),
        "benchmarks": results,
        "targets": report.targets(results),
    }
    saved = common.ROOT / "bench" / "out" / f"run-{'quick' if args.quick else 'full'}.json"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(summary, indent=1))
    args.output.mkdir(parents=True, exist_ok=True)
    report.write(summary, args.output / "performance.md", args.output / "performance.png")
    common.say(f"wrote {args.output / 'performance.md'} in {summary['seconds']} s")
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
