"""The client address behind a trusted proxy, over a real socket with raw header lines.

A client writes its own ``X-Forwarded-For: 127.0.0.1``; the proxy (HAProxy's ``option
forwardfor``) adds a *second* field line with the real address. Both lines are one list (RFC 9110
§5.3), so the right-most untrusted hop is the real address, never the forged first line. The
same holds for ``Forwarded`` (RFC 7239), and a request carrying both headers has no address.
httpx folds headers, so the requests here are bytes on a socket.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.client_address import (
    BOTH_HEADERS,
    UNKNOWN_HOP,
    client_address,
    forwarded_hops,
    resolve,
)
from billing_api.access.models import AuditEvent
from billing_api.settings import Settings
from tests.access_helpers import denied_reasons, make_partner, test_app
from tests.http_server import serve
from tests.test_ops import billing_api_serve

WHOAMI = "/api/v4/whoami"
PROXY = "127.0.0.1/32"  # the test client's own address plays the trusted proxy
REAL = "198.51.100.9"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        found: dict[str, object] = json.loads(self.body)
        return found


def raw_request(base: str, method: str, path: str, lines: list[tuple[str, str]],
                body: bytes = b"") -> Answer:
    """Send exactly these header lines (repeats kept, in order) and read the whole answer."""
    parts = urlsplit(base)
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in lines)
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    block, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = block.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(": ")
        headers.setdefault(name.lower(), value)
    if headers.get("transfer-encoding") == "chunked":
        payload = _unchunk(payload)
    return Answer(int(status_line.split()[1]), headers, payload)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + rest[:size], rest[size + 2:]
    return out


@pytest.fixture
def trusting(settings: Settings) -> Settings:
    return settings.model_copy(update={"trusted_proxies": PROXY})


@dataclass
class Api:
    base: str
    secret: str
    real_secret: str


@pytest.fixture
def api(trusting: Settings, factory: sessionmaker[Session]) -> Iterator[Api]:
    """Two partners: one whitelists only 127.0.0.1 (what the forger claims), the other only
    the real client's address."""
    loopback = make_partner(factory, trusting, name="Loopback BV", networks=("127.0.0.1",))
    real = make_partner(factory, trusting, name="Real BV", networks=(REAL, "2001:db8::7"))
    with serve(test_app(trusting)) as base:
        yield Api(base, loopback.secret, real.secret)


def whoami(api: Api, secret: str, lines: list[tuple[str, str]]) -> Answer:
    return raw_request(api.base, "GET", WHOAMI,
                       [("X-Api-Key", secret), ("Accept", "application/json"), *lines])


def assert_denied(answer: Answer, code: str, factory: sessionmaker[Session]) -> None:
    assert answer.status == 403, answer.body
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code
    assert denied_reasons(factory)[-1] == code  # audited, with why


# --- X-Forwarded-For on several lines -------------------------------------------------------


def test_a_forged_first_x_forwarded_for_line_does_not_pass_the_whitelist(
        api: Api, factory: sessionmaker[Session]) -> None:
    """The attack of issue 11: forged first line 127.0.0.1 (whitelisted), the proxy's line
    with the real address second. The real address is judged: 403."""
    answer = whoami(api, api.secret, [("X-Forwarded-For", "127.0.0.1"),
                                      ("X-Forwarded-For", REAL)])
    assert_denied(answer, "ip_not_whitelisted", factory)
    assert REAL in str(answer.json()["detail"])
    # The same, with the lines' hops written several to a line and with blank elements.
    for lines in ([("X-Forwarded-For", "10.9.9.9, 127.0.0.1"), ("X-Forwarded-For", REAL)],
                  [("X-Forwarded-For", "127.0.0.1,"), ("X-Forwarded-For", f" , {REAL}")],
                  [("x-forwarded-for", "127.0.0.1"), ("X-FORWARDED-FOR", REAL)]):
        assert_denied(whoami(api, api.secret, lines), "ip_not_whitelisted", factory)


def test_the_lines_are_read_in_order_and_the_real_client_gets_in(
        api: Api, factory: sessionmaker[Session]) -> None:
    answer = whoami(api, api.real_secret, [("X-Forwarded-For", "127.0.0.1"),
                                           ("X-Forwarded-For", REAL)])
    assert answer.status == 200, answer.body
    assert answer.json()["client_address"] == REAL
    # The client's own line last would be believed only if the proxy wrote it: here the
    # right-most line is the forger's 127.0.0.1, a trusted proxy, so the walk goes on left.
    answer = whoami(api, api.real_secret, [("X-Forwarded-For", REAL),
                                           ("X-Forwarded-For", "127.0.0.1")])
    assert answer.status == 200 and answer.json()["client_address"] == REAL
    assert denied_reasons(factory) == []


def test_without_a_trusted_proxy_every_forwarding_line_is_ignored(
        settings: Settings, factory: sessionmaker[Session]) -> None:
    real = make_partner(factory, settings, name="Real BV", networks=(REAL,))
    with serve(test_app(settings)) as base:
        answer = raw_request(base, "GET", WHOAMI, [
            ("X-Api-Key", real.secret), ("Accept", "application/json"),
            ("X-Forwarded-For", REAL), ("X-Forwarded-For", REAL), ("Forwarded", f"for={REAL}")])
    # The TCP peer (127.0.0.1) is judged: uvicorn did not rewrite it from the headers.
    assert_denied(answer, "ip_not_whitelisted", factory)
    assert "127.0.0.1" in str(answer.json()["detail"])


# --- Forwarded (RFC 7239) -------------------------------------------------------------------


def test_a_forged_first_forwarded_line_does_not_pass_the_whitelist(
        api: Api, factory: sessionmaker[Session]) -> None:
    for lines in ([("Forwarded", "for=127.0.0.1"), ("Forwarded", f"for={REAL};proto=https")],
                  [("Forwarded", 'for="127.0.0.1:80", for=127.0.0.1'),
                   ("Forwarded", f'proto=http;for="{REAL}:4711"')],
                  [("Forwarded", "for=127.0.0.1"), ("Forwarded", 'for="[2001:db8::7]"')]):
        assert_denied(whoami(api, api.secret, lines), "ip_not_whitelisted", factory)


def test_forwarded_names_the_real_client(api: Api, factory: sessionmaker[Session]) -> None:
    for lines, shown in (
        ([("Forwarded", "for=127.0.0.1;by=x"), ("Forwarded", f"For={REAL};proto=https")], REAL),
        ([("Forwarded", 'for="[2001:db8::7]:4711"')], "2001:db8::7"),
        ([("Forwarded", f"for={REAL}, for=127.0.0.1")], REAL),
    ):
        answer = whoami(api, api.real_secret, lines)
        assert answer.status == 200, (lines, answer.body)
        assert answer.json()["client_address"] == shown
    assert denied_reasons(factory) == []


def test_a_malformed_forwarded_header_gives_no_address(
        api: Api, factory: sessionmaker[Session]) -> None:
    """An unclosed quote must not swallow the proxy's element after it; an element without
    ``for``, or with two, names no client: no address, and the whitelist refuses."""
    for lines in ([("Forwarded", 'for="127.0.0.1'), ("Forwarded", f"for={REAL}")],
                  [("Forwarded", f"for={REAL};for=127.0.0.1")],
                  [("Forwarded", f"for={REAL}"), ("Forwarded", "proto=https")],
                  [("Forwarded", "for=unknown")],
                  [("Forwarded", f"for={REAL} garbage")]):
        answer = whoami(api, api.real_secret, lines)
        assert_denied(answer, UNKNOWN_HOP, factory)
        assert "could not be determined" in str(answer.json()["detail"])


# --- both headers ---------------------------------------------------------------------------


def test_both_forwarding_headers_from_a_trusted_proxy_are_refused(
        api: Api, factory: sessionmaker[Session]) -> None:
    """Which header the proxy wrote cannot be told: neither is believed, the whitelist refuses
    even when both name a whitelisted address, and the audit row says why."""
    for lines in ([("X-Forwarded-For", REAL), ("Forwarded", f"for={REAL}")],
                  [("Forwarded", f"for={REAL}"), ("X-Forwarded-For", "127.0.0.1"),
                   ("X-Forwarded-For", REAL)],
                  [("X-Forwarded-For", REAL), ("Forwarded", "")]):
        answer = whoami(api, api.real_secret, lines)
        assert_denied(answer, BOTH_HEADERS, factory)
        assert "both X-Forwarded-For and Forwarded" in str(answer.json()["detail"])
    with factory() as session:
        row = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert row is not None and row.client_address == "" and row.reason == BOTH_HEADERS


# --- /metrics and the portal use the same function ------------------------------------------


def test_metrics_judge_the_real_address_not_the_forged_line(
        trusting: Settings, engine: Engine) -> None:
    """METRICS_ALLOW defaults to loopback: a forged first line of 127.0.0.1 must not open it."""
    with serve(test_app(trusting)) as base:
        forged = raw_request(base, "GET", "/metrics", [("X-Forwarded-For", "127.0.0.1"),
                                                       ("X-Forwarded-For", REAL)])
        forged_rfc = raw_request(base, "GET", "/metrics", [("Forwarded", "for=127.0.0.1"),
                                                           ("Forwarded", f"for={REAL}")])
        both = raw_request(base, "GET", "/metrics", [("X-Forwarded-For", "127.0.0.1"),
                                                     ("Forwarded", "for=127.0.0.1")])
        local = raw_request(base, "GET", "/metrics", [("X-Forwarded-For", "127.0.0.1")])
    assert forged.status == 403 and REAL.encode() in forged.body, forged.body
    assert forged_rfc.status == 403 and REAL.encode() in forged_rfc.body
    assert both.status == 403 and b"both X-Forwarded-For and Forwarded" in both.body
    assert local.status == 200 and b"billing_api_" in local.body


def test_the_login_throttle_counts_the_real_address(
        trusting: Settings, factory: sessionmaker[Session]) -> None:
    """The login audit row holds the address the throttle counted: the proxy's line, not the
    client's own; with both headers, no address ("unknown": one shared, strict bucket)."""
    with serve(test_app(trusting)) as base:
        for lines in ([("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", REAL)],
                      [("X-Forwarded-For", REAL), ("Forwarded", f"for={REAL}")]):
            with httpx.Client(base_url=base, timeout=10) as client:
                page = client.get("/")
                cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
            csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            form = f"email=nobody%40example.com&password=wrong&csrf_token={csrf}".encode()
            answer = raw_request(base, "POST", "/portal/login", [
                ("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded"),
                *lines], form)
            assert answer.status == 400, answer.body
    with factory() as session:
        seen = list(session.scalars(select(AuditEvent.client_address).where(
            AuditEvent.event_type == "login_failed").order_by(AuditEvent.id)))
    assert seen == [REAL, "unknown"]


def test_billing_api_serve_does_not_let_uvicorn_rewrite_the_client(
        settings: Settings, engine: Engine, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn trusts X-Forwarded-For from loopback by default (FORWARDED_ALLOW_IPS makes it
    trust anyone): ``billing-api serve`` turns that off, so the app sees the TCP peer. Were
    the client rewritten to 198.51.100.9, /metrics (loopback only) would refuse."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    with billing_api_serve(database_url, tmp_path) as (_, base, _log):
        answer = raw_request(base, "GET", "/metrics", [("X-Forwarded-For", REAL),
                                                       ("Forwarded", f"for={REAL}")])
    assert answer.status == 200, answer.body


# --- the rules as a function ----------------------------------------------------------------


def test_the_rules_on_header_lines() -> None:
    trusted = "10.0.0.0/8,127.0.0.1/32"
    assert str(client_address("10.0.0.1", [("X-Forwarded-For", "127.0.0.1"),
                                           ("x-forwarded-for", "10.2.2.2, 2.2.2.2")],
                              trusted)) == "2.2.2.2"
    assert str(client_address("10.0.0.1", [], trusted)) == "10.0.0.1"  # the proxy itself
    assert str(client_address("9.9.9.9", [("Forwarded", "for=1.1.1.1"),
                                          ("X-Forwarded-For", "1.1.1.1")], trusted)) == "9.9.9.9"
    both = resolve("10.0.0.1", [("Forwarded", "for=1.1.1.1"), ("X-Forwarded-For", "1.1.1.1")],
                   trusted)
    assert both.address is None and both.code == BOTH_HEADERS
    assert resolve(None, [], trusted).code == UNKNOWN_HOP
    assert forwarded_hops('for="[2001:db8::1]:80";proto=https, for=_hidden ,,for=1.2.3.4') == [
        "[2001:db8::1]:80", "_hidden", "1.2.3.4"]
    assert forwarded_hops('for="a\\"b"') == ['a"b']
    for bad in ('for="1.2.3.4', "for=1.2.3.4;for=5.6.7.8", "proto=https", "for", "for=",
                "for=1.2.3.4 x", 'for="1.2.3.4"x'):
        assert forwarded_hops(bad) is None, bad
    assert forwarded_hops("") == [] and forwarded_hops(" , ") == []


def test_the_proxys_own_x_forwarded_proto_line_decides_the_cookies_secure_flag(
        trusting: Settings, factory: sessionmaker[Session]) -> None:
    # The proxy appends its line after whatever the client sent: only the last value counts.
    with serve(test_app(trusting)) as base:
        behind_https = raw_request(base, "GET", "/", [("X-Forwarded-Proto", "http"),
                                                      ("X-Forwarded-Proto", "https")])
        behind_http = raw_request(base, "GET", "/", [("X-Forwarded-Proto", "https"),
                                                     ("X-Forwarded-Proto", "http")])
    assert behind_https.status == 200 and "secure" in behind_https.headers["set-cookie"].lower()
    assert behind_http.status == 200 and "secure" not in behind_http.headers["set-cookie"].lower()
