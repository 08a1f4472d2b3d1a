"""Rotating ``BILLING_API_SECRET_KEY`` as docs/operations.md says, over real HTTP.

During the overlap (``BILLING_API_OLD_SECRET_KEYS`` holds the previous secret) every key
keeps working, and each one used moves to the new secret and pepper id; after it, a key not
used during the overlap is refused and must be issued again. Download links and portal
sessions follow the current secret alone.
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, links, permissions, whitelist
from billing_api.access.models import ApiKey, Company, User
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.demo.generator import ADMIN_EMAIL, build_demo
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests.http_server import serve
from tests.test_ops import TODAY

NEW_SECRET = "the-new-secret-after-rotation-0123456789"
PATH = "/api/v4/invoices"


def issue(factory: sessionmaker[Session], settings: Settings, name: str) -> tuple[int, str]:
    with transaction(factory) as session:
        admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
        company = session.get_one(Company, admin.company_id)
        key, secret = keys.create_key(session, settings, company,
                                      environment=Environment.PRODUCTION, name=name, actor=admin)
        return key.id, secret


def pepper_of(factory: sessionmaker[Session], key_id: int) -> tuple[int, str]:
    with factory() as session:
        key = session.get_one(ApiKey, key_id)
        return key.pepper_id, key.digest


def statuses(settings: Settings, *secrets: str) -> list[int]:
    with serve(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as client:
        return [client.get(PATH, headers={"X-Api-Key": s}).status_code for s in secrets]


def test_keys_survive_a_rotation_with_an_overlap_and_unused_ones_must_be_reissued(
        factory: sessionmaker[Session], settings: Settings) -> None:
    build_demo(factory, customers=3, months=1, today=TODAY)
    with transaction(factory) as session:
        admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
        company = session.get_one(Company, admin.company_id)
        permissions.set_api_enabled(session, company, admin, True)
        whitelist.add_entry(session, company, "127.0.0.1")
    before = settings.model_copy(update={"rate_limit_per_minute": 1000})
    used_id, used = issue(factory, before, "used during the overlap")
    idle_id, idle = issue(factory, before, "idle during the overlap")
    assert pepper_of(factory, used_id)[0] == 1
    assert statuses(before, used, idle) == [200, 200]

    overlap = Settings(database_url=before.database_url, secret_key=NEW_SECRET, pepper_id=2,
                       old_secret_keys=before.secret_key.get_secret_value(),
                       rate_limit_per_minute=1000, redis_url=None)
    # Without the overlap, switching the secret refuses every key at once (401 unknown_key).
    direct = overlap.model_copy(update={"old_secret_keys": Settings.model_fields[
        "old_secret_keys"].default})
    assert statuses(direct, used) == [401]

    assert statuses(overlap, used) == [200]
    pepper, digest = pepper_of(factory, used_id)
    assert (pepper, digest) == (2, keys.digest(overlap, used))  # moved on first use
    assert pepper_of(factory, idle_id)[0] == 1
    new_id, new = issue(factory, overlap, "issued during the overlap")
    assert pepper_of(factory, new_id)[0] == 2
    # A download link signed under the old secret is not accepted: links follow the current one.
    token = links.sign_link(before, digest, PATH, [])  # names the key as it is stored now
    with serve(create_app(overlap)) as base:
        link = httpx.get(base + PATH, params={"token": token}, timeout=30)
    assert link.status_code == 401

    after = direct  # the overlap is over: BILLING_API_OLD_SECRET_KEYS removed
    assert statuses(after, used, new, idle) == [200, 200, 401]


def test_an_old_secret_must_be_as_long_as_a_secret() -> None:
    with pytest.raises(ValidationError, match="OLD_SECRET_KEYS"):
        Settings(database_url="sqlite://", old_secret_keys="short")
    two = Settings(database_url="sqlite://", old_secret_keys=f" {NEW_SECRET} , {NEW_SECRET}x")
    assert two.old_secrets() == [NEW_SECRET, NEW_SECRET + "x"]
