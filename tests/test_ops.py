"""Operations over real HTTP: probes, request ids, JSON logs, metrics, graceful shutdown, backups.

The in-process tests serve the app with uvicorn on loopback (tests/http_server.py); the
shutdown and worker tests start ``python -m billing_api serve`` as a subprocess, exactly as an
operator would, on the suite's database. The backup test runs the commands the README gives.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from billing_api import migrate
from billing_api.access import keys, permissions, whitelist
from billing_api.access.models import ApiKey, Company, User
from billing_api.app import create_app
from billing_api.billing.models import BillingRun
from billing_api.db import make_engine, make_session_factory, transaction
from billing_api.demo.generator import ADMIN_EMAIL, build_demo
from billing_api.environments import Environment
from billing_api.export import stream
from billing_api.ops.logs import JsonFormatter
from billing_api.settings import Settings
from tests.conftest import TEST_SECRET, _drop_postgres_database
from tests.http_server import ipv6_loopback_available, serve

TODAY = dt.date(2026, 11, 25)
WHOLE_RANGE = {"startDate": "20200101", "endDate": "20301231"}
HEX_ID = re.compile(r"[0-9a-f]{32}")
ROOT = Path(__file__).resolve().parent.parent


# --- helpers ----------------------------------------------------------------------------------


def open_demo_api(factory: sessionmaker[Session], settings: Settings) -> str:
    """Enable the demo partner's API, whitelist loopback and return a production key."""
    with transaction(factory) as session:
        admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
        company = session.get_one(Company, admin.company_id)
        permissions.set_api_enabled(session, company, admin, True)
        for network in ("127.0.0.1", "::1"):
            whitelist.add_entry(session, company, network)
        _, secret = keys.create_key(session, settings, company,
                                    environment=Environment.PRODUCTION, name="ops",
                                    actor=admin)
    return secret


def demo(factory: sessionmaker[Session], settings: Settings, customers: int = 5,
         months: int = 2) -> str:
    build_demo(factory, customers=customers, months=months, today=TODAY)
    return open_demo_api(factory, settings)


def quiet_settings(settings: Settings, **changes: Any) -> Settings:
    """The suite's settings without a rate limit to speak of (per key or per address)."""
    return settings.model_copy(update={"rate_limit_per_minute": 1_000_000,
                                       "failed_auth_per_minute": 1_000_000, **changes})


class JsonLines(logging.Handler):
    """Every record, formatted as ``billing-api serve`` formats it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@contextmanager
def json_logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    answer = httpx.get(base + "/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def price_lines(document: dict[str, Any]) -> int:
    return sum(len(s["PriceLines"]) for invoice in document["Invoices"]
               for c in invoice["Customers"] for s in c["Subscriptions"])


# --- probes -----------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_while_the_database_does(settings: Settings,
                                                           engine: Engine) -> None:
    with serve(create_app(settings)) as base:
        for path in ("/healthz", "/readyz"):
            answer = httpx.get(base + path, timeout=10)
            assert (answer.status_code, answer.text) == (200, "ok"), path
            assert answer.headers["cache-control"] == "no-store"


def test_readyz_is_503_with_retry_after_while_the_database_is_unreachable(
        settings: Settings) -> None:
    # Nothing listens on port 1: every connection attempt is refused at once.
    down = settings.model_copy(update={
        "database_url": "postgresql+psycopg://billing:billing@127.0.0.1:1/billing"})
    with serve(create_app(down)) as base:
        ready = httpx.get(base + "/readyz", timeout=10)
        alive = httpx.get(base + "/healthz", timeout=10)
        scraped = scrape(base)
    assert (ready.status_code, ready.text) == (503, "database unavailable")
    assert int(ready.headers["retry-after"]) > 0
    assert "billing" not in ready.text  # no host, user or password in the answer
    assert alive.status_code == 200  # liveness does not depend on the database
    assert sample(scraped, "billing_api_database_up") == 0


# --- request ids and logs ---------------------------------------------------------------------


def test_every_answer_carries_a_request_id_the_client_may_choose(
        settings: Settings, engine: Engine) -> None:
    longest = "a.B-9_" * 10 + "abcd"  # 64 characters
    app = create_app(settings)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        for path in ("/healthz", "/api/v4/invoices", "/nope", "/", "/static/portal.css",
                     "/api/openapi.json"):
            assert HEX_ID.fullmatch(client.get(path).headers["x-request-id"]), path
        for chosen in ("abc-123", "req_1.2", longest):
            answer = client.get("/api/v4/invoices", headers={"X-Request-Id": chosen})
            assert answer.status_code == 401
            assert answer.headers["x-request-id"] == chosen
        for refused in (longest + "e", "two words", "<script>", "", "a/b", "ab;c=1"):
            answer = client.get("/healthz", headers={"X-Request-Id": refused})
            assert HEX_ID.fullmatch(answer.headers["x-request-id"]), refused
        ids = {client.get("/healthz").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_an_unexpected_error_is_a_500_with_its_request_id_in_the_answer_and_the_log(
        settings: Settings, engine: Engine) -> None:
    app = create_app(settings)

    @app.get("/test-only/boom")
    def boom() -> None:
        logging.getLogger("billing_api.test").warning("about to fail")
        raise RuntimeError("boom")

    with json_logs() as logs, serve(app) as base:
        answer = httpx.get(base + "/test-only/boom", timeout=10,
                           headers={"X-Request-Id": "trace-500", "Accept": "application/json"})
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "trace-500"
    assert answer.json()["code"] == "internal_error" and "RuntimeError" not in answer.text
    mine = [e for e in logs.entries() if e.get("request_id") == "trace-500"]
    by_logger = {e["logger"]: e for e in mine}
    assert by_logger["billing_api.test"]["message"] == "about to fail"
    # uvicorn's traceback line, written after the app gave up, still names the request.
    assert "RuntimeError: boom" in by_logger["uvicorn.error"]["exception"]
    access = by_logger["billing_api.requests"]
    assert (access["status"], access["path"], access["method"]) == (500, "/test-only/boom",
                                                                    "GET")
    assert access["level"] == "INFO" and "aborted" not in access["message"]


def test_log_lines_are_one_json_object_each_with_the_request_context(
        settings: Settings, factory: sessionmaker[Session]) -> None:
    secret = demo(factory, settings)
    with json_logs() as logs, serve(create_app(quiet_settings(settings))) as base:
        download = httpx.get(base + "/api/v4/invoices", params={**WHOLE_RANGE, "format": "xml"},
                             headers={"X-Api-Key": secret, "X-Request-Id": "dl-1"}, timeout=30)
        forged = httpx.get(base + "/api/v4/invoices%0d%0a%7B%22level%22%3A%22ERROR%22%7D",
                           headers={"X-Api-Key": secret}, timeout=10)
        refused = httpx.get(base + "/api/v4/invoices",
                            params={"token": f"{secret}.9999999999.abc"}, timeout=10)
    assert download.status_code == 200 and forged.status_code == 404
    assert refused.status_code == 401
    assert all("\n" not in line and "\r" not in line for line in logs.lines)
    entries = logs.entries()
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert all(e["time"].endswith("Z") for e in entries)
    access = next(e for e in entries if e.get("request_id") == "dl-1"
                  and e["logger"] == "billing_api.requests")
    assert access["path"] == "/api/v4/invoices"  # never the query string
    assert (access["method"], access["status"]) == ("GET", 200)
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] > 0
    assert access["level"] == "INFO"
    injected = next(e for e in entries if e.get("request_id") == forged.headers["x-request-id"])
    assert injected["path"] == '/api/v4/invoices\r\n{"level":"ERROR"}'  # data, not a new line
    text = "\n".join(logs.lines)
    assert secret not in text and "9999999999" not in text


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_count_requests_durations_export_lines_and_billing_runs(
        settings: Settings, factory: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = demo(factory, settings)
    monkeypatch.setattr(stream, "LINES_PER_CHUNK", 5)  # many chunks from little data
    with serve(create_app(quiet_settings(settings))) as base:
        before = scrape(base)
        as_json = httpx.get(base + "/api/v4/invoices", params={**WHOLE_RANGE, "format": "json"},
                            headers={"X-Api-Key": secret}, timeout=30)
        as_xml = httpx.get(base + "/api/v2/consolidatedinvoices", params=WHOLE_RANGE,
                           headers={"X-Api-Key": secret}, timeout=30)
        for _ in range(3):
            httpx.get(base + "/healthz", timeout=10)
        httpx.get(base + "/no/such/page", timeout=10)
        httpx.get(base + "/api/v4/customerinvoices", timeout=10)  # 401
        after = scrape(base)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    invoices_route = {"method": "GET", "route": "/api/{version}/invoices"}
    assert delta("billing_api_http_requests_total", **invoices_route, status="200") == 1
    assert delta("billing_api_http_requests_total", method="GET", route="/healthz",
                 status="200") == 3
    assert delta("billing_api_http_requests_total", method="GET", route="<unmatched>",
                 status="404") == 1
    assert delta("billing_api_http_requests_total", method="GET",
                 route="/api/{version}/customerinvoices", status="401") == 1
    assert delta("billing_api_http_request_duration_seconds_count", **invoices_route) == 1
    assert delta("billing_api_http_request_duration_seconds_sum", **invoices_route) > 0
    json_lines = price_lines(as_json.json())
    xml_lines = len(etree.fromstring(as_xml.content).findall(".//PriceLine"))
    assert json_lines > 5 * 3 and xml_lines > 5 * 3  # several chunks each
    assert delta("billing_api_export_lines_streamed_total", document="invoices") == json_lines
    assert delta("billing_api_export_lines_streamed_total",
                 document="consolidatedinvoices") == xml_lines
    with factory() as session:
        runs = session.execute(select(BillingRun.environment, func.count(),
                                      func.sum(BillingRun.invoice_count))
                               .group_by(BillingRun.environment)).all()
    assert runs
    for environment, count, invoice_count in runs:
        assert sample(after, "billing_api_billing_runs_total", environment=environment) == count
        assert sample(after, "billing_api_billing_run_invoices_total",
                      environment=environment) == invoice_count
        assert sample(after, "billing_api_billing_run_last_started_timestamp_seconds",
                      environment=environment) > time.time() - 3600
    assert sample(after, "billing_api_database_up") == 1
    assert sample(after, "billing_api_http_requests_in_progress") == 1  # the scrape itself


@pytest.mark.parametrize(("allow", "trusted", "forwarded", "status"), [
    ("127.0.0.1/32,::1/128", "", None, 200),  # the default: loopback only
    ("", "", None, 403),  # nobody
    ("10.0.0.0/8", "", None, 403),
    # Behind a trusted proxy the scraper is judged by its forwarded address, like the API.
    ("127.0.0.1/32", "127.0.0.1/32", "203.0.113.9", 403),
    ("203.0.113.0/24", "127.0.0.1/32", "203.0.113.9", 200),
    # From an untrusted peer the header is ignored: it cannot claim an allowed address.
    ("203.0.113.0/24", "", "203.0.113.9", 403),
])
def test_metrics_are_served_only_to_allowed_networks(
        settings: Settings, engine: Engine, allow: str, trusted: str, forwarded: str | None,
        status: int) -> None:
    app = create_app(settings.model_copy(update={"metrics_allow": allow,
                                                 "trusted_proxies": trusted}))
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with serve(app) as base:
        answer = httpx.get(base + "/metrics", headers=headers, timeout=10)
    assert answer.status_code == status, answer.text
    if status == 403:
        assert "BILLING_API_METRICS_ALLOW" in answer.text and "billing_api_" not in answer.text


def test_metrics_over_ipv6_loopback_and_a_bad_allow_list(settings: Settings,
                                                         engine: Engine) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        create_app(settings.model_copy(update={"metrics_allow": "127.0.0.1/33"}))
    if not ipv6_loopback_available():
        return
    with serve(create_app(settings), "::1") as base:
        assert httpx.get(base + "/metrics", timeout=10).status_code == 200


# --- the real server: JSON logs, graceful shutdown, workers ----------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_process(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[
        tuple[subprocess.Popen[bytes], str, Path]]:
    """``python -m billing_api serve`` on a free loopback port with exactly ``env``, once it
    answers ``/healthz``; yields (process, base URL, log file) and kills it afterwards."""
    port = _free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "billing_api", "serve", "--host", "127.0.0.1",
             "--port", str(port), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=log_file, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield process, base, log_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@contextmanager
def billing_api_serve(database_url: str, tmp_path: Path, *args: str,
                      env: dict[str, str] | None = None) -> Iterator[
        tuple[subprocess.Popen[bytes], str, Path]]:
    """``serve_process`` on the test database with the suite's secret; ``env`` adds or
    overrides variables (the rate limit is otherwise set out of reach)."""
    full = {**os.environ, "BILLING_API_DATABASE_URL": database_url,
            "BILLING_API_SECRET_KEY": TEST_SECRET, "BILLING_API_RATE_LIMIT_PER_MINUTE": "100000",
            **(env or {})}
    with serve_process(tmp_path, full, *args) as served:
        yield served


# uvicorn re-raises the signal once it has shut down, so that a supervisor sees the process
# end by the SIGTERM it sent (systemd counts that as a clean stop); 0 from older versions.
STOPPED_CLEANLY = (0, -signal.SIGTERM)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_finishes_a_running_download_and_refuses_new_connections(
        settings: Settings, factory: sessionmaker[Session], database_url: str,
        tmp_path: Path) -> None:
    """A partner's download that is running when the server is told to stop completes as a
    well-formed document; meanwhile nobody new can connect; then the server exits cleanly."""
    secret = demo(factory, settings, customers=200, months=6)
    path = "/api/v4/customerinvoices?startDate=20200101&endDate=20301231"
    with billing_api_serve(database_url, tmp_path) as (process, base, log_path):
        whole = httpx.get(base + path, headers={"X-Api-Key": secret}, timeout=60).content
        assert len(whole) > 5_000_000  # well beyond what socket buffers hold
        port = int(base.rsplit(":", 1)[1])
        # A slow reader with a small receive window: the server must wait for it.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {secret}\r\n"
                     "X-Request-Id: slow-reader\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200
        body = [response.read(64 * 1024)]
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while not _refused(port):
            assert time.monotonic() < signalled + 10, "new connections are still accepted"
            time.sleep(0.05)
        refused_after = time.monotonic() - signalled
        time.sleep(0.5)
        assert process.poll() is None, "the server quit with a download running"
        while chunk := response.read(256 * 1024):
            body.append(chunk)
            time.sleep(0.01)
        response.close()
        sock.close()
        assert process.wait(timeout=30) in STOPPED_CLEANLY
        print(f"graceful shutdown: {len(whole)} bytes, new connections refused after "
              f"{refused_after:.2f} s, download done {time.monotonic() - signalled:.2f} s "
              "after SIGTERM")
    document = b"".join(body)
    assert document == whole
    etree.fromstring(document)  # well-formed, and whole
    lines = log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line of stderr is one JSON object
    access = [e for e in entries if e.get("request_id") == "slow-reader"]
    assert [(e["status"], e["path"]) for e in access] == [(200, "/api/v4/customerinvoices")]
    messages = [e["message"] for e in entries]
    # The download ended after the shutdown began, and the server only then finished.
    assert messages.index("Shutting down") < entries.index(access[0])
    assert entries.index(access[0]) < messages.index("Application shutdown complete.")
    assert secret not in "\n".join(lines)


def test_serve_with_workers_adds_up_every_workers_metrics(
        settings: Settings, engine: Engine, database_url: str, tmp_path: Path) -> None:
    with billing_api_serve(database_url, tmp_path, "--workers", "2") as (process, base, _):
        before = scrape(base)
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(12):  # a new connection each: spread over both workers
                client.get("/healthz", headers={"Connection": "close"})
        after = scrape(base)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in STOPPED_CLEANLY
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    assert sample(after, "billing_api_http_requests_total", **labels) - sample(
        before, "billing_api_http_requests_total", **labels) == 12


# --- backup and restore, as the README says ---------------------------------------------------


DOCUMENT_CALLS = [(f"/api/{version}/{document}", fmt)
                  for version in ("v2", "v4")
                  for document in ("invoices", "customerinvoices", "consolidatedinvoices")
                  for fmt in ("xml", "json")]


def documents(base: str, secret: str, subscription_id: int) -> dict[str, bytes]:
    """Every document the partner can download, by URL."""
    found = {}
    with httpx.Client(base_url=base, headers={"X-Api-Key": secret}, timeout=60) as client:
        for path, fmt in DOCUMENT_CALLS:
            answer = client.get(path, params={**WHOLE_RANGE, "format": fmt})
            assert answer.status_code == 200, answer.text
            found[f"{path}?{fmt}"] = answer.content
        details = client.get("/api/v4/subscriptiondetails",
                             params={"subscriptionId": subscription_id})
        assert details.status_code == 200
        found["details"] = details.content
    return found


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database
    return Path(database)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def test_backup_and_restore_serve_identical_documents(
        settings: Settings, factory: sessionmaker[Session], engine: Engine, database_url: str,
        backend: str, tmp_path: Path) -> None:
    """The README's commands: back up the live database, restore into a new one, and the
    restored database serves byte-identical documents (and the schema is current)."""
    secret = demo(factory, settings, customers=6, months=3)
    with factory() as session:
        subscription_id = session.scalar(text("SELECT min(subscription_id) FROM price_lines"))
    assert subscription_id
    app_settings = quiet_settings(settings)
    with serve(create_app(app_settings)) as base:
        original = documents(base, secret, subscription_id)
    if backend == "sqlite":
        restored_url = _sqlite_backup_and_restore(engine, factory, settings, database_url,
                                                  tmp_path)
    else:
        restored_url = _postgres_backup_and_restore(database_url, tmp_path)
    try:
        restored_settings = app_settings.model_copy(update={"database_url": restored_url})
        with serve(create_app(restored_settings)) as base:
            copy = documents(base, secret, subscription_id)
        restored = make_engine(restored_url)
        try:
            assert migrate.is_up_to_date(restored)
            with make_session_factory(restored)() as session:
                names = set(session.scalars(select(ApiKey.name)))
        finally:
            restored.dispose()
    finally:
        if backend != "sqlite":
            _drop_postgres(database_url, make_url(restored_url).database or "")
    assert copy == original
    assert len(original) == len(DOCUMENT_CALLS) + 1
    if backend == "sqlite":
        assert "written during the backup" in names


def _sqlite_backup_and_restore(engine: Engine, factory: sessionmaker[Session],
                               settings: Settings, database_url: str, tmp_path: Path) -> str:
    live = _sqlite_path(database_url)
    # A reader holding an old snapshot keeps SQLite from checkpointing: the last write lives
    # only in billing.db-wal, where copying billing.db with cp would miss it.
    reader = sqlite3.connect(live)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM api_keys").fetchone()
    with transaction(factory) as session:
        company = session.scalars(select(Company).where(Company.kind == "partner")).one()
        keys.create_key(session, settings, company, environment=Environment.SANDBOX,
                        name="written during the backup")
    naive = tmp_path / "naive-copy.db"
    # What `cp billing.db` gets while the server runs. In a process of its own: closing a file
    # descriptor of the database in this process would drop SQLite's POSIX locks on it.
    _run("cp", str(live), str(naive))
    backup = tmp_path / "backup.db"
    restored = tmp_path / "restored.db"
    if shutil.which("sqlite3"):
        _run("sqlite3", str(live), f".backup '{backup}'")
        _run("sqlite3", str(restored), f".restore '{backup}'")
    else:  # the README's Python one-liner, for machines without the sqlite3 tool
        _run(sys.executable, "-c", SQLITE_BACKUP, str(live), str(backup))
        _run(sys.executable, "-c", SQLITE_BACKUP, str(backup), str(restored))
    reader.rollback()
    reader.close()
    # The Python variant is tried either way, from the backup to a second copy.
    second = tmp_path / "second.db"
    _run(sys.executable, "-c", SQLITE_BACKUP, str(backup), str(second))
    for copy in (backup, restored, second, naive):
        check = sqlite3.connect(copy)
        try:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            latest = check.execute("SELECT count(*) FROM api_keys WHERE name = ?",
                                   ("written during the backup",)).fetchone()[0]
        except sqlite3.OperationalError:  # the copy missed even the tables (all in the WAL)
            assert copy == naive
            latest = 0
        finally:
            check.close()
        assert latest == (0 if copy == naive else 1), copy.name
    return f"sqlite:///{restored}"


# Kept identical to the README's "Backups" section.
SQLITE_BACKUP = ("import sqlite3, sys; d = sqlite3.connect(sys.argv[2]); "
                 "sqlite3.connect(sys.argv[1]).backup(d); d.close()")


def _libpq(url: str, database: str | None = None) -> str:
    """A SQLAlchemy URL as the libpq URI pg_dump and friends take."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def _postgres_backup_and_restore(database_url: str, tmp_path: Path) -> str:
    dump = tmp_path / "billing.dump"
    name = f"{make_url(database_url).database}_restored"
    _run("pg_dump", "--format=custom", f"--file={dump}", _libpq(database_url))
    _run("createdb", f"--maintenance-db={_libpq(database_url, 'postgres')}",
         "--template=template0", name)
    _run("pg_restore", "--no-owner", "--exit-on-error",
         f"--dbname={_libpq(database_url, name)}", str(dump))
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres(database_url: str, name: str) -> None:
    _drop_postgres_database(database_url, name)  # waits out an autovacuum worker


def test_the_readme_gives_the_backup_commands_the_test_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in (".backup 'billing-backup.db'", ".restore 'billing-backup.db'", SQLITE_BACKUP,
                   "pg_dump --format=custom", "createdb --maintenance-db=",
                   "--template=template0", "pg_restore --no-owner --exit-on-error"):
        assert needle in readme, needle



def test_the_app_keeps_its_pool_of_connections_open(database_url: str) -> None:
    # Overflow connections are closed on return: re-opening one per request halved small
    # downloads' throughput, so the pool has a fixed size, no overflow, and keeps them all.
    engine = make_engine(database_url, pool_size=3, pool_timeout=0.1)
    try:
        connections = [engine.connect() for _ in range(3)]
        with pytest.raises(sqlalchemy.exc.TimeoutError):  # a fourth waits: no overflow
            engine.connect()
        for connection in connections:
            connection.close()
        assert engine.pool.checkedin() == 3  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    memory = make_engine("sqlite://", pool_size=3)  # in memory: its own one-connection pool
    with memory.connect() as connection:
        assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    memory.dispose()
