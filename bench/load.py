"""Small requests under load: ``wrk`` against ``/healthz`` and authenticated small requests.

    python bench/load.py [--seconds 15] [--connections 64] [--repeats 3] [--quick]

One ``billing-api serve`` process (one worker) on a tiny demo database; ``wrk`` (Debian
package ``wrk``, installed with apt-get when missing and running as root) runs from its own
process on loopback with 64 connections, in turn against ``/healthz`` (no database, no key)
and, with a valid ``X-Api-Key`` from a whitelisted address (key digest lookup, whitelist
check, rate limit, audit-free success):

* ``invoice-json`` / ``invoice-xml``: ``GET /api/v4/invoices/{InvoiceID}?format=json|xml``,
  one invoice's v4 document;
* ``details``: ``GET /api/v4/subscriptiondetails?subscriptionId=…`` (XML);
* ``download``: ``/api/v4/invoices`` for a one-day range holding exactly one invoice (the
  collection route; reported, no target of its own).

Best of ``--repeats`` by requests/s per URL, the URLs interleaved in each round; p50 and p99
latency from the same run. Targets: each of ``invoice-json``, ``invoice-xml`` and
``details`` ≥ 0.5 × ``/healthz``'s requests/s on the same server. The last line printed is a
JSON summary.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

TARGET = 0.5
ONE_INVOICE_DAY = "20260823"  # the first billed month's invoice date (TODAY, 4 months)
# The small requests held to the target; "download" (the collection route) is reported only.
TARGETED = ("invoice-json", "invoice-xml", "details")


def ensure_wrk() -> str:
    found = common.ensure_tool("wrk", "wrk")
    if found is None:
        raise SystemExit("wrk is missing: apt-get install wrk (Debian), then run again")
    return found


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(text)
    value, unit = float(match[1]), match[2]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    figures["requests_per_s"] = round(float(rps[1]), 1) if rps else None
    for label in ("50", "99"):
        found = re.search(rf"^\s+{label}%\s+(\S+)", output, re.MULTILINE)
        figures[f"p{label}_ms"] = round(_milliseconds(found[1]), 3) if found else None
    total = re.search(r"(\d+) requests in", output)
    figures["requests"] = int(total[1]) if total else 0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["non_2xx"] = int(bad[1]) if bad else 0
    errors = re.search(r"Socket errors: (.*)", output)
    figures["socket_errors"] = errors[1].strip() if errors else ""
    return figures


def run_wrk(wrk: str, url: str, seconds: int, connections: int, threads: int,
            headers: dict[str, str]) -> dict[str, Any]:
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    result = subprocess.run([*argv, url], capture_output=True, text=True, check=True,
                            timeout=seconds + 60)
    return parse_wrk(result.stdout)


def small_requests(base: str, secret: str) -> tuple[dict[str, tuple[str, dict[str, str]]],
                                                  dict[str, int]]:
    """The URLs to load (name → URL, headers), each checked once first, and their sizes."""
    import httpx

    key = {"X-Api-Key": secret}
    day = f"/api/v4/invoices?startDate={ONE_INVOICE_DAY}&endDate={ONE_INVOICE_DAY}"
    found = httpx.get(f"{base}{day}&format=json", headers=key)
    found.raise_for_status()
    invoices = found.json()["Invoices"]
    if len(invoices) != 1:
        raise SystemExit(f"expected one invoice on {ONE_INVOICE_DAY}, got {len(invoices)}")
    invoice_id = invoices[0]["Header"]["InvoiceID"]
    subscription_id = invoices[0]["Customers"][0]["Subscriptions"][0]["SubscriptionID"]
    targets = {
        "healthz": (f"{base}/healthz", {}),
        "invoice-json": (f"{base}/api/v4/invoices/{invoice_id}?format=json", key),
        "invoice-xml": (f"{base}/api/v4/invoices/{invoice_id}?format=xml", key),
        "details": (f"{base}/api/v4/subscriptiondetails?subscriptionId={subscription_id}",
                    key),
        "download": (base + day, key),
    }
    sizes = {}
    for name, (url, headers) in targets.items():
        answer = httpx.get(url, headers=headers)
        if answer.status_code != 200:
            raise SystemExit(f"{name}: {url} answered {answer.status_code}: {answer.text}")
        sizes[name] = len(answer.content)
    if f"<InvoiceID>{invoice_id}</InvoiceID>".encode() not in httpx.get(
            targets["invoice-xml"][0], headers=key).content:
        raise SystemExit(f"invoice-xml does not hold invoice {invoice_id}")
    return targets, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--seconds", type=int, help="per wrk run (default 15, quick 4)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--repeats", type=int, help="runs per URL (default 3, quick 2)")
    args = parser.parse_args()
    seconds = args.seconds or (4 if args.quick else 15)
    repeats = args.repeats or (2 if args.quick else 3)
    wrk = ensure_wrk()
    backends, notes = common.chosen_backends(args.backend)
    if args.quick:
        notes.append(f"--quick: {seconds} s per run, best of {repeats}")
    summary: dict[str, Any] = {"benchmark": "load", "quick": args.quick, "notes": notes,
                               "connections": args.connections, "seconds": seconds,
                               "target_ratio": TARGET, "backends": {}}
    for backend in backends:
        db = common.database("bench_load", backend)
        if not db.is_built():
            db.mark_built(**common.build_world(db, 1, bill=True))
        _, secret = common.api_key(db)
        with common.server(db.env()) as srv:
            targets, body_bytes = small_requests(srv.base, secret)
            best: dict[str, dict[str, Any]] = {}
            for _ in range(repeats):
                for name, (url, headers) in targets.items():
                    figures = run_wrk(wrk, url, seconds, args.connections, args.threads,
                                      headers)
                    figures["load"] = common.load_text()
                    common.say(f"{backend:>10} {name:>12}: {figures['requests_per_s']} req/s, "
                               f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
                               f"non-2xx {figures['non_2xx']} ({figures['load']})")
                    if figures["non_2xx"]:
                        raise SystemExit(f"{name}: {figures['non_2xx']} answers were not 2xx")
                    if (name not in best or (figures["requests_per_s"] or 0)
                            > (best[name]["requests_per_s"] or 0)):
                        best[name] = figures
            healthz = best["healthz"]["requests_per_s"]
            ratios = {name: common.ratio(best[name]["requests_per_s"], healthz)
                      for name in targets if name != "healthz"}
            result = {**best, "body_bytes": body_bytes, "ratios": ratios,
                      # The smallest targeted ratio: what the target is checked against.
                      "ratio": min(ratios[name] or 0.0 for name in TARGETED)}
            summary["backends"][backend] = result
            for name, value in ratios.items():
                goal = f"target ≥ {TARGET}" if name in TARGETED else "no target"
                common.say(f"{backend:>10}: {name}/healthz = {value} ({goal}), "
                           f"p99 {best[name]['p99_ms']} ms against {best['healthz']['p99_ms']}")
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
