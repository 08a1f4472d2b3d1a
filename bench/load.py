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
``details`` ≥ 0.5 × ``/healthz``'s requests/s on the same server. Also printed: the server
process's CPU time per request (from ``/proc``, lowest of the rounds) and the same ratio by it,
which a machine busy with other work disturbs much less than requests/s. Then the floor of
the targeted requests (``database_floor``, skipped with ``--no-floor``): their own statements
replayed on the raw driver by ``bench/bare.py``, and the share of the target's budget they
take by themselves. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

BENCH = Path(__file__).resolve().parent
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, url: str, seconds: int, connections: int, threads: int,
            headers: dict[str, str], server_pid: int | None = None) -> dict[str, Any]:
    """wrk's figures; with ``server_pid``, also the server's CPU time per request, which a
    busy machine disturbs far less than requests/s (waiting for a core costs no CPU time)."""
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    before = cpu_seconds(server_pid) if server_pid else 0.0
    result = subprocess.run([*argv, url], capture_output=True, text=True, check=True,
                            timeout=seconds + 60)
    figures = parse_wrk(result.stdout)
    if server_pid and figures["requests"]:
        used = cpu_seconds(server_pid) - before
        figures["server_cpu_us"] = round(used / figures["requests"] * 1e6, 1)
    return figures


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
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the raw-driver floor of the targeted requests (bench/bare.py)")
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
            cpu: dict[str, list[float]] = {}
            for _ in range(repeats):
                for name, (url, headers) in targets.items():
                    figures = run_wrk(wrk, url, seconds, args.connections, args.threads,
                                      headers, srv.pid)
                    figures["load"] = common.load_text()
                    common.say(f"{backend:>10} {name:>12}: {figures['requests_per_s']} req/s, "
                               f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
                               f"server CPU {figures.get('server_cpu_us')} µs/request, "
                               f"non-2xx {figures['non_2xx']} ({figures['load']})")
                    if figures["non_2xx"]:
                        raise SystemExit(f"{name}: {figures['non_2xx']} answers were not 2xx")
                    if figures.get("server_cpu_us"):
                        cpu.setdefault(name, []).append(figures["server_cpu_us"])
                    if (name not in best or (figures["requests_per_s"] or 0)
                            > (best[name]["requests_per_s"] or 0)):
                        best[name] = figures
            healthz = best["healthz"]["requests_per_s"]
            ratios = {name: common.ratio(best[name]["requests_per_s"], healthz)
                      for name in targets if name != "healthz"}
            # The same comparison by the server's CPU time per request (healthz's / this
            # one's): what requests/s would show on an idle machine where the server, one
            # process, is the bottleneck. PostgreSQL's own CPU is not in it.
            least_cpu = {name: min(cpu[name]) for name in targets if cpu.get(name)}
            cpu_ratios = {name: common.ratio(least_cpu.get("healthz"), least_cpu.get(name))
                          for name in targets if name != "healthz"}
            result = {**best, "body_bytes": body_bytes, "ratios": ratios,
                      "server_cpu_us": least_cpu, "cpu_ratios": cpu_ratios,
                      # The smallest targeted ratio: what the target is checked against.
                      "ratio": min(ratios[name] or 0.0 for name in TARGETED)}
            summary["backends"][backend] = result
            for name, value in ratios.items():
                goal = f"target ≥ {TARGET}" if name in TARGETED else "no target"
                common.say(f"{backend:>10}: {name}/healthz = {value} ({goal}), "
                           f"p99 {best[name]['p99_ms']} ms against {best['healthz']['p99_ms']}; "
                           f"by server CPU per request {cpu_ratios.get(name)}")
        if not args.no_floor:
            result["floor"] = database_floor(db, targets, best, wrk, seconds, repeats, args)
    common.emit_summary(summary)


def database_floor(db: common.Database, targets: dict[str, tuple[str, dict[str, str]]],
                   ours: dict[str, dict[str, Any]], wrk: str, seconds: int, repeats: int,
                   args: argparse.Namespace) -> dict[str, Any]:
    """The targeted requests' own statements replayed on the raw driver by ``bench/bare.py``
    (no framework): how much of the target's budget their database work alone takes.

    The target allows a request ``T_h`` (one ``/healthz``, 1 / its requests/s) beyond
    ``/healthz``'s own time; the floor's statements take ``D`` = the bare request's time
    less the bare ``/healthz``'s. ``D / T_h`` near 1 means no Python serving them can meet
    the target with these statements; well below 1, the rest is the server's own cost."""
    wanted = {name: ("/" + url.split("/", 3)[3], headers) for name, (url, headers)
              in targets.items() if name in TARGETED}
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as scratch:
        plan = Path(scratch) / "plan.pickle"
        subprocess.run([sys.executable, str(BENCH / "bare.py"), "capture", str(plan),
                        json.dumps(wanted)], env=db.env(), check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
        command = [sys.executable, "-m", "uvicorn", "bare:app", "--app-dir", str(BENCH),
                   "--port", "{port}", "--loop", "asyncio", "--no-access-log",
                   "--log-level", "warning"]
        bare_best: dict[str, float] = {}
        with common.server(db.env(BENCH_BARE_PLAN=str(plan)), command) as bare:
            for _ in range(repeats):
                for name in ("healthz", *wanted):
                    figures = run_wrk(wrk, f"{bare.base}/{name}", seconds, args.connections,
                                      args.threads, {})
                    if figures["non_2xx"] or not figures["requests_per_s"]:
                        raise SystemExit(f"bare {name}: {figures}")
                    bare_best[name] = max(bare_best.get(name, 0.0), figures["requests_per_s"])
    budget_us = 1e6 / ours["healthz"]["requests_per_s"]
    floor: dict[str, Any] = {"bare_requests_per_s": bare_best, "budget_us": round(budget_us)}
    for name in wanted:
        statements_us = 1e6 / bare_best[name] - 1e6 / bare_best["healthz"]
        spent_us = 1e6 / ours[name]["requests_per_s"] - budget_us
        floor[name] = {"statements_us": round(statements_us), "spent_us": round(spent_us),
                       "share_of_budget": common.ratio(statements_us, budget_us)}
        common.say(f"{db.backend:>10}: {name} floor: its statements on the raw driver with no "
                   f"framework take {statements_us:.0f} µs beyond a bare healthz "
                   f"({bare_best[name]} against {bare_best['healthz']} req/s); the target "
                   f"leaves {budget_us:.0f} µs beyond ours, so they take "
                   f"{statements_us / budget_us:.0%} of it; this server spends "
                   f"{spent_us:.0f} µs")
    return floor


if __name__ == "__main__":
    main()
