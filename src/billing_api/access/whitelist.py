"""The per-company IP whitelist. Empty means nobody gets in (the opposite of netbox's default).

Entries are stored normalised as ``network/prefix`` text (a single address becomes a /32 or
/128). An entry with host bits set (``192.0.2.7/24``) is refused rather than masked: silently
turning it into ``192.0.2.0/24`` could open a range the operator meant as one address.
IPv4-mapped IPv6 input (``::ffff:192.0.2.7``) is stored as IPv4, and IPv4-mapped clients are
matched against IPv4 entries, so a dual-stack listener cannot lock a partner out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing_api.access import audit, permissions
from billing_api.access.models import Company, User, WhitelistEntry
from billing_api.errors import Conflict, InvalidInput, NotFound

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def unmap(address: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` → ``a.b.c.d``; every other address unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str, *, allow_any: bool = False) -> IPNetwork:
    """The normalised network for an address or CIDR. Raises ``InvalidInput`` for garbage,
    host bits, or a catch-all range without ``allow_any``."""
    value = text.strip()
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InvalidInput(f"{text!r} is not an IP address or CIDR range",
                               field="network") from exc
        raise InvalidInput(
            f"{text!r} has host bits set: write {loose} for the whole range, or "
            f"{value.split('/')[0]} for one address", field="network") from exc
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 \
            and network.network_address.ipv4_mapped is not None:
        network = ipaddress.IPv4Network(
            (network.network_address.ipv4_mapped, network.prefixlen - 96))
    if network.prefixlen == 0 and not allow_any:
        raise InvalidInput(f"{network} lets every address in: pass --allow-any if you mean it",
                           field="network")
    return network


def is_allowed(address: IPAddress | None, networks: Iterable[str | IPNetwork]) -> bool:
    """True when ``address`` (IPv4-mapped IPv6 counts as IPv4) is inside one of ``networks``.
    No address, or no networks, is False."""
    if address is None:
        return False
    client = unmap(address)
    for entry in networks:
        network = _stored_network(entry) if isinstance(entry, str) else entry
        if network.version == client.version and client in network:
            return True
    return False


@lru_cache(maxsize=4096)
def _stored_network(text: str) -> IPNetwork:
    # Parsing costs more than the membership test; entries repeat on every request.
    return ipaddress.ip_network(text)


def networks_for(session: Session, company_id: int) -> list[str]:
    return list(session.scalars(
        select(WhitelistEntry.network).where(WhitelistEntry.company_id == company_id)))


def add_entry(session: Session, company: Company, text: str, *, description: str = "",
              allow_any: bool = False, actor: User | None = None) -> WhitelistEntry:
    """Whitelist a network. Raises ``InvalidInput`` (see ``parse_network``), ``Conflict`` for a
    duplicate, ``NoApiPermission``."""
    permissions.require_api_permission(company, actor)
    network = str(parse_network(text, allow_any=allow_any))
    exists = session.scalar(select(WhitelistEntry.id).where(
        WhitelistEntry.company_id == company.id, WhitelistEntry.network == network))
    if exists is not None:
        raise Conflict(f"{network} is whitelisted already (entry {exists})",
                       code="whitelist_duplicate")
    entry = WhitelistEntry(company_id=company.id, network=network,
                           description=description.strip())
    session.add(entry)
    session.flush()
    audit.record(session, audit.EventType.WHITELIST_ADDED, company_id=company.id,
                 actor_user_id=actor.id if actor else None, detail=network)
    return entry


def list_entries(session: Session, company: Company) -> list[WhitelistEntry]:
    return list(session.scalars(select(WhitelistEntry).where(
        WhitelistEntry.company_id == company.id).order_by(WhitelistEntry.id)))


def remove_entry(session: Session, company: Company, entry_id: int, *,
                 actor: User | None = None) -> WhitelistEntry:
    """Remove one entry. Raises ``NotFound`` (also for another company's entry)."""
    permissions.require_api_permission(company, actor)
    entry = session.get(WhitelistEntry, entry_id)
    if entry is None or entry.company_id != company.id:
        raise NotFound(f"{company.name} has no whitelist entry {entry_id}",
                       code="whitelist_entry_not_found")
    session.delete(entry)
    session.flush()
    audit.record(session, audit.EventType.WHITELIST_REMOVED, company_id=company.id,
                 actor_user_id=actor.id if actor else None, detail=entry.network)
    return entry
