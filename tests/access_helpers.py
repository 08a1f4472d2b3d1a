"""Shared set-up for the access tests: a partner with an enabled API, a key and a whitelist."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import audit, keys, permissions, users, whitelist
from billing_api.access.models import AuditEvent, Company, User
from billing_api.api.deps import CallerDep, api_router
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.settings import Settings


@dataclass
class Partner:
    company_id: int
    admin_email: str
    key_id: int
    secret: str


def make_partner(factory: sessionmaker[Session], settings: Settings, *,
                 name: str = "Acme Cloud BV", networks: tuple[str, ...] = ("127.0.0.1",),
                 enabled: bool = True, environment: Environment = Environment.PRODUCTION,
                 expires_on: dt.date | None = None) -> Partner:
    with transaction(factory) as session:
        company, admin = users.create_company(session, name, f"admin@{name.split()[0]}.example",
                                              "correct horse battery staple")
        if enabled:
            permissions.set_api_enabled(session, company, admin, True)
        for network in networks:
            whitelist.add_entry(session, company, network, allow_any=True)
        key, secret = keys.create_key(session, settings, company, environment=environment,
                                      name="erp", expires_on=expires_on, actor=admin)
        return Partner(company.id, admin.email, key.id, secret)


def open_demo_api(session: Session, settings: Settings) -> tuple[Company, dict[str, str]]:
    """The demo's partner with its API enabled by its administrator, 127.0.0.1 whitelisted and
    a key per environment: (company, {environment: secret})."""
    from billing_api.demo.generator import ADMIN_EMAIL

    admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
    company = session.get_one(Company, admin.company_id)
    permissions.set_api_enabled(session, company, admin, True)
    whitelist.add_entry(session, company, "127.0.0.1")
    secrets = {}
    for env in Environment:
        _, secrets[env.value] = keys.create_key(session, settings, company, environment=env,
                                                name=f"erp-{env.value}", actor=admin)
    return company, secrets


def denied_reasons(factory: sessionmaker[Session]) -> list[str]:
    """The reasons of the ``api_denied`` rows (one per aggregate), oldest first."""
    audit.flush_pending()
    with factory() as session:
        return list(session.scalars(select(AuditEvent.reason).where(
            AuditEvent.event_type == "api_denied").order_by(AuditEvent.id)))


def test_app(settings: Settings) -> FastAPI:
    """The real app plus a test-only route built with the same router factory."""
    app = create_app(settings)
    router = api_router()

    @router.get("/whoami")
    def whoami(caller: CallerDep) -> dict[str, object]:
        return {"company_id": caller.company_id, "key_id": caller.key_id,
                "environment": caller.environment, "client_address": caller.client_address}

    app.include_router(router)
    return app


test_app.__test__ = False  # type: ignore[attr-defined]
