"""Export benchmark: the real server, every endpoint in both formats, over HTTP.

    python bench/export.py --lines 10000 --lines 1000000 [--database-url URL]

For each size it builds (or reuses, under bench/.data/) a demo database of about that many
price lines, starts ``billing-api serve`` in its own process, creates a partner key and
whitelists 127.0.0.1 through the CLI, downloads invoices, customerinvoices and
consolidatedinvoices as XML and JSON for the whole range, and reports lines per second and
the server's peak resident memory (VmHWM). The last line printed is a JSON summary; the
memory figure to watch is the peak at the largest size minus the peak at the smallest.
Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
LINES_PER_CUSTOMER = 39  # demo: both environments, both kinds, 4 billed months
ENDPOINTS = ("invoices", "customerinvoices", "consolidatedinvoices")
TODAY = "2026-11-29"


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "billing_api", *args], env=env, input=stdin,
        capture_output=True, text=True, check=False, timeout=3600,
    )
    if result.returncode != 0:
        raise SystemExit(f"billing-api {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def prepare(lines: int, database_url: str | None) -> tuple[dict[str, str], str]:
    """A database of about ``lines`` price lines, and a key for its partner."""
    DATA.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{DATA / f'export-{lines}.db'}"
    env = os.environ | {"BILLING_API_DATABASE_URL": url,
                        "BILLING_API_SECRET_KEY": "bench-secret-key-0123456789",
                        "BILLING_API_RATE_LIMIT_PER_MINUTE": "100000", "NO_COLOR": "1"}
    cli(env, "db", "upgrade")
    if not cli(env, "companies", "list").strip():
        started = time.perf_counter()
        customers = max(1, lines // LINES_PER_CUSTOMER)
        cli(env, "demo", "--customers", str(customers), "--today", TODAY)
        print(f"built {url} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    partner = cli(env, "companies", "list").split("\t", 1)[0]
    admin = "admin@northwind.example"
    cli(env, "api", "enable", "--company", partner, "--as", admin)
    if "127.0.0.1" not in cli(env, "whitelist", "list", "--company", partner):
        cli(env, "whitelist", "add", "--company", partner, "127.0.0.1")
    secret = cli(env, "keys", "create", "--company", partner, "--environment", "production",
                 "--name", f"bench-{time.time_ns()}", "--as", admin).strip()
    return env, secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_size(lines: int, database_url: str | None) -> dict[str, object]:
    env, secret = prepare(lines, database_url)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "billing_api", "serve", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.1)
        idle_kib = peak_rss_kib(server.pid)
        results = {}
        for endpoint in ENDPOINTS:
            for fmt in ("xml", "json"):
                started = time.perf_counter()
                size = count = 0
                marker = b"<PriceLine>" if fmt == "xml" else b'"LineId":'
                tail = b""  # a marker may straddle two chunks
                with httpx.stream("GET", f"{base}/api/v4/{endpoint}",
                                  params={"startDate": "20000101", "endDate": "20991231",
                                          "format": fmt},
                                  headers={"X-Api-Key": secret}, timeout=600) as response:
                    response.raise_for_status()
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        window = tail + chunk
                        count += window.count(marker)
                        tail = window[-(len(marker) - 1) :]
                seconds = time.perf_counter() - started
                results[f"{endpoint}.{fmt}"] = {
                    "lines": count, "bytes": size, "seconds": round(seconds, 3),
                    "lines_per_second": round(count / seconds) if seconds else None,
                }
                print(f"{lines:>9} {endpoint:>22} {fmt:>4}: {count:>8} lines "
                      f"{seconds:7.2f} s {count / seconds:>9.0f} lines/s", file=sys.stderr)
        return {"lines_in_database": lines, "idle_rss_kib": idle_kib,
                "peak_rss_kib": peak_rss_kib(server.pid), "downloads": results}
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, action="append",
                        help="database size in price lines (repeatable); default 10000")
    parser.add_argument("--database-url", help="use this (empty or demo) database instead")
    args = parser.parse_args()
    sizes = sorted(args.lines or [10_000])
    runs = [run_size(n, args.database_url) for n in sizes]
    summary: dict[str, object] = {"benchmark": "export", "runs": runs}
    if len(runs) > 1:
        growth = int(runs[-1]["peak_rss_kib"]) - int(runs[0]["peak_rss_kib"])  # type: ignore[call-overload]
        summary["peak_rss_growth_mib"] = round(growth / 1024, 1)
        summary["memory_target_mib"] = 30
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
