"""Worker scaling: ``billing-api serve --workers 2`` against ``--workers 1`` on small requests.

    python bench/workers.py [--seconds 10] [--connections 64] [--repeats 3] [--quick]

Two servers on the same tiny demo database as ``bench/load.py``, both with
``BILLING_API_REDIS_URL`` (127.0.0.1:6379, as a multi-worker deployment must run: one rate-limit
count for all workers): one with one worker pinned (``taskset``) to the first CPU, one with two
workers, each pinned to one of the first two CPUs. ``wrk`` (one thread, 64 connections) sends
the authenticated one-day collection download of ``bench/load.py`` (``download``: key
digest, whitelist, Redis rate limit, one invoice's document answered on the event loop),
alternately to each server, best of ``--repeats`` by requests/s. ``wrk`` is pinned to the
third CPU when there is one, else to the last: on a 2-core machine it shares the second
worker's core, which is as far apart as 2 cores allow (it needs a few percent of a core at
these rates).
On a machine busy with other users' work the ratio says little: Linux's scheduler autogroups
give one login session one share of the CPUs, however many processes it runs (cat
/proc/sys/kernel/sched_autogroup_enabled), so a second worker adds no CPU time there; measured
at a load average of 22 on 2 cores it came out at 0.7–1.0. Run it on a quiet machine.
On PostgreSQL the database server runs on the same two cores: with one worker it takes the
second core, with two it competes with both, so the ratio there understates what a second
worker gives beside a database on its own machine.
Each run also measures the CPU time per request of the server's processes, of PostgreSQL's
and of wrk: with one worker's, ``ceiling`` is the most the CPUs used could serve over one
worker's requests/s, the bound no number of workers passes on this machine.
Target: 2 workers ≥ 1.6 × 1 worker. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import load

TARGET = 1.6
REDIS_URL = os.environ.get("BILLING_API_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def cpu_plan() -> tuple[dict[int, str], str]:
    """(CPUs per worker count, the load generator's CPU) from this process's affinity."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("worker scaling needs at least 2 CPUs")
    servers = {1: str(cpus[0]), 2: f"{cpus[0]},{cpus[1]}"}
    return servers, str(cpus[2] if len(cpus) > 2 else cpus[-1])


def pin_workers(server_pid: int, cpus: list[int], seconds: float = 180) -> list[int]:
    """Pin each worker process of ``server_pid`` to a CPU of its own (children inherit the
    parent's set, in which the kernel may well stack both on one CPU under load)."""
    deadline = time.monotonic() + seconds
    while True:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server_pid and \
                        b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                    children.append(int(stat.parent.name))  # a worker, not the resource tracker
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
        if len(children) >= len(cpus):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the server started {len(children)} of {len(cpus)} workers")
        time.sleep(0.2)
    for pid, cpu in zip(sorted(children), cpus, strict=False):
        os.sched_setaffinity(pid, {cpu})
    return sorted(children)


def redis_answers() -> bool:
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    tree, grown = {root}, True
    while grown:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grown = bool(found)
    return sorted(tree)


def _postgres_processes() -> list[int]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):  # ended meanwhile
            total += load.cpu_seconds(pid)
    return total


def run_wrk(taskset: str, wrk: str, cpu: str, url: str, seconds: int, connections: int,
            secret: str, server_pid: int) -> dict[str, Any]:
    """wrk's figures, and the CPU time per request of the server's processes, of the
    PostgreSQL server's (none on SQLite) and of wrk itself."""
    argv = [taskset, "-c", cpu, wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-H", f"X-Api-Key: {secret}", url]
    server, database = _process_tree(server_pid), _postgres_processes()
    before = _cpu(server), _cpu(database), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(argv, capture_output=True, text=True, check=True,
                            timeout=seconds + 60)
    # Connections opened during the run have backends of their own: all of their time counts.
    database = sorted(set(database) | set(_postgres_processes()))
    after = _cpu(server), _cpu(database), resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = load.parse_wrk(result.stdout)
    if figures["requests"]:
        wrk_seconds = ((after[2].ru_utime + after[2].ru_stime)
                       - (before[2].ru_utime + before[2].ru_stime))
        figures["cpu_us"] = {
            part: round(used / figures["requests"] * 1e6, 1) for part, used in
            (("server", after[0] - before[0]), ("database", after[1] - before[1]),
             ("wrk", wrk_seconds))}
    return figures


def ceiling(one: dict[str, Any], cpus: int) -> float | None:
    """The most ``cpus`` CPUs can give over one worker's measured requests/s, when every
    request needs the CPU time that server, database and wrk spent on one with one worker:
    no number of workers gets past it on this machine."""
    spent = sum(one.get("cpu_us", {}).values())
    if not spent or not one["requests_per_s"]:
        return None
    return common.ratio(cpus * 1e6 / spent, one["requests_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--seconds", type=int, help="per wrk run (default 10, quick 4)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeats", type=int, help="runs per server (default 3, quick 2)")
    args = parser.parse_args()
    seconds = args.seconds or (4 if args.quick else 10)
    repeats = args.repeats or (2 if args.quick else 3)
    wrk = load.ensure_wrk()
    taskset = common.ensure_tool("taskset", "util-linux")
    if taskset is None:
        raise SystemExit("taskset is missing (Debian package util-linux)")
    if not redis_answers():
        raise SystemExit(f"Redis does not answer at {REDIS_URL} (scripts/install-system-deps "
                         "starts one; BILLING_API_BENCH_REDIS_URL names another)")
    servers, wrk_cpu = cpu_plan()
    # Both: small requests only read, which several processes do side by side on one SQLite
    # file too. On PostgreSQL the server's own backends need the same two cores, so the
    # second worker gains less here than on a machine of its own.
    backends, notes = common.chosen_backends(args.backend)
    if args.quick:
        notes.append(f"--quick: {seconds} s per run, best of {repeats}")
    summary: dict[str, Any] = {"benchmark": "workers", "quick": args.quick, "notes": notes,
                               "connections": args.connections, "seconds": seconds,
                               "server_cpus": servers, "wrk_cpu": wrk_cpu,
                               "cpus": os.cpu_count(), "target_ratio": TARGET, "backends": {}}
    path = f"/api/v4/invoices?startDate={load.ONE_INVOICE_DAY}&endDate={load.ONE_INVOICE_DAY}"
    for backend in backends:
        db = common.database("bench_load", backend)
        if not db.is_built():
            db.mark_built(**common.build_world(db, 1, bill=True))
        _, secret = common.api_key(db)
        env = db.env(BILLING_API_REDIS_URL=REDIS_URL)
        commands = {n: [taskset, "-c", cpus, sys.executable, "-m", "billing_api", "serve",
                        "--port", "{port}", "--workers", str(n)]
                    for n, cpus in servers.items()}
        with common.server(env, commands[1]) as one, common.server(env, commands[2]) as two:
            common.wait_ready(two.base + "/healthz")
            pin_workers(two.pid, [int(cpu) for cpu in servers[2].split(",")])
            urls = {1: one.base + path, 2: two.base + path}
            for url in urls.values():  # both answer, and each worker has connected
                for _ in range(4):
                    import httpx

                    answer = httpx.get(url, headers={"X-Api-Key": secret}, timeout=60)
                    if answer.content.count(b"<Invoice>") != 1:
                        raise SystemExit(f"expected one invoice from {url}: {answer.text[:200]}")
            best: dict[int, dict[str, Any]] = {}
            for _ in range(repeats):
                for workers, url in urls.items():
                    server_pid = one.pid if workers == 1 else two.pid
                    figures = run_wrk(taskset, wrk, wrk_cpu, url, seconds, args.connections,
                                      secret, server_pid)
                    figures["load"] = common.load_text()
                    common.say(f"{backend:>10} {workers} worker(s): "
                               f"{figures['requests_per_s']} req/s, p50 {figures['p50_ms']} ms,"
                               f" p99 {figures['p99_ms']} ms, non-2xx {figures['non_2xx']}, "
                               f"CPU µs/request {figures.get('cpu_us')} ({figures['load']})")
                    if figures["non_2xx"]:
                        raise SystemExit(f"{workers} worker(s): {figures['non_2xx']} answers "
                                         "were not 2xx")
                    if (workers not in best or (figures["requests_per_s"] or 0)
                            > (best[workers]["requests_per_s"] or 0)):
                        best[workers] = figures
        cpus_used = len(set(servers[2].split(",")) | {wrk_cpu})
        result = {"one": best[1], "two": best[2],
                  "ratio": common.ratio(best[2]["requests_per_s"], best[1]["requests_per_s"]),
                  "ceiling": ceiling(best[1], cpus_used)}
        summary["backends"][backend] = result
        common.say(f"{backend:>10}: 2 workers / 1 worker = {result['ratio']} "
                   f"(target ≥ {TARGET}); the CPU time one request took with one worker "
                   f"({best[1].get('cpu_us')} µs) caps what {cpus_used} CPUs give at "
                   f"{result['ceiling']} × one worker")
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
