"""Export benchmark: the real server, every endpoint in both formats, against its floor.

    python bench/export.py [--lines 1000000] [--backend sqlite] [--repeats 3] [--quick]
    python bench/export.py --lines 10000 --lines 1000000 --database-url URL   # old form

For each backend it builds (or reuses) a demo database whose documents hold about ``--lines``
price lines, starts ``billing-api serve`` in its own process, creates a partner key and
whitelists 127.0.0.1 through the CLI. Then, per endpoint, interleaved and best of
``--repeats``: the HTTP download of the whole range as XML and as JSON; the floor (the same
rows read with the raw driver and serialized by the same writer in one process, no HTTP:
``floor.writer_floor``); and what an operator would run instead on the same line query
(``sqlite3 -json``; PostgreSQL ``COPY … (FORMAT csv)`` and ``COPY (SELECT row_to_json(t) …)``).
Before timing, one download per document is read and checked against the floor's output
(line count, size and CRC-32); timed runs only count bytes (the client shares the two cores)
and must return that size, so a ratio never compares different bytes. The server's peak RSS
(VmHWM) is reported too.

The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import floor

ENDPOINTS = ("invoices", "customerinvoices", "consolidatedinvoices")
FORMATS = ("xml", "json")
TARGET_FLOOR = 0.8
TARGET_ROW_TO_JSON = 1.0
TARGET_SQLITE_JSON = 0.8


def _http(server: common.Server, secret: str, endpoint: str, fmt: str) -> tuple[int, int, int]:
    import httpx

    marker = b"<PriceLine>" if fmt == "xml" else b'"LineId":'
    count = size = crc = 0
    tail = b""
    with httpx.stream("GET", f"{server.base}/api/v4/{endpoint}",
                      params={**common.DATE_RANGE, "format": fmt},
                      headers={"X-Api-Key": secret}, timeout=3600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
            crc = zlib.crc32(chunk, crc)
            window = tail + chunk
            count += window.count(marker)
            tail = window[-(len(marker) - 1):]
    return count, size, crc


def _http_size(server: common.Server, secret: str, endpoint: str, fmt: str) -> int:
    """A timed download: only the body's size is taken, so the client (on the same two cores
    as the server and its database) does as little as it can. (curl was tried: slower than
    httpx for the larger XML bodies.)"""
    import httpx

    size = 0
    with httpx.stream("GET", f"{server.base}/api/v4/{endpoint}",
                      params={**common.DATE_RANGE, "format": fmt},
                      headers={"X-Api-Key": secret}, timeout=3600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            size += len(chunk)
    return size


def measure_backend(db: common.Database, repeats: int) -> dict[str, Any]:
    partner_id, secret = common.api_key(db)
    built = {k: v for k, v in db.built_info().items() if k != "secret"}
    results: dict[str, Any] = {"database": db.name, "built": built, "endpoints": {}}
    with common.server(db.env()) as srv:
        results["idle_rss_kib"] = srv.peak_rss_kib()
        for endpoint in ENDPOINTS:
            subjects: dict[str, Any] = {}
            checked: dict[str, tuple[int, int, int]] = {}
            for fmt in FORMATS:  # once, untimed: the HTTP body is the floor's, byte for byte
                http, ours = (_http(srv, secret, endpoint, fmt),
                              floor.writer_floor(db.url, endpoint, fmt, partner_id))
                if http != ours:
                    raise SystemExit(f"{db.backend} {endpoint} {fmt}: HTTP body (lines, bytes, "
                                     f"crc) {http} differs from the floor's {ours}")
                checked[fmt] = http
                subjects[f"http.{fmt}"] = (
                    lambda e=endpoint, f=fmt: _http_size(srv, secret, e, f))
                subjects[f"floor.{fmt}"] = (lambda e=endpoint, f=fmt: floor.writer_floor(
                    db.url, e, f, partner_id, checksum=False)[1])
            if db.backend == "sqlite" and common.ensure_tool("sqlite3", "sqlite3"):
                subjects["sqlite3_json"] = (
                    lambda e=endpoint: floor.sqlite_cli_json(db.url, e, partner_id))
            elif db.backend == "postgresql" and common.ensure_tool("psql", "postgresql-client"):
                for mode in ("csv", "row_to_json"):
                    subjects[f"copy_{mode}"] = (
                        lambda e=endpoint, m=mode: floor.postgres_copy(db.url, e, partner_id, m))
            else:
                results.setdefault("notes", []).append(
                    "operator comparison skipped: install Debian's sqlite3 and "
                    "postgresql-client")
            load_before = common.machine_load()
            best, last = common.interleaved_best(subjects, repeats)
            figures: dict[str, Any] = {"load": load_before}
            for fmt in FORMATS:
                lines, size, _ = checked[fmt]
                if last[f"http.{fmt}"] != size or last[f"floor.{fmt}"] != size:
                    raise SystemExit(f"{db.backend} {endpoint} {fmt}: timed runs gave "
                                     f"{last[f'http.{fmt}']} and {last[f'floor.{fmt}']} bytes, "
                                     f"the checked body {size}")
                http_rate = lines / best[f"http.{fmt}"]
                floor_rate = lines / best[f"floor.{fmt}"]
                figures[fmt] = {
                    "lines": lines, "bytes": size,
                    "http_lines_per_s": round(http_rate),
                    "floor_lines_per_s": round(floor_rate),
                    "ratio_to_floor": common.ratio(http_rate, floor_rate),
                    "target_ratio_to_floor": TARGET_FLOOR,
                }
                common.say(f"{db.backend:>10} {endpoint:>21} {fmt:>4}: {lines} lines, HTTP "
                           f"{http_rate:8.0f}/s, floor {floor_rate:8.0f}/s, ratio "
                           f"{http_rate / floor_rate:.2f} ({common.load_text()})")
            for name in subjects:
                if name.startswith(("sqlite3", "copy")):
                    rows = last[name][0]
                    rate = rows / best[name]
                    json_rate = figures["json"]["http_lines_per_s"]
                    target = (TARGET_SQLITE_JSON if name == "sqlite3_json"
                              else TARGET_ROW_TO_JSON if name == "copy_row_to_json" else None)
                    figures[name] = {"rows": rows, "rows_per_s": round(rate),
                                     "json_ratio": common.ratio(json_rate, rate),
                                     "xml_ratio": common.ratio(
                                         figures["xml"]["http_lines_per_s"], rate),
                                     "target_ratio": target}
                    wanted = f" (target ≥ {target})" if target else ""
                    common.say(f"{db.backend:>10} {endpoint:>21} {name}: {rate:8.0f} rows/s; "
                               f"ours JSON {figures[name]['json_ratio']:.2f}×, XML "
                               f"{figures[name]['xml_ratio']:.2f}×{wanted}")
            results["endpoints"][endpoint] = figures
        results["peak_rss_kib"] = srv.peak_rss_kib()
    return results


def _legacy(sizes: list[int], url: str) -> dict[str, Any]:
    """The old interface: an existing database URL, downloads only, peak RSS per size."""
    db = common.Database("given", "postgresql" if url.startswith("postgresql") else "sqlite", url)
    runs = []
    for _ in sizes:
        _, secret = common.api_key(db)
        with common.server(db.env()) as srv:
            downloads = {}
            for endpoint in ENDPOINTS:
                for fmt in FORMATS:
                    lines, size, seconds = common.download(
                        srv.base, f"/api/v4/{endpoint}", secret, fmt)
                    downloads[f"{endpoint}.{fmt}"] = {
                        "lines": lines, "bytes": size, "seconds": round(seconds, 3),
                        "lines_per_second": round(lines / seconds) if seconds else None}
            runs.append({"peak_rss_kib": srv.peak_rss_kib(), "downloads": downloads})
    return {"benchmark": "export", "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--lines", type=int, action="append",
                        help="price lines per document (repeatable); default 1,000,000 "
                        "(20,000 with --quick)")
    parser.add_argument("--repeats", type=int, help="timed runs per subject (best is kept)")
    parser.add_argument("--database-url", help="use this demo database instead (old form)")
    args = parser.parse_args()
    if args.database_url:
        common.emit_summary(_legacy(args.lines or [10_000], args.database_url))
        return
    sizes = args.lines or [common.QUICK_LINES if args.quick else 1_000_000]
    repeats = args.repeats or (2 if args.quick else 3)
    backends, notes = common.chosen_backends(args.backend)
    summary: dict[str, Any] = {"benchmark": "export", "quick": args.quick, "repeats": repeats,
                               "notes": notes, "runs": []}
    if args.quick:
        notes.append(f"--quick: {sizes[0]} lines per document, best of {repeats}; the full "
                     "run uses 1,000,000")
    for lines in sizes:
        for backend in backends:
            db = common.demo_database(lines, backend)
            run = measure_backend(db, repeats)
            run.update(backend=backend, lines=lines)
            summary["runs"].append(run)
    summary["worst_ratio_to_floor"] = min(
        (f[fmt]["ratio_to_floor"] for run in summary["runs"]
         for f in run["endpoints"].values() for fmt in FORMATS), default=None)
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
