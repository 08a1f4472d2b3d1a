"""Hole 3 of issue 11: the operator impersonated the Account Administrator.

`api enable --as admin@…` needed no credential and the audit named the administrator. Now a
command run `--as` a user needs that user's password on stdin; a wrong one is refused and
audited; the distributor acting without it uses `api distributor-enable|disable --reason`,
which the audit and the portal's Activity page show as the distributor's, never the partner's.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import ApiKey, AuditEvent, Company, User
from billing_api.app import create_app
from billing_api.settings import Settings
from tests.browser import FormClient
from tests.http_server import serve
from tests.test_access_cli import run  # noqa: F401  (the CLI fixture)
from tests.test_portal_session import CLERK_PASSWORD, PASSWORD, make_world

Invoke = Callable[..., tuple[str, str]]
ACME = "Acme Cloud BV"
ADMIN = "admin@acme.example"
CLERK = "clerk@acme.example"


def api_enabled(factory: sessionmaker[Session], company_id: int) -> bool:
    with factory() as session:
        company = session.get(Company, company_id)
        assert company is not None
        return company.api_enabled


def events(factory: sessionmaker[Session]) -> list[tuple[str, str | None, str, str]]:
    """(event type, actor e-mail, reason, detail), oldest first."""
    with factory() as session:
        rows = session.execute(
            select(AuditEvent.event_type, User.email, AuditEvent.reason, AuditEvent.detail)
            .outerjoin(User, User.id == AuditEvent.actor_user_id).order_by(AuditEvent.id)).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_api_enable_as_the_administrator_needs_their_password(
        run: Invoke, factory: sessionmaker[Session]) -> None:  # noqa: F811
    company_id, _, _ = make_world(factory)
    enable = ("api", "enable", "--company", ACME, "--as", ADMIN)

    # The attack: name the administrator, give nothing else.
    _, err = run(*enable, ok=False)
    assert "--password-stdin" in err and "distributor-enable" in err
    assert not api_enabled(factory, company_id)
    # A guess: refused, and on record as a refusal, not as the administrator's action.
    _, err = run(*enable, "--password-stdin", stdin="not the password\n", ok=False)
    assert f"wrong password for {ADMIN}" in err and len(err.strip().splitlines()) == 1
    assert not api_enabled(factory, company_id)
    assert events(factory) == [("cli_denied", None, "wrong_password", f"api enable --as {ADMIN}")]
    # The clerk's own right password does not make the clerk the administrator.
    run("api", "enable", "--company", ACME, "--as", CLERK, "--password-stdin",
        stdin=CLERK_PASSWORD, ok=False)
    assert not api_enabled(factory, company_id)

    run(*enable, "--password-stdin", stdin=PASSWORD + "\n")
    assert api_enabled(factory, company_id)
    assert events(factory)[-1] == ("api_enabled", ADMIN, "", "")
    run("api", "disable", "--company", ACME, "--as", ADMIN, "--password-stdin",
        stdin="guess\n", ok=False)
    assert api_enabled(factory, company_id)


def test_the_distributor_acts_under_its_own_name_with_a_reason(
        run: Invoke, factory: sessionmaker[Session], settings: Settings) -> None:  # noqa: F811
    company_id, _, _ = make_world(factory)
    run("api", "distributor-enable", "--company", ACME, ok=False)  # --reason is required
    _, err = run("api", "distributor-enable", "--company", ACME, "--reason", "   ", ok=False)
    assert "--reason is required" in err
    assert not api_enabled(factory, company_id) and events(factory) == []

    reason = "partner asked by phone, ticket 4711"
    run("api", "distributor-enable", "--company", ACME, "--reason", reason)
    assert api_enabled(factory, company_id)
    run("api", "distributor-disable", "--company", ACME, "--reason", "key leaked")
    assert not api_enabled(factory, company_id)
    assert events(factory) == [
        ("api_enabled_by_distributor", None, "", f"by the distributor's operator: {reason}"),
        ("api_disabled_by_distributor", None, "", "by the distributor's operator: key leaked"),
    ]
    out, _ = run("audit", "--company", ACME)
    assert out.splitlines()[0].split("\t")[1:3] == ["api_disabled_by_distributor", "-"]

    # The partner's Activity page names the distributor, not its administrator.
    with serve(create_app(settings)) as base, FormClient(base) as admin:
        assert admin.log_in(ADMIN, PASSWORD).status_code == 303
        page = admin.get("/portal/activity").text
    rows = re.findall(r"<tr>\s*<td>[^<]*</td>\s*<td>(api (?:en|dis)abled by distributor)</td>"
                      r"\s*<td>([^<]*)</td>", page)
    assert rows == [("api disabled by distributor", "distributor (operator)"),
                    ("api enabled by distributor", "distributor (operator)")]
    assert "ticket 4711" in page


def test_keys_and_permissions_as_a_user_need_that_users_password(
        run: Invoke, factory: sessionmaker[Session]) -> None:  # noqa: F811
    """Same hole, other commands: `keys create --as` made the audit name a user who did
    nothing, and `users grant-api --as` let anyone act as the administrator."""
    make_world(factory)
    create = ("keys", "create", "--company", ACME, "--environment", "production",
              "--name", "erp", "--as", ADMIN)
    run(*create, ok=False)
    run(*create, "--password-stdin", stdin="guess\n", ok=False)
    run("users", "grant-api", "--company", ACME, "--email", CLERK, "--as", ADMIN, ok=False)
    run("users", "grant-api", "--company", ACME, "--email", CLERK, "--as", ADMIN,
        "--password-stdin", stdin="guess\n", ok=False)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 0
    assert [e[3] for e in events(factory)] == [f"keys create --as {ADMIN}",
                                              f"users grant-api --as {ADMIN}"]

    out, _ = run(*create, "--password-stdin", stdin=PASSWORD)
    assert out.startswith("nwb_live_")
    run("users", "grant-api", "--company", ACME, "--email", CLERK, "--as", ADMIN,
        "--password-stdin", stdin=PASSWORD)
    # Without --as it is the operator's own action, and recorded as such (no user).
    run("keys", "create", "--company", ACME, "--environment", "sandbox", "--name", "ops")
    assert [(e[0], e[1]) for e in events(factory)[2:]] == [
        ("key_created", ADMIN), ("permission_granted", ADMIN), ("key_created", None)]
