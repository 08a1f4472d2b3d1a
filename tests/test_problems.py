"""Problem documents over real HTTP: well-formed for any input, in the format a document in
the same request would have (one negotiation, by q-values, for both)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from lxml import etree
from sqlalchemy.orm import Session, sessionmaker

from billing_api.api.negotiation import PROBLEM_TYPES, negotiate
from billing_api.settings import Settings
from tests.access_helpers import make_partner, test_app
from tests.http_server import serve
from tests.test_client_address_http import Answer, raw_request

NS = "{urn:ietf:rfc:7807}"
# Hostile request targets, sent as these exact bytes: controls, a lone surrogate's UTF-8
# (%ED%A0%80), a CDATA end, quotes and markup, in the path and in parameters.
HOSTILE_TARGETS = (
    "/api/v4/a%01b",
    "/api/v4/%00%08%0B%0C%1F%7F",
    "/api/v4/%ED%A0%80",
    "/api/v4/%EF%BF%BE%EF%BF%BF",  # U+FFFE, U+FFFF
    "/api/v4/]]%3E",
    "/api/v4/%22%27%3C/problem%3E%26amp;",
    "/api/v9%01/invoices",
    "/api/v1%0B/invoices",
    "/api/%01",
    "/api/v4/invoices?format=%01]]%3E",
    "/api/v4/invoices?startDate=%01%ED%A0%80&endDate=]]%3E",
    "/api/v4/invoices?endDate=%22%27%3C%3E%26",
    "/api/v4/subscriptiondetails?subscriptionId=%ED%A0%80%0B",
    "/api/v4/invoices?startDate=20260101&endDate=20250101%0C",
)


@dataclass
class Api:
    base: str
    secret: str


@pytest.fixture
def api(settings: Settings, factory: sessionmaker[Session]) -> Iterator[Api]:
    partner = make_partner(factory, settings)
    with serve(test_app(settings)) as base:
        yield Api(base, partner.secret)


def parsed(answer: Answer) -> dict[str, str]:
    """The problem's fields, from either format; fails on a body that does not parse."""
    media = answer.headers["content-type"].split(";")[0]
    if media == "application/problem+json":
        return {k: str(v) for k, v in json.loads(answer.body.decode("utf-8")).items()}
    assert media == "application/problem+xml", media
    root = etree.fromstring(answer.body)  # lxml refuses anything not well-formed XML 1.0
    assert root.tag == f"{NS}problem"
    return {etree.QName(child).localname: child.text or "" for child in root}


def test_problems_are_well_formed_for_hostile_paths_and_parameters(api: Api) -> None:
    for target in HOSTILE_TARGETS:
        for key in (None, api.secret):
            for extra in ([], [("Accept", "application/json")]):
                lines = [*extra, *([("X-Api-Key", key)] if key else [])]
                answer = raw_request(api.base, "GET", target, lines)
                assert 400 <= answer.status < 500, (target, answer.status, answer.body)
                problem = parsed(answer)
                assert problem["status"] == str(answer.status), (target, problem)
                assert problem["instance"].startswith("/api"), (target, problem)
                for value in problem.values():  # nothing XML 1.0 forbids, in either format
                    assert not any(ord(c) < 0x20 and c not in "\t\n\r" for c in value), value
                    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in value), value
                    assert "\ufffe" not in value and "\uffff" not in value
    # The path arrives intact apart from what XML forbids: a%01b is "ab".
    answer = raw_request(api.base, "GET", "/api/v4/a%01b", [])
    assert answer.status == 404 and parsed(answer)["instance"] == "/api/v4/ab"
    markup = raw_request(api.base, "GET", "/api/v4/]]%3E%3C%26", [])
    assert parsed(markup)["instance"] == "/api/v4/]]><&"


# --- one negotiation for documents and problems ---------------------------------------------

ACCEPTS = (
    None, "", "*/*", "application/xml", "text/xml", "application/json",
    "application/json;q=0, application/xml", "application/xml;q=0.1, application/json",
    "application/json, application/xml", "application/xml, application/json",
    "*/*, application/xml;q=0, text/xml;q=0", "*/*, application/xml;q=0", "text/html, */*;q=0.1",
    "application/*", "text/*",
    "application/json;q=0.5, text/xml;q=0.6", "application/json;q=nan", "application/json;q=2",
    "image/png, */*;q=0", "text/html", "application/json;q=0", "*; q=.2",
    " APPLICATION/JSON ; Q=0.9 , application/xml;q=0.8",
)


def _accept(value: str | None) -> list[tuple[str, str]]:
    return [] if value is None else [("Accept", value)]


def test_problems_are_negotiated_exactly_like_documents(api: Api) -> None:
    """For each Accept, a document (valid key) and a problem (no key) in the same format; a
    406 document means the problem falls back to XML."""
    seen = set()
    for accept in ACCEPTS:
        target = "/api/v4/invoices?startDate=20260101&endDate=20260102"
        document = raw_request(api.base, "GET", target,
                               [*_accept(accept), ("X-Api-Key", api.secret)])
        problem = raw_request(api.base, "GET", target, _accept(accept))
        assert problem.status == 401
        problem_media = problem.headers["content-type"].split(";")[0]
        parsed(problem)
        if document.status == 406:
            assert problem_media == "application/problem+xml", accept
            seen.add("406")
            continue
        assert document.status == 200, (accept, document.body)
        fmt = document.headers["content-type"].split(";")[0].split("/")[1]
        assert problem_media == f"application/problem+{fmt}", (accept, problem_media)
        seen.add(fmt)
    assert seen == {"xml", "json", "406"}


@pytest.mark.parametrize(("accept", "expected"), [
    ("application/json;q=0, application/xml", "application/problem+xml"),
    ("application/xml;q=0.1, application/json", "application/problem+json"),
    ("application/problem+json", "application/problem+json"),
    ("application/problem+xml;q=0.5, application/problem+json;q=0.4", "application/problem+xml"),
    ("text/html, application/json;q=0.01", "application/problem+json"),
    ("*/*, application/xml;q=0, text/xml;q=0", "application/problem+json"),
    ("text/html", "application/problem+xml"),  # nothing acceptable: the default
])
def test_a_problem_follows_the_q_values(api: Api, accept: str, expected: str) -> None:
    answer = raw_request(api.base, "GET", "/api/v4/invoices", [("Accept", accept)])
    assert answer.status == 401 and answer.headers["content-type"] == expected
    assert parsed(answer)["code"] == "missing_key"


def test_format_wins_over_accept_and_a_bad_format_is_a_400_in_the_accepted_format(
        api: Api) -> None:
    key = ("X-Api-Key", api.secret)
    as_json = raw_request(api.base, "GET", "/api/v4/invoices?format=json",
                          [("Accept", "application/xml")])
    assert as_json.headers["content-type"] == "application/problem+json"
    bad = raw_request(api.base, "GET", "/api/v4/invoices?format=csv",
                      [("Accept", "application/xml;q=0.2, application/json"), key])
    assert bad.status == 400 and bad.headers["content-type"] == "application/problem+json"
    assert parsed(bad)["field"] == "format"
    # Accept on several field lines is one list, as for X-Forwarded-For.
    split = raw_request(api.base, "GET", "/api/v4/invoices",
                        [("Accept", "application/xml;q=0.1"), ("Accept", "application/json")])
    assert split.headers["content-type"] == "application/problem+json"


def test_negotiate_rules() -> None:
    assert negotiate("") == "xml"
    assert negotiate("application/problem+json") is None
    assert negotiate("application/problem+json", PROBLEM_TYPES) == "json"
    # Problem types count only when named: the wildcard decides as for documents.
    assert negotiate("*/*, application/xml;q=0, text/xml;q=0", PROBLEM_TYPES) == "json"
    assert negotiate("application/problem+xml, application/json", PROBLEM_TYPES) == "xml"
    assert negotiate("*/*;q=0.5, application/json;q=0.4") == "xml"
    assert negotiate("application/*;q=0.3, */*;q=0.9") == "xml"
    assert negotiate("application/*, application/xml;q=0") == "json"
    assert negotiate("*/json") is None  # not a media range
    assert negotiate("application/json;q=-1, text/xml;q=1.0001") is None
    assert negotiate(",,") is None
