"""Hostile input over real HTTP: schemathesis against the served description, hypothesis on
every query parameter, and header injection by hand.

One small billed world (the demo generator: two environments, three months) is served by
uvicorn on loopback without a rate limit to speak of. Every answer must be one the API means to
give: never a 5xx, never a document or problem that does not parse, and nothing a client sent
reflected into a response header, a file name or a body unescaped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from schemathesis import engine as schemathesis_engine
from schemathesis.engine import events
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from billing_api.app import create_app
from billing_api.ops.context import MAX_HEADER_BYTES
from billing_api.settings import Settings
from tests.http_server import serve
from tests.schemathesis_support import keep_the_window_in_order
from tests.test_ops import demo, quiet_settings

DOCUMENTS = ("invoices", "customerinvoices", "consolidatedinvoices", "subscriptiondetails")
MIN_REQUESTS = 500
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
FILENAME = re.compile(r'attachment; filename="((invoices|customerinvoices|consolidatedinvoices)'
                      r'_v[234]|subscriptiondetails_v[234]_[0-9]{1,18})_[0-9]{8}_[0-9]{8}'
                      r'\.(xml|json)"')
PRINTABLE = re.compile(r"[\x20-\x7e]*")
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "instance"}


@dataclass
class World:
    base: str
    secret: str
    subscription_id: int
    today: dt.date


@pytest.fixture
def world(settings: Settings, factory: sessionmaker[Session]) -> Iterator[World]:
    secret = demo(factory, settings, customers=6, months=3)
    with factory() as session:
        subscription_id = session.scalar(text("SELECT min(subscription_id) FROM price_lines"))
    with serve(create_app(quiet_settings(settings))) as base:
        yield World(base, secret, int(subscription_id), settings.today())


# --- schemathesis: the description against the server -----------------------------------------

# Bounded for CI (about 20-40 s per backend on a 2-core machine) and repeatable: deterministic
# generation, a fixed number of examples per operation and of stateful steps.
FUZZ_EXAMPLES = 30
STATEFUL_STEPS = 10


def _failure(recorder: Any, case_id: str, check: Any) -> str:
    """One failed check, readable in the assertion message: what, why, which request."""
    failure = check.failure_info.failure
    interaction = recorder.interactions.get(case_id)
    uri = interaction.request.uri if interaction else ""
    return f"{check.name}: {failure.title}: {failure.message[:300]} ({uri})"


def test_schemathesis_with_every_check_finds_nothing(world: World) -> None:
    """Examples, coverage, fuzzing and (over the description's links from each invoice
    document to subscriptiondetails, in XML and JSON answers) stateful sequences, with a
    valid key and every check schemathesis has, negative data included: at least 500
    generated requests, every answer as described, every refusal where the description
    refuses."""
    description = httpx.get(world.base + "/api/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(description, config=schemathesis.Config.from_dict({
        "base-url": world.base,
        "headers": {"X-Api-Key": world.secret},
        "workers": 1,
        "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES, "deterministic": True},
        "phases": {"stateful": {"enabled": True, "max-steps": STATEFUL_STEPS}},
        "checks": {"enabled": True},
    }))
    schema.hook("map_case")(keep_the_window_in_order(world.today))
    per_phase: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    linked_details: Counter[str] = Counter()
    failed: list[str] = []
    transitions = 0
    finished: events.EngineFinished | None = None
    started = time.monotonic()
    for event in schemathesis_engine.from_schema(schema).execute():
        if isinstance(event, events.PhaseStarted) and event.payload is not None:
            transitions = event.payload.transitions_selected
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            phase = str(getattr(event, "phase", "fuzzing"))
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                per_phase[phase] += 1
                status = interaction.response.status_code if interaction.response else 0
                statuses[status] += 1
                node = recorder.cases.get(case_id)
                if status == 200 and node is not None and node.is_transition_applied \
                        and node.parent_id in recorder.interactions \
                        and "/subscriptiondetails" in interaction.request.uri:
                    parent = recorder.interactions[node.parent_id].response
                    media = parent.headers.get("content-type", [""])[0] if parent else ""
                    linked_details[media.split(";")[0]] += 1
            if event.status.name in ("FAILURE", "ERROR"):
                failed.append(event.recorder.label)
                failed += [_failure(recorder, case_id, check)
                           for case_id, checks in recorder.checks.items() for check in checks
                           if check.failure_info is not None]
        if isinstance(event, events.NonFatalError | events.FatalError):
            failed.append(repr(event))
        if isinstance(event, events.EngineFinished):
            finished = event
    elapsed = time.monotonic() - started
    total = sum(per_phase.values())
    report = (f"{total} requests in {elapsed:.0f} s: {dict(per_phase)}, statuses "
              f"{dict(statuses)}, linked subscriptiondetails 200s {dict(linked_details)}")
    print(report)  # the figures for docs/openapi.md (pytest -s)
    assert finished is not None and finished.failures == [], (failed, report)
    assert failed == [], (failed, report)
    assert total >= MIN_REQUESTS, report
    assert not [s for s in statuses if s >= 500 or s == 0], report
    assert transitions >= 3, "the invoice documents should link to subscriptiondetails"
    # The link is followed out of XML answers (the default) as well as JSON ones.
    assert linked_details["application/xml"] > 0, f"no link followed from XML: {report}"
    assert linked_details["application/json"] > 0, f"no link followed from JSON: {report}"


# --- hypothesis: every query parameter -------------------------------------------------------

QUERY_EXAMPLES = 800
NAMES = st.one_of(st.sampled_from(("startDate", "endDate", "format", "subscriptionId", "token",
                                    "startdate", "FORMAT", "", "x", "start Date")),
                  st.text(max_size=12))
TYPICAL = ("20260101", "2026-01-01", "json", "xml", "1", "-1", "١٢", "²", "", " ", "%", "&",
           "=", "\r\n", "\x00", "nwb_live_x.1.y", "<a>&amp;", '"; filename="evil.exe',
           "20260101\r\nX-Evil: 1")
VALUES = st.one_of(
    st.sampled_from(TYPICAL),
    st.text(max_size=30),  # any code point but surrogates: control characters, RTL, emoji
    st.binary(max_size=12),  # sent percent-encoded as they are: mostly invalid UTF-8
)
DATES = st.one_of(
    st.sampled_from(("00010101", "00010228", "00010331", "00010401", "99991231", "00000000",
                     "20260230", "2024-02-29", "20261301", " 20260101 ", "2026-1-1",
                     "٢٠٢٦٠١٠١", "20260101\n")),
    st.dates(min_value=dt.date(1, 1, 1)).flatmap(lambda d: st.sampled_from((
        f"{d.year:04d}{d.month:02d}{d.day:02d}", d.isoformat()))),
    VALUES)
FORMATS = st.one_of(st.sampled_from(("json", "xml", "JSON", " xml ", "csv", "")), VALUES)
SUBSCRIPTION = "<the world's subscription>"
IDS = st.one_of(st.just(SUBSCRIPTION), st.integers(-5, 10**20).map(str),
                st.sampled_from(("²", "١٢", " 1 ", "0x1", "1e3")), VALUES)
TOKENS = st.one_of(st.sampled_from(("1.9999999999.abc", "x", "1.1.1", "")), VALUES)
# Each known parameter present or not, plus a few odd or repeated ones.
KNOWN = st.fixed_dictionaries({}, optional={"startDate": DATES, "endDate": DATES,
                                            "format": FORMATS, "subscriptionId": IDS,
                                            "token": TOKENS})
EXTRA = st.lists(st.tuples(NAMES, VALUES), max_size=3)
ACCEPT = st.one_of(st.none(), st.sampled_from((
    "application/json", "application/xml", "text/xml", "*/*", "text/html",
    "application/json;q=0", "application/xml;q=0.5, application/json", "image/png, */*;q=0",
    "application/json;q=nan", "application/json;q=inf")),
    # Printable ASCII, no surrounding blanks: what an HTTP client can send at all.
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    .map(str.strip))


def _encode(value: str | bytes) -> str:
    return quote(value if isinstance(value, bytes) else value.encode(), safe="")


def query_string(pairs: list[tuple[str, str | bytes]]) -> str:
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in pairs)


def check_answer(answer: httpx.Response, path: str, sent: list[str]) -> None:
    """A document or a problem, well-formed, with clean headers."""
    assert answer.status_code in (200, 400, 401, 404, 406), (answer.status_code, answer.text)
    for name, value in answer.headers.items():
        assert PRINTABLE.fullmatch(value), (name, value)
    assert REQUEST_ID.fullmatch(answer.headers["x-request-id"])
    headers_text = "\n".join(answer.headers.values())
    for value in sent:  # nothing sent comes back in a header
        if len(value) >= 4 and not value.isalnum():
            assert value not in headers_text, value
    media = answer.headers["content-type"].split(";")[0]
    if answer.status_code == 200:
        assert FILENAME.fullmatch(answer.headers["content-disposition"])
        assert media in ("application/xml", "application/json")
        if media == "application/json":
            json.loads(answer.content)
        else:
            etree.fromstring(answer.content)
        return
    assert "content-disposition" not in answer.headers
    if media == "application/problem+json":
        problem = json.loads(answer.content)
    else:
        assert media == "application/problem+xml", media
        root = etree.fromstring(answer.content)
        problem = {etree.QName(child).localname: child.text or "" for child in root}
        problem["status"] = int(problem["status"])
    assert set(problem) >= PROBLEM_FIELDS, problem
    assert problem["status"] == answer.status_code and problem["instance"] == path


def test_every_query_parameter_gets_a_clean_answer(world: World) -> None:
    """Generated query strings (names, values, repeats, bad UTF-8) and Accept headers on every
    document of every served version, with a key, a wrong key or none."""
    seen: Counter[int] = Counter()
    wrong = world.secret[:-1] + ("y" if world.secret.endswith("x") else "x")  # never the key
    keys = {"valid": world.secret, "wrong": wrong, "none": None}
    key_choice = st.sampled_from(("valid", "valid", "valid", "wrong", "none"))

    @settings(max_examples=QUERY_EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(document=st.sampled_from(DOCUMENTS), version=st.sampled_from(("v2", "v3", "v4")),
           known=KNOWN, extra=EXTRA, accept=ACCEPT, key=key_choice)
    def call(document: str, version: str, known: dict[str, str | bytes],
             extra: list[tuple[str, str | bytes]], accept: str | None, key: str) -> None:
        path = f"/api/{version}/{document}"
        pairs = [(name, str(world.subscription_id) if value == SUBSCRIPTION else value)
                 for name, value in [*known.items(), *extra]]
        headers = {"Accept": accept} if accept is not None else {}
        if keys[key] is not None:
            headers["X-Api-Key"] = keys[key]  # type: ignore[assignment]
        answer = client.get(f"{path}?{query_string(pairs)}", headers=headers)
        sent = [v.decode("latin-1") if isinstance(v, bytes) else v for _, v in pairs]
        check_answer(answer, path, sent)
        seen[answer.status_code] += 1

    with httpx.Client(base_url=world.base, timeout=30) as client:
        call()
    print(f"query fuzzing: {sum(seen.values())} requests, statuses {dict(seen)}")
    assert sum(seen.values()) == QUERY_EXAMPLES
    assert {200, 400, 401} <= set(seen)


def test_an_end_date_in_the_first_months_of_year_one_is_answered_not_a_500(world: World) -> None:
    """Found by the query fuzzing: ``endDate=00010101`` without ``startDate`` made the default
    start (three months earlier) year 0, a ValueError and a 500."""
    with httpx.Client(base_url=world.base, timeout=10,
                      headers={"X-Api-Key": world.secret}) as client:
        for end in ("00010101", "00010331", "0001-02-28"):
            answer = client.get("/api/v4/invoices", params={"endDate": end})
            assert answer.status_code == 200, answer.text
            assert FILENAME.fullmatch(answer.headers["content-disposition"])
            assert 'filename="invoices_v4_00010101_' in answer.headers["content-disposition"]


# --- header injection, by hand ----------------------------------------------------------------


@dataclass
class Raw:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes


def raw_exchange(base: str, head: bytes) -> Raw:
    """Send ``head`` (request line and headers, as bytes) and read the whole answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + b"Host: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header_block, _, body = data.partition(b"\r\n\r\n")
    lines = header_block.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        # Every header line of every answer is printable ASCII: nothing was injected.
        assert re.fullmatch(rb"[!#-'*+.0-9A-Z^_`a-z|~-]+: [\x20-\x7e]*", line), line
        name, _, value = line.decode("ascii").partition(": ")
        headers.append((name.lower(), value))
    return Raw(int(lines[0].split()[1]), headers, body)


def test_cr_lf_in_parameters_never_reaches_a_header(world: World) -> None:
    key = world.secret.encode()
    for query in (b"startDate=20260101%0d%0aSet-Cookie:%20a=b",
                  b"endDate=20261231%0aX-Evil:%201",
                  b"format=json%0d%0aX-Evil:%201",
                  b"startDate=2026-01-01&endDate=2026-12-31%0d%0a",
                  b"subscriptionId=1%0d%0aX-Evil:%201"):
        answer = raw_exchange(world.base, b"GET /api/v4/invoices?" + query
                              + b" HTTP/1.1\r\nX-Api-Key: " + key + b"\r\n")
        names = {name for name, _ in answer.headers}
        assert answer.status_code in (200, 400), (query, answer.body)
        assert not names & {"set-cookie", "x-evil"}, query
        assert b"\r\nX-Evil" not in answer.body and b"\nSet-Cookie" not in answer.body
        disposition = dict(answer.headers).get("content-disposition")
        assert disposition is None or FILENAME.fullmatch(disposition), disposition
    # A date written with dashes still gives a file name of digits only.
    dashed = httpx.get(world.base + "/api/v3/customerinvoices",
                       params={"startDate": "2026-01-01", "endDate": "2026-12-31"},
                       headers={"X-Api-Key": world.secret}, timeout=10)
    assert dashed.headers["content-disposition"] == (
        'attachment; filename="customerinvoices_v3_20260101_20261231.xml"')


def test_cr_lf_in_the_path_stays_percent_encoded_in_a_redirect(world: World) -> None:
    answer = raw_exchange(world.base,
                          b"GET /api/v4%0d%0aSet-Cookie:%20a=b/invoices/ HTTP/1.1\r\n")
    names = {name for name, _ in answer.headers}
    assert "set-cookie" not in names
    if answer.status_code == 307:  # Starlette's trailing-slash redirect
        assert "%0D%0ASet-Cookie" in dict(answer.headers)["location"]


def test_bad_utf8_in_the_query_is_a_well_formed_400(world: World) -> None:
    key = world.secret.encode()
    for query, fmt in ((b"startDate=%FF%FE", b""), (b"format=%C3%28", b""),
                       (b"subscriptionId=%ED%A0%80", b"&format=json"),
                       (b"endDate=%F4%90%80%80", b"&format=json")):
        path = (b"/api/v4/subscriptiondetails?" if b"subscriptionId" in query
                else b"/api/v4/invoices?")
        answer = raw_exchange(world.base, b"GET " + path + query + fmt
                              + b" HTTP/1.1\r\nX-Api-Key: " + key + b"\r\n")
        assert answer.status_code == 400, answer.body
        if fmt:
            assert json.loads(answer.body)["code"] == "invalid_input"
        else:
            etree.fromstring(answer.body)
    # Raw bytes that are not even percent-encoded: the server refuses the request line.
    raw = raw_exchange(world.base, b"GET /api/v4/invoices?startDate=\xff\xfe HTTP/1.1\r\n")
    assert raw.status_code == 400


def test_huge_headers_are_a_clear_431_and_are_not_echoed(world: World) -> None:
    for size in (64 * 1024, 1024 * 1024):
        huge = "nwb_live_" + "A" * size
        answer = httpx.get(world.base + "/api/v4/invoices", headers={"X-Api-Key": huge},
                           timeout=30)
        assert answer.status_code == 431, answer.status_code
        assert answer.headers["content-type"] == "application/problem+xml"
        assert "headers_too_large" in answer.text and "AAAA" not in answer.text
        assert REQUEST_ID.fullmatch(answer.headers["x-request-id"])
    portal = httpx.get(world.base + "/", headers={"X-Padding": "x" * MAX_HEADER_BYTES},
                       timeout=10)
    assert portal.status_code == 431 and "KiB" in portal.text
    # Just under the limit is served as usual.
    fine = httpx.get(world.base + "/healthz",
                     headers={"X-Padding": "x" * (MAX_HEADER_BYTES - 1024)}, timeout=10)
    assert fine.status_code == 200


def test_request_id_with_cr_lf_or_odd_bytes_is_refused_or_replaced(world: World) -> None:
    for head in (b"GET /healthz HTTP/1.1\r\nX-Request-Id: abc\rSet-Cookie: a=b\r\n",
                 b"GET /healthz HTTP/1.1\r\nX-Request-Id: abc\nSet-Cookie: a=b\r\n",
                 b"GET /healthz HTTP/1.1\r\nX-Request-Id: abc\x00def\r\n"):
        refused = raw_exchange(world.base, head)
        assert refused.status_code == 400  # the HTTP parser refuses the request itself
        assert "set-cookie" not in {name for name, _ in refused.headers}
    for odd in (b"\xe9t\xe9", b"a" * 65, b"<script>alert(1)</script>", b"a b", b"%0d%0a"):
        answer = raw_exchange(world.base, b"GET /healthz HTTP/1.1\r\nX-Request-Id: " + odd
                              + b"\r\n")
        assert answer.status_code == 200
        chosen = dict(answer.headers)["x-request-id"]
        assert re.fullmatch("[0-9a-f]{32}", chosen), chosen  # a fresh one, not the input


def test_the_portal_escapes_what_it_echoes(world: World) -> None:
    typed = '"><script>alert(1)</script>\r\nSet-Cookie: a=b'
    with httpx.Client(base_url=world.base, timeout=10) as client:
        page = client.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        answer = client.post("/portal/login", data={"email": typed, "password": "x",
                                                    "csrf_token": token.group(1)})
    assert answer.status_code == 400
    assert "<script>alert(1)" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    assert [c for c in answer.headers.get_list("set-cookie") if "a=b" in c] == []

