"""Concurrency (issue 8, item 3; docs/reliability.md): many large downloads and slow readers
against one server process, and two billing runs of one period at once.

Both run on the suite's database (``BILLING_API_TEST_DATABASE_URL``), so each CI pass tries
its backend. The server is ``python -m billing_api serve`` in a process of its own, so its
memory high-water mark (``VmHWM``) is its own and not the test runner's.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.app import create_app
from billing_api.billing.models import BillingRun, Invoice, PriceLine
from billing_api.db import make_engine, make_session_factory
from billing_api.demo.generator import build_demo
from billing_api.settings import Settings
from tests.access_helpers import make_partner
from tests.conftest import TEST_SECRET
from tests.http_server import serve
from tests.pg_instance import free_port
from tests.test_reliability_faults import (
    BILL_COMMAND,
    DEMO_TODAY,
    NEW_INVOICE_DATE,
    NEW_PERIOD,
    open_api,
)

DOCUMENTS = [
    (endpoint, fmt)
    for endpoint in ("invoices", "customerinvoices", "consolidatedinvoices")
    for fmt in ("xml", "json")
]
WINDOW = {"startDate": "20261001", "endDate": "20261130"}  # two billed months
DOWNLOADS = 100
CONNECTIONS = 100  # all the fast downloads in flight at once
SLOW_READERS = 10
SLOW_CHUNK, SLOW_PAUSE = 32 * 1024, 0.05  # at most ~640 KB/s per slow reader
MIN_DOCUMENT = 300 * 1024
MEMORY_GROWTH_BOUND = 150 * 1024 * 1024  # VmHWM growth of the server under the load
LOAD_TIME_BOUND = 120.0  # seconds for the whole load; it takes a few here


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak resident set) of the server process, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        values = {}
        for line in status.splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
        return values


@contextmanager
def api_server(database_url: str, log: Path) -> Iterator[Server]:
    """``billing-api serve`` on a free loopback port, stopped (SIGTERM) at the end."""
    port = free_port()
    env = {
        **os.environ,
        "BILLING_API_DATABASE_URL": database_url,
        "BILLING_API_SECRET_KEY": TEST_SECRET,
        # 110+ downloads with one key in a minute: lift the per-key limit for this test.
        "BILLING_API_RATE_LIMIT_PER_MINUTE": "100000",
    }
    env.pop("BILLING_API_REDIS_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "billing_api", "serve", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(server.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _params(fmt: str) -> dict[str, str]:
    return {**WINDOW, "format": fmt}


def test_100_large_downloads_and_10_slow_readers_are_complete_identical_and_bounded(
    factory: sessionmaker[Session], settings: Settings, database_url: str, tmp_path: Path
) -> None:
    build_demo(factory, customers=150, months=2, today=DEMO_TODAY)
    secret = open_api(database_url, settings)
    headers = {"X-Api-Key": secret}
    with api_server(database_url, tmp_path / "serve.log") as server:
        at_start = server.memory()
        # Reference bodies, one request at a time; this also warms the server up.
        reference: dict[tuple[str, str], str] = {}
        sizes = {}
        with httpx.Client(timeout=60) as client:
            for endpoint, fmt in DOCUMENTS:
                response = client.get(f"{server.base}/api/v4/{endpoint}", params=_params(fmt),
                                      headers=headers)
                assert response.status_code == 200, response.text
                assert len(response.content) >= MIN_DOCUMENT, (endpoint, fmt)
                reference[endpoint, fmt] = hashlib.sha256(response.content).hexdigest()
                sizes[endpoint, fmt] = len(response.content)
        before = server.memory()

        slow_results: list[tuple[tuple[str, str], str, float, float]] = []
        slow_errors: list[BaseException] = []

        def slow_reader(document: tuple[str, str]) -> None:
            endpoint, fmt = document
            transport = httpx.HTTPTransport(
                socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)]
            )
            digest = hashlib.sha256()
            try:
                with httpx.Client(transport=transport, timeout=60) as client, client.stream(
                    "GET", f"{server.base}/api/v4/{endpoint}", params=_params(fmt),
                    headers=headers,
                ) as response:
                    assert response.status_code == 200
                    started = time.monotonic()
                    for chunk in response.iter_raw(SLOW_CHUNK):
                        digest.update(chunk)
                        time.sleep(SLOW_PAUSE)
                    slow_results.append((document, digest.hexdigest(), started,
                                         time.monotonic()))
            except BaseException as exc:  # reported below, with the document
                slow_errors.append(exc)

        def fast_download(client: httpx.Client, document: tuple[str, str]) -> tuple[str, int]:
            endpoint, fmt = document
            response = client.get(f"{server.base}/api/v4/{endpoint}", params=_params(fmt),
                                  headers=headers)
            return hashlib.sha256(response.content).hexdigest(), response.status_code

        # The largest document for the slow readers: they stay connected the longest.
        slow_document = max(sizes, key=lambda d: sizes[d])
        load_started = time.monotonic()
        readers = [threading.Thread(target=slow_reader, args=(slow_document,))
                   for _ in range(SLOW_READERS)]
        for reader in readers:
            reader.start()
        jobs = [DOCUMENTS[i % len(DOCUMENTS)] for i in range(DOWNLOADS)]
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        with httpx.Client(timeout=60, limits=limits) as client, ThreadPoolExecutor(
            CONNECTIONS
        ) as pool:
            results = list(pool.map(lambda d: fast_download(client, d), jobs))
        fast_done = time.monotonic()
        for reader in readers:
            reader.join(LOAD_TIME_BOUND)
        load_time = time.monotonic() - load_started
        after = server.memory()

    assert not slow_errors, slow_errors
    assert [status for _, status in results] == [200] * DOWNLOADS
    for document, (digest, _) in zip(jobs, results, strict=True):
        assert digest == reference[document], f"{document}: a different body under load"
    assert len(slow_results) == SLOW_READERS
    for document, digest, started, _ended in slow_results:
        assert digest == reference[document], f"{document}: a slow reader got other bytes"
        assert started < fast_done, "a slow reader did not overlap the fast downloads"
    assert load_time < LOAD_TIME_BOUND
    growth = after["VmHWM"] - before["VmHWM"]
    transferred = sum(sizes[d] for d in jobs) + SLOW_READERS * sizes[slow_document]
    print(
        f"\nload: {DOWNLOADS} downloads over {CONNECTIONS} connections + {SLOW_READERS} slow "
        f"readers, {transferred / 2**20:.0f} MiB in {load_time:.1f} s (fast part "
        f"{fast_done - load_started:.1f} s); documents {min(sizes.values()) // 1024}–"
        f"{max(sizes.values()) // 1024} KiB; server VmRSS at start "
        f"{at_start['VmRSS'] / 2**20:.0f} MiB, VmHWM {before['VmHWM'] / 2**20:.0f} → "
        f"{after['VmHWM'] / 2**20:.0f} MiB (+{growth / 2**20:.0f} MiB), VmRSS after "
        f"{after['VmRSS'] / 2**20:.0f} MiB"
    )
    assert growth < MEMORY_GROWTH_BOUND, f"server peak memory grew by {growth / 2**20:.0f} MiB"


def test_two_billing_runs_of_one_period_at_once_bill_it_once(
    factory: sessionmaker[Session], settings: Settings, database_url: str
) -> None:
    build_demo(factory, customers=300, months=1, today=DEMO_TODAY)
    env = {**os.environ, "BILLING_API_DATABASE_URL": database_url,
           "BILLING_API_SECRET_KEY": TEST_SECRET}
    runs = [subprocess.Popen(BILL_COMMAND, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    outcomes = [(run.returncode, out, err) for run, (out, err) in zip(runs, outputs, strict=True)]

    billed = [i for i, (code, out, _) in enumerate(outcomes) if code == 0 and "invoices" in out]
    assert len(billed) == 1, outcomes
    _, invoices, lines, *_ = outcomes[billed[0]][1].strip().split("\t")[2:]
    code, out, err = outcomes[1 - billed[0]]
    # SQLite queues the second writer until the first commits; PostgreSQL refuses it at once
    # while the first holds the period (or finds it billed, if the first was quicker).
    assert (code == 3 and "already billed" in out) or (
        code == 1 and "is running now" in " ".join(err.split())
    ), outcomes
    print(f"\nsecond run: {'already billed' if code == 0 else 'refused, running now'}")

    with factory() as session:
        assert session.scalar(select(func.count()).select_from(BillingRun)
                              .where(BillingRun.period == NEW_PERIOD)) == 1
        assert session.scalar(select(func.count()).select_from(Invoice)
                              .where(Invoice.invoice_date == NEW_INVOICE_DATE)) == int(
            invoices.split()[0])
        assert session.scalar(select(func.count()).select_from(PriceLine)
                              .where(PriceLine.invoice_date == NEW_INVOICE_DATE)) == int(
            lines.split()[0])
        numbers = session.scalars(select(Invoice.invoice_number)
                                  .where(Invoice.invoice_date == NEW_INVOICE_DATE)).all()
        assert len(numbers) == len(set(numbers))


def test_a_full_connection_pool_is_a_quick_503_not_a_hang(
    factory: sessionmaker[Session], settings: Settings, database_url: str
) -> None:
    """When every pooled connection of the worker threads stays busy (slow clients holding
    long downloads) past the pool timeout, a request that needs one gets a 503 with
    ``Retry-After``, not a 500 or a hang; one answered on the event loop is not held up."""
    partner = make_partner(factory, settings)
    app = create_app(settings)
    app.state.engine.dispose()
    tiny = make_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    app.state.engine, app.state.session_factory = tiny, make_session_factory(tiny)
    app.state.read_engine = tiny
    headers = {"X-Api-Key": partner.secret, "Accept": "application/json"}
    zip_of_ubl = {"format": "ubl"}  # rendered on a worker thread, from the threads' pool
    with serve(app) as base:
        assert httpx.get(base + "/api/v4/invoices", params=zip_of_ubl, headers=headers,
                         timeout=10).status_code == 200
        with tiny.connect() as held:  # the only connection, busy elsewhere
            held.exec_driver_sql("SELECT 1")
            started = time.monotonic()
            busy = httpx.get(base + "/api/v4/invoices", params=zip_of_ubl, headers=headers,
                             timeout=10)
            took = time.monotonic() - started
            on_the_loop = httpx.get(base + "/api/v4/invoices", headers=headers, timeout=10)
        assert busy.status_code == 503, busy.text
        assert busy.json()["code"] == "server_busy" and int(busy.headers["retry-after"]) > 0
        assert took < 5
        assert on_the_loop.status_code == 200, on_the_loop.text
        assert httpx.get(base + "/api/v4/invoices", params=zip_of_ubl, headers=headers,
                         timeout=10).status_code == 200
