"""Conditional requests and incremental sync: what an unchanged answer costs.

    python bench/conditional.py [--lines 20000] [--repeats 15] [--quick] [--backend B]

The real server (``billing-api serve``) on a billed demo database of about ``--lines`` lines
per document; interleaved, best of ``--repeats``:

- ``healthz``: the floor, one request with no authentication;
- ``full``: the whole ``invoices`` document (XML) over every date (timed after the others);
- ``not_modified``: the same request with ``If-None-Match`` of its ETag: a 304, which costs
  the authentication plus one statement on the billing runs (docs/sync.md);
- ``sync_nothing_new``: ``since`` with the answer's own ``X-Next-Cursor``: an empty document.

Targets: ``not_modified`` ≤ 5 % of ``full``, and not above ``sync_nothing_new`` (which
authenticates and reads the runs too, then runs the two empty document queries); the ratio
to ``healthz`` (no authentication, no query) is printed for the record. The last line
printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

TARGET_VS_FULL = 0.05


def measure(backend: str, lines: int, repeats: int) -> dict[str, Any]:
    import httpx

    db = common.demo_database(lines, backend)
    _, secret = common.api_key(db)
    with common.server(db.env()) as srv, httpx.Client(base_url=srv.base, timeout=600) as client:
        headers = {"X-Api-Key": secret}
        params = {**common.DATE_RANGE, "format": "xml"}
        first = client.get("/api/v4/invoices", params=params, headers=headers)
        first.raise_for_status()
        tag, cursor = first.headers["etag"], first.headers["x-next-cursor"]

        def healthz() -> int:
            return client.get("/healthz").status_code

        def full() -> int:
            return len(client.get("/api/v4/invoices", params=params, headers=headers).content)

        def not_modified() -> int:
            answer = client.get("/api/v4/invoices", params=params,
                                headers=headers | {"If-None-Match": tag})
            assert answer.status_code == 304, answer.status_code
            return answer.status_code

        def sync_nothing_new() -> int:
            answer = client.get("/api/v4/invoices", params={"since": cursor}, headers=headers)
            assert answer.headers["x-next-cursor"] == cursor
            return len(answer.content)

        # The small answers interleaved with each other; the full download on its own: a
        # request right after a 25 MB stream pays for its clean-up (seen: 304s 4× slower).
        best, last = common.interleaved_best(
            {"healthz": healthz, "not_modified": not_modified,
             "sync_nothing_new": sync_nothing_new}, repeats)
        full_best, full_last = common.interleaved_best({"full": full}, max(3, repeats // 5))
        best |= full_best
        last |= full_last
    result: dict[str, Any] = {
        "backend": backend, "document_bytes": last["full"],
        "seconds": {name: round(value, 5) for name, value in best.items()},
        "not_modified_vs_healthz": common.ratio(best["not_modified"], best["healthz"]),
        "not_modified_vs_full": common.ratio(best["not_modified"], best["full"]),
        "sync_nothing_new_vs_healthz": common.ratio(best["sync_nothing_new"], best["healthz"]),
        "load": common.machine_load(),
    }
    vs_healthz, vs_full = result["not_modified_vs_healthz"], result["not_modified_vs_full"]
    vs_sync = common.ratio(best["not_modified"], best["sync_nothing_new"])
    result["not_modified_vs_sync_nothing_new"] = vs_sync
    result["meets_targets"] = bool(vs_full is not None and vs_full <= TARGET_VS_FULL
                                   and vs_sync is not None and vs_sync <= 1.0)
    common.say(f"{backend}: full {best['full']:.4f} s ({last['full']} bytes), 304 "
               f"{best['not_modified']:.4f} s, empty sync {best['sync_nothing_new']:.4f} s, "
               f"healthz {best['healthz']:.4f} s; 304 = {vs_full} × full (target ≤ "
               f"{TARGET_VS_FULL}), {vs_sync} × empty sync (target ≤ 1), {vs_healthz} × "
               f"healthz; {common.load_text()}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    lines = args.lines or (common.QUICK_LINES if args.quick else 200_000)
    repeats = args.repeats or (7 if args.quick else 15)
    backends, notes = common.chosen_backends(args.backend)
    for note in notes:
        common.say(note)
    results = [measure(backend, lines, repeats) for backend in backends]
    common.emit_summary({"benchmark": "conditional", "lines": lines, "results": results,
                         "notes": notes})


if __name__ == "__main__":
    main()
