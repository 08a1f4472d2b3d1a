"""The Account Administrator's webhook endpoints: add (the secret is returned once), list,
remove, enable again. ``actor`` None is the distributor's operator (the CLI without
``--as``), as for keys and the whitelist; a user must be the company's Account Administrator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from billing_api.access import audit, permissions
from billing_api.access.models import Company, User
from billing_api.db import utcnow
from billing_api.environments import Environment
from billing_api.errors import Conflict, InvalidInput, NotFound
from billing_api.settings import Settings
from billing_api.webhooks import secret_store, ssrf
from billing_api.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

MAX_PER_ENVIRONMENT = 10
Resolver = Callable[[str, int], list[ssrf.IPAddress]]


@dataclass(frozen=True)
class EndpointState:
    endpoint: WebhookEndpoint
    status: str  # "active" or "disabled"


def require_manager(company: Company, actor: User | None) -> None:
    """The operator (None) or the company's Account Administrator; raises
    ``NotAccountAdministrator`` for anyone else."""
    if actor is not None:
        permissions.require_admin(company, actor)


def add_endpoint(session: Session, settings: Settings, company: Company,
                 environment: Environment | str, url: str, *, actor: User | None,
                 resolve: Resolver) -> tuple[WebhookEndpoint, str]:
    """Register ``url`` for the company's ``environment``; returns the endpoint and its
    signing secret (shown once). Raises ``NotAccountAdministrator``, ``InvalidInput`` (a URL
    refused by ``ssrf.check_url``, or whose host resolves to a refused address), ``Conflict``
    (the same URL twice, too many endpoints)."""
    require_manager(company, actor)
    if company.kind != "partner":
        raise InvalidInput(f"{company.name} is not a partner company", field="company")
    if environment not in {e.value for e in Environment}:
        raise InvalidInput("Choose production or sandbox.", field="environment")
    environment = Environment(environment).value
    allow = ssrf.AllowList.parse(settings.webhook_allow)
    target = ssrf.check_url(url, allow)
    try:
        ssrf.pick_address(target, resolve(target.host, target.port), allow)
    except (ssrf.AddressRefused, OSError) as exc:
        reason = str(exc) if isinstance(exc, ssrf.AddressRefused) else \
            f"{target.host} cannot be resolved"
        raise InvalidInput(f"{reason}: webhooks go to public addresses only.",
                           field="url") from None
    existing = list(session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.company_id == company.id, WebhookEndpoint.environment == environment)))
    if any(e.url == url.strip() for e in existing):
        raise Conflict(f"{url.strip()} is registered for {environment} already",
                       code="webhook_exists")
    if len(existing) >= MAX_PER_ENVIRONMENT:
        raise Conflict(f"{company.name} has {MAX_PER_ENVIRONMENT} endpoints for {environment}: "
                       "remove one first", code="too_many_webhooks")
    secret = secret_store.generate()
    endpoint = WebhookEndpoint(
        company_id=company.id, environment=environment, url=url.strip(),
        secret_encrypted=secret_store.encrypt(settings, secret),
        created_by_user_id=actor.id if actor else None, disabled_reason="")
    session.add(endpoint)
    session.flush()
    audit.record(session, audit.EventType.WEBHOOK_ADDED, company_id=company.id,
                 actor_user_id=actor.id if actor else None,
                 detail=f"{environment} {endpoint.url}"[:400])
    return endpoint, secret


def list_endpoints(session: Session, company: Company) -> list[EndpointState]:
    rows = session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.company_id == company.id).order_by(WebhookEndpoint.id))
    return [EndpointState(e, "disabled" if e.disabled_at else "active") for e in rows]


def own_endpoint(session: Session, company: Company, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.company_id != company.id:
        raise NotFound(f"{company.name} has no webhook endpoint {endpoint_id}",
                       code="webhook_not_found")
    return endpoint


def find_endpoint(session: Session, company: Company, environment: str,
                  id_or_url: str) -> WebhookEndpoint:
    """The endpoint named by its id or its URL in ``environment``; raises ``NotFound``."""
    if id_or_url.isdigit():
        return own_endpoint(session, company, int(id_or_url))
    found = session.scalar(select(WebhookEndpoint).where(
        WebhookEndpoint.company_id == company.id, WebhookEndpoint.environment == environment,
        WebhookEndpoint.url == id_or_url.strip()))
    if found is None:
        raise NotFound(f"{company.name} has no {environment} webhook endpoint {id_or_url}",
                       code="webhook_not_found")
    return found


def remove_endpoint(session: Session, company: Company, endpoint: WebhookEndpoint, *,
                    actor: User | None) -> None:
    """Delete the endpoint with its undelivered messages and delivery log."""
    require_manager(company, actor)
    messages = select(WebhookMessage.id).where(WebhookMessage.endpoint_id == endpoint.id)
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(messages)))
    session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id))
    audit.record(session, audit.EventType.WEBHOOK_REMOVED, company_id=company.id,
                 actor_user_id=actor.id if actor else None,
                 detail=f"{endpoint.environment} {endpoint.url}"[:400])
    session.delete(endpoint)
    session.flush()


def enable_endpoint(session: Session, company: Company, endpoint: WebhookEndpoint, *,
                    actor: User | None) -> None:
    """Enable a disabled endpoint again: its messages still waiting are sent at once, with a
    new retry window. Raises ``Conflict`` when it is enabled already."""
    require_manager(company, actor)
    if endpoint.disabled_at is None:
        raise Conflict(f"webhook endpoint {endpoint.id} is enabled already",
                       code="webhook_enabled")
    now = utcnow()
    endpoint.disabled_at = None
    endpoint.disabled_reason = ""
    session.execute(update(WebhookMessage).where(
        WebhookMessage.endpoint_id == endpoint.id, WebhookMessage.delivered_at.is_(None),
        WebhookMessage.failed_at.is_(None)).values(next_attempt_at=now, retry_since=now))
    session.flush()
    audit.record(session, audit.EventType.WEBHOOK_ENABLED, company_id=company.id,
                 actor_user_id=actor.id if actor else None,
                 detail=f"{endpoint.environment} {endpoint.url}"[:400])
