"""Which URLs a webhook may have and which addresses a delivery may reach (no I/O here).

A partner chooses the URL, so the server must not become their way into the distributor's
own network (OWASP API7, SSRF): only public addresses, over HTTPS. ``BILLING_API_WEBHOOK_ALLOW``
lists the exceptions (hosts by name, addresses or CIDR ranges) for tests and internal
receivers: those may also use plain HTTP. The URL is checked when it is added, and the
addresses its host resolves to are checked again before every attempt (DNS can change);
the delivery then connects to the checked address itself, so a second lookup cannot swap it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from billing_api.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
URL_MAX = 2000


class AddressRefused(Exception):
    """The host resolves to an address a webhook may not reach; ``str()`` says which."""


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        hosts, networks = set(), []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                hosts.add(part.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def lists_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def lists_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks
                   if network.version == address.version)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as in the URL, without brackets; lower case
    port: int
    path: str  # path and query, at least "/"


def _literal(host: str) -> IPAddress | None:
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 is 127.0.0.1: judge the address the packets go to.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """Reachable on the internet: not private, loopback, link-local, multicast, reserved,
    unspecified or shared (CGNAT) space."""
    address = _unmapped(address)
    return address.is_global and not (address.is_multicast or address.is_reserved
                                       or address.is_loopback or address.is_link_local)


def check_url(url: str, allow: AllowList) -> Target:
    """The URL's parts; raises ``InvalidInput`` (field ``url``) for a URL a webhook may not
    have: not HTTP(S), credentials in it, plain HTTP to a host the allow-list does not name,
    or a literal address that is not public and not allowed."""
    url = url.strip()
    if not url:
        raise InvalidInput("Enter the URL that should receive the events.", field="url")
    if len(url) > URL_MAX:
        raise InvalidInput(f"Keep the URL under {URL_MAX} characters.", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{url!r} is not a URL.", field="url") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("https", "http") or not host:
        raise InvalidInput("Use an https:// URL.", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("Leave credentials out of the URL: every event is signed with the "
                           "endpoint's secret instead.", field="url")
    if parts.fragment:
        raise InvalidInput("A URL with a #fragment cannot be called: remove it.", field="url")
    literal = _literal(host)
    allowed = allow.lists_host(host) or (literal is not None and allow.lists_address(literal))
    if scheme == "http" and not allowed:
        raise InvalidInput("Use an https:// URL: plain HTTP is only for the hosts the "
                           "distributor allows (BILLING_API_WEBHOOK_ALLOW).", field="url")
    if literal is not None and not allowed and not is_public(literal):
        raise InvalidInput(f"{literal} is a private, loopback or reserved address: webhooks go "
                           "to public addresses only.", field="url")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def pick_address(target: Target, addresses: list[IPAddress], allow: AllowList) -> IPAddress:
    """The address to connect to, from what the host resolved to. Every one is checked (a
    name that resolves to a public and a private address is refused: the other lookup could
    pick either); raises ``AddressRefused``."""
    if not addresses:
        raise AddressRefused(f"{target.host} did not resolve to any address")
    by_name = allow.lists_host(target.host)
    for address in addresses:
        if not (by_name or allow.lists_address(_unmapped(address)) or is_public(address)):
            raise AddressRefused(f"{target.host} resolves to {address}, a private, loopback or "
                                 "reserved address that BILLING_API_WEBHOOK_ALLOW does not list")
    if target.scheme == "http" and not by_name and not all(
            allow.lists_address(_unmapped(a)) for a in addresses):
        raise AddressRefused("plain HTTP to an address BILLING_API_WEBHOOK_ALLOW does not list")
    return addresses[0]
