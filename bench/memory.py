"""Memory benchmark: the server's peak RSS streaming a large document minus a small one.

    python bench/memory.py [--small 10000] [--large 1000000] [--backend sqlite] [--quick]

Per backend and size: a fresh ``billing-api serve`` process on the demo database of that size
downloads every invoice document (three endpoints, XML and JSON, whole range, v4) and its peak
resident set (``VmHWM`` from ``/proc``) is read after the last byte. The figure is
peak(large) − peak(small); target ≤ 30 MiB. A streaming export holds one invoice at a time,
so the difference should be noise (allocator arenas, the page cache is not counted in RSS).
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

ENDPOINTS = ("invoices", "customerinvoices", "consolidatedinvoices")
TARGET_MIB = 30


def peak_while_streaming(lines: int, backend: str) -> dict[str, Any]:
    db = common.demo_database(lines, backend)
    _, secret = common.api_key(db)
    with common.server(db.env()) as srv:
        idle = srv.peak_rss_kib()
        streamed = 0
        for endpoint in ENDPOINTS:
            for fmt in ("xml", "json"):
                count, _, _ = common.download(srv.base, f"/api/v4/{endpoint}", secret, fmt)
                streamed = max(streamed, count)
        peak = srv.peak_rss_kib()
    common.say(f"{backend:>10}: documents of {streamed} lines: idle {idle / 1024:.1f} MiB, "
               f"peak {peak / 1024:.1f} MiB ({common.load_text()})")
    return {"lines_per_document": streamed, "idle_rss_mib": round(idle / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--small", type=int, help="default 10,000 (5,000 with --quick)")
    parser.add_argument("--large", type=int, help="default 1,000,000 (20,000 with --quick)")
    args = parser.parse_args()
    large = args.large or (common.QUICK_LINES if args.quick else 1_000_000)
    args.small = args.small or (5_000 if args.quick else 10_000)
    backends, notes = common.chosen_backends(args.backend)
    if args.quick:
        notes.append(f"--quick: {large} lines against {args.small}; the full run streams "
                     "1,000,000")
    summary: dict[str, Any] = {"benchmark": "memory", "quick": args.quick, "notes": notes,
                               "target_mib": TARGET_MIB, "backends": {}}
    for backend in backends:
        small = peak_while_streaming(args.small, backend)
        big = peak_while_streaming(large, backend)
        growth = round(big["peak_rss_mib"] - small["peak_rss_mib"], 1)
        summary["backends"][backend] = {"small": small, "large": big, "growth_mib": growth,
                                        "load": common.machine_load()}
        common.say(f"{backend:>10}: peak RSS growth {growth} MiB (target ≤ {TARGET_MIB})")
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
