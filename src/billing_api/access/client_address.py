"""The client address a request is judged by.

It is the TCP peer. Forwarding headers are believed only when that peer is a trusted proxy
(``BILLING_API_TRUSTED_PROXIES``, comma-separated CIDRs, empty by default); then the hops are
read right to left, skipping trusted proxies, and the first untrusted one is the client.
Taking the *left-most* value instead, as much copied code does, lets any client write its own
address into the header and walk through the whitelist.

``X-Forwarded-For`` is read when present, else ``Forwarded`` (RFC 7239 ``for=``). A hop that
cannot be parsed (``unknown``, an obfuscated name) ends the walk with no address, which the
whitelist refuses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache

from billing_api.access.whitelist import IPAddress, IPNetwork, unmap


@lru_cache(maxsize=16)
def parse_trusted_proxies(setting: str) -> tuple[IPNetwork, ...]:
    """The networks of the ``trusted_proxies`` setting; raises ``ValueError`` on a bad one."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in setting.split(",") if part.strip())


def parse_address(text: str) -> IPAddress | None:
    """An address from a header hop or a peer: strips ports, brackets and quotes."""
    value = text.strip().strip('"')
    if value.startswith("["):  # [2001:db8::1]:443
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # 192.0.2.1:443
        value = value.split(":", 1)[0]
    try:
        return unmap(ipaddress.ip_address(value.split("%", 1)[0]))
    except ValueError:
        return None


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def forwarded_hops(headers: Mapping[str, str]) -> list[str]:
    """The hop list from ``X-Forwarded-For``, else from ``Forwarded``'s ``for=`` parameters."""
    xff = headers.get("x-forwarded-for")
    if xff:
        return [hop.strip() for hop in xff.split(",") if hop.strip()]
    forwarded = headers.get("forwarded")
    hops: list[str] = []
    if forwarded:
        for element in forwarded.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    hops.append(value)
    return hops


def client_address(peer: str | None, headers: Mapping[str, str],
                   trusted_proxies: str) -> IPAddress | None:
    """The address to check against the whitelist, or None when it cannot be known."""
    address = parse_address(peer) if peer else None
    trusted = parse_trusted_proxies(trusted_proxies)
    if address is None or not trusted or not _is_trusted(address, trusted):
        return address
    for hop in reversed(forwarded_hops(headers)):
        hop_address = parse_address(hop)
        if hop_address is None:
            return None
        address = hop_address
        if not _is_trusted(address, trusted):
            return address
    # Every hop is a trusted proxy: the left-most one is where the request came from.
    return address
