"""docs/operations.md's deployment, run: nginx terminating TLS in front of two workers.

Debian's nginx runs ``deploy/nginx/billing-api.conf`` (the file the docs install, with its
placeholders filled in) inside a minimal main configuration whose pid, logs and temp files
live in a temporary folder, on free loopback ports; ``billing-api serve --workers 2`` runs
behind it with ``BILLING_API_TRUSTED_PROXIES=127.0.0.1/32``. The certificate is a fresh
self-signed one from ``openssl``, and the client verifies it. Clients connect from chosen
loopback addresses (127.0.0.2, 127.0.0.1, 127.0.0.3) by binding their sockets, so the
whitelist's decisions show that the app sees the real client through the proxy.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, permissions, whitelist
from billing_api.access.models import AuditEvent, Company, User
from billing_api.db import transaction
from billing_api.demo.generator import ADMIN_EMAIL, build_demo
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests.conftest import skip_or_fail
from tests.test_ops import TODAY, _free_port, billing_api_serve

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx" / "billing-api.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WHITELISTED = "127.0.0.2"
DOCUMENT = "/api/v4/customerinvoices?startDate=20200101&endDate=20301231"

MAIN_CONFIG = """\
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
worker_processes 1;
daemon off;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/billing-api.conf;
}}
"""


def fill_in(template: str, values: dict[str, str]) -> str:
    """The site file with its placeholders replaced, as the docs' sed command does."""
    for name, value in values.items():
        placeholder = f"@{name}@"
        assert placeholder in template, f"{placeholder} is gone from {SITE.name}"
        template = template.replace(placeholder, value)
    assert re.search(r"@[A-Z_]+@", template) is None, "a placeholder the test does not know"
    return template


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=billing.test",
         "-addext", "subjectAltName=DNS:billing.test,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return cert, key


@contextmanager
def nginx(folder: Path, values: dict[str, str]) -> Iterator[None]:
    (folder / "billing-api.conf").write_text(fill_in(SITE.read_text(), values))
    user = "user root root;" if os.geteuid() == 0 else ""  # the folder is root's own
    (folder / "nginx.conf").write_text(MAIN_CONFIG.format(tmp=folder, user=user))
    command = [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"),
               "-e", str(folder / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = int(values["HTTPS_LISTEN"].rsplit(":", 1)[1])
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                assert process.poll() is None, (folder / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def client(source: str, cafile: Path, **kw: object) -> httpx.Client:
    """An HTTPS client whose connections come from ``source`` and that verifies the
    test certificate."""
    context = ssl.create_default_context(cafile=str(cafile))
    transport = httpx.HTTPTransport(local_address=source, verify=context)
    return httpx.Client(transport=transport, timeout=60, **kw)  # type: ignore[arg-type]


def open_api_for(factory: sessionmaker[Session], settings: Settings, network: str) -> str:
    with transaction(factory) as session:
        admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
        company = session.get_one(Company, admin.company_id)
        permissions.set_api_enabled(session, company, admin, True)
        whitelist.add_entry(session, company, network)
        _, secret = keys.create_key(session, settings, company,
                                    environment=Environment.PRODUCTION, name="erp",
                                    actor=admin)
    return secret


def worker_processes(pid: int) -> list[int]:
    """uvicorn's worker processes under ``pid`` (multiprocessing children of the server)."""
    workers = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name is in parentheses and may hold spaces: fields follow the last ")".
            parent = int(stat_file.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat_file.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
        if parent == pid and b"spawn_main" in command:
            workers.append(int(stat_file.parent.name))
    return workers


def end_workers(pids: list[int]) -> None:
    for pid in pids:
        with suppress(OSError):  # gone already: nothing to do
            # Still the worker (a PID is not reused by something else meanwhile).
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def test_nginx_tls_in_front_of_two_workers_and_the_whitelist_sees_the_real_client(
        settings: Settings, factory: sessionmaker[Session], database_url: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path(NGINX).exists():
        skip_or_fail("nginx is not installed (Debian package nginx)")
    build_demo(factory, customers=5, months=2, today=TODAY)
    secret = open_api_for(factory, settings, WHITELISTED)
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("BILLING_API_TRUSTED_PROXIES", "127.0.0.1/32")
    https_port, http_port = _free_port(), _free_port()
    headers = {"X-Api-Key": secret}
    with billing_api_serve(database_url, tmp_path, "--workers", "2") as (process, app, _), \
            ExitStack() as cleanup:
        workers = worker_processes(process.pid)
        assert len(workers) == 2
        # Should the test fail, the helper SIGKILLs the server, which cannot stop its workers.
        cleanup.callback(end_workers, workers)
        values = {"UPSTREAM": app.removeprefix("http://"),
                  "HTTPS_LISTEN": f"127.0.0.1:{https_port}",
                  "HTTP_LISTEN": f"127.0.0.1:{http_port}", "SERVER_NAME": "billing.test",
                  "TLS_CERTIFICATE": str(cert), "TLS_CERTIFICATE_KEY": str(key)}
        # The app directly, from the whitelisted address (not a proxy: its own peer counts).
        with httpx.Client(transport=httpx.HTTPTransport(local_address=WHITELISTED),
                          timeout=60) as direct:
            reference = direct.get(app + DOCUMENT, headers=headers)
        assert reference.status_code == 200 and len(reference.content) > 50_000
        with nginx(tmp_path, values):
            base = f"https://127.0.0.1:{https_port}"
            with client(WHITELISTED, cert) as allowed:
                through = allowed.get(base + DOCUMENT, headers=headers)
                login = allowed.get(base + "/")
                metrics = allowed.get(base + "/metrics")
            with client("127.0.0.1", cert) as loopback:
                refused = loopback.get(base + DOCUMENT, headers=headers)
            with client("127.0.0.3", cert) as spoofer:
                forged = {"X-Forwarded-For": WHITELISTED, "Forwarded": f"for={WHITELISTED}"}
                spoofed = spoofer.get(base + DOCUMENT, headers={**headers, **forged})
            with httpx.Client(transport=httpx.HTTPTransport(local_address=WHITELISTED),
                              timeout=10) as plain:
                redirect = plain.get(f"http://127.0.0.1:{http_port}{DOCUMENT}")
        access_log = (tmp_path / "access.log").read_text()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    assert through.status_code == 200, through.text
    assert through.content == reference.content  # whole, through TLS and proxy buffering
    # X-Forwarded-Proto: https reached the portal, which marks its cookie Secure.
    assert login.status_code == 200 and "secure" in login.headers["set-cookie"].lower()
    assert metrics.status_code == 404
    assert refused.status_code == 403 and "ip_not_whitelisted" in refused.text
    # A client's own X-Forwarded-For is replaced by nginx, so it cannot borrow an address.
    assert spoofed.status_code == 403 and "ip_not_whitelisted" in spoofed.text
    assert redirect.status_code == 301
    assert redirect.headers["location"].startswith("https://")
    assert secret not in access_log
    with factory() as session:
        denied = set(session.scalars(select(AuditEvent.client_address)
                                     .where(AuditEvent.event_type == "api_denied")))
    assert denied == {"127.0.0.1", "127.0.0.3"}  # the real clients, never nginx's address
