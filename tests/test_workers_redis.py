"""``billing-api serve --workers 2`` with ``BILLING_API_REDIS_URL``: limits exact across workers.

Two real worker processes (uvicorn's multiprocess mode, the command operators run) share one
Redis. A burst of concurrent requests, each on its own connection, is spread by the kernel
over both workers; the test finds which worker answered each request (the server side of the
request's TCP connection, looked up in /proc) and insists that both took part. Then the
per-key API rate limit lets exactly its limit through and answers every excess request 429,
and the portal's login throttle lets exactly its per-e-mail limit of guesses reach the password
check: counted per worker, each would have let up to its limit through by itself.
The in-process variants are in tests/test_ratelimit_redis.py and tests/test_refusal_flood.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import users
from billing_api.db import transaction
from billing_api.settings import Settings
from tests.access_helpers import make_partner
from tests.browser import CSRF_INPUT
from tests.test_deploy_nginx import end_workers, worker_processes
from tests.test_ops import billing_api_serve
from tests.test_ratelimit_redis import redis_db, redis_url  # noqa: F401  (fixtures)

SMALL = "/api/v4/invoices?startDate=20260101&endDate=20260101"  # authenticated, tiny
PASSWORD = "correct horse battery staple"


def _proc_address(address: tuple[str, int]) -> str:
    """``127.0.0.1:5000`` as /proc/net/tcp writes it: ``0100007F:1388``."""
    return f"{socket.inet_aton(address[0])[::-1].hex().upper()}:{address[1]:04X}"


def connection_owner(client: tuple[str, int], server_port: int,
                     workers: list[int]) -> int | None:
    """The worker process holding the server end of the TCP connection from ``client``."""
    inode = None
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if local.endswith(f":{server_port:04X}") and remote == _proc_address(client):
                inode = fields[9]
    if inode is None:
        return None
    for pid in workers:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:  # closed meanwhile
                continue
    return None


def client_address(response: httpx.Response) -> tuple[str, int]:
    address = response.extensions["network_stream"].get_extra_info("client_addr")
    return str(address[0]), int(address[1])


def wait_for_workers(base: str, workers: list[int]) -> None:
    """Until each worker has answered a request: the server answers as soon as one has started."""
    port = int(base.rsplit(":", 1)[1])
    seen: set[int | None] = set()
    deadline = time.monotonic() + 120
    while not seen >= set(workers):
        assert time.monotonic() < deadline, f"only {seen} of {workers} answered"
        with httpx.Client(base_url=base, timeout=60) as http:
            seen.add(connection_owner(client_address(http.get("/healthz")), port, workers))


def burst(count: int, prepare: Callable[[httpx.Client], httpx.Response],
          send: Callable[[httpx.Client], httpx.Response], base: str,
          workers: list[int]) -> list[tuple[int, int | None]]:
    """``count`` requests at the same moment, each on its own kept-alive connection, half of
    them held by each worker: a connection is opened (and used by ``prepare``) again until it
    lands on a worker with room, so that the split does not depend on the kernel's mood.
    Returns (status, answering worker) of each request."""
    port = int(base.rsplit(":", 1)[1])
    start = threading.Barrier(count)
    room = dict.fromkeys(workers, count // len(workers))
    room_lock = threading.Lock()
    results: list[tuple[int, int | None]] = [(0, None)] * count

    def one(i: int) -> None:
        for _ in range(200):
            http = httpx.Client(base_url=base, timeout=60)
            owner = connection_owner(client_address(prepare(http)), port, workers)
            with room_lock:
                if owner is not None and room.get(owner, 0) > 0:
                    room[owner] -= 1
                    break
                if owner is None or not any(room.values()):  # odd count: the last one
                    break
            http.close()
        try:
            start.wait(timeout=120)
            answer = send(http)
            # Looked up at once: the connection is kept alive, so the worker still holds it.
            results[i] = (answer.status_code,
                          connection_owner(client_address(answer), port, workers))
        finally:
            http.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_rate_limit_and_login_throttle_are_exact_across_two_workers(
        settings: Settings, factory: sessionmaker[Session], database_url: str,
        redis_url: str, tmp_path: Path) -> None:  # noqa: F811  (the fixture)
    limit, sent = 12, 40
    partner = make_partner(factory, settings, name="Scale Cloud BV")
    with transaction(factory) as session:
        _, admin = users.create_company(session, "Guessed BV", "admin@guessed.example",
                                        PASSWORD)
        email = admin.email
    env = {"BILLING_API_REDIS_URL": redis_url,
           "BILLING_API_RATE_LIMIT_PER_MINUTE": str(limit)}
    with billing_api_serve(database_url, tmp_path, "--workers", "2", env=env) as (
            process, base, log_path), ExitStack() as cleanup:
        workers = worker_processes(process.pid)
        assert len(workers) == 2
        cleanup.callback(end_workers, workers)  # the helper's SIGKILL cannot reach them
        wait_for_workers(base, workers)

        api = burst(sent, lambda http: http.get("/healthz").raise_for_status(),
                    lambda http: http.get(SMALL, headers={"X-Api-Key": partner.secret}),
                    base, workers)

        pages: dict[int, str] = {}

        def login_page(http: httpx.Client) -> httpx.Response:
            page = http.get("/")
            pages[id(http)] = page.text
            return page

        def guess(http: httpx.Client) -> httpx.Response:
            found = CSRF_INPUT.search(pages[id(http)])
            assert found, "the login page has no CSRF token"
            return http.post("/portal/login", data={
                "email": email, "password": "a wrong guess", "csrf_token": found.group(1)})

        logins = burst(20, login_page, guess, base, workers)
        log = log_path.read_text()

    assert "rate limits: Redis" in log
    statuses = sorted(status for status, _ in api)
    assert statuses == [200] * limit + [429] * (sent - limit), statuses
    # Both workers answered, half each (a connection lost to the keep-alive timeout might
    # have moved: the count is not insisted on).
    assert {owner for _, owner in api} == set(workers), api
    # The throttle's default: 5 guesses per e-mail reach the password check (400), the rest
    # are refused before it.
    statuses = sorted(status for status, _ in logins)
    assert statuses == [400] * 5 + [429] * 15, statuses
    assert {owner for _, owner in logins} == set(workers), logins
