"""The client address a request is judged by: the API whitelist, ``/metrics`` and the portal's
login throttle all call ``request_client_address`` (or ``resolve`` under it).

It is the TCP peer. Forwarding headers are believed only when that peer is a trusted proxy
(``BILLING_API_TRUSTED_PROXIES``, comma-separated CIDRs, empty by default); then the hops are
read right to left, skipping trusted proxies, and the first untrusted one is the client.
Taking the *left-most* value instead, as much copied code does, lets any client write its own
address into the header and walk through the whitelist.

Every field line counts. A header sent on several lines is one comma-separated list, the lines
joined in order (RFC 9110 §5.3); a proxy such as HAProxy (``option forwardfor``) *adds a line*
after the client's own. Reading only the first line (``headers.get``) would believe the line
the client wrote. So the function takes all header lines, never a one-value-per-name mapping.

``X-Forwarded-For`` or RFC 7239 ``Forwarded`` (its ``for=`` parameters), never both: when a
request from a trusted proxy carries both, no address is determined. Which one the proxy
writes cannot be told from the request, and believing the wrong one is a bypass (a proxy that
writes only ``Forwarded`` passes a client's forged ``X-Forwarded-For`` on untouched), so the
ambiguity is refused and the proxy must remove the header it does not write. A hop that cannot
be parsed (``unknown``, an obfuscated name, a malformed ``Forwarded`` element) likewise ends
the walk with no address. No address means the whitelist refuses; ``Resolved.code`` says why,
for the audit row.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import HTTPConnection

from billing_api.access.whitelist import IPAddress, IPNetwork, unmap

XFF = "x-forwarded-for"
FORWARDED = "forwarded"
# Why no address could be determined (the audit row's reason and the problem's code).
UNKNOWN_HOP = "client_address_unknown"
BOTH_HEADERS = "forwarding_headers_conflict"


@dataclass(frozen=True)
class Resolved:
    """The client's address, or None with a ``code`` and a sentence saying why."""

    address: IPAddress | None
    code: str = ""
    why: str = ""


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


def combined(header_lines: Iterable[tuple[str, str]], name: str) -> str | None:
    """Every field line named ``name`` joined with ``,`` in order (RFC 9110 §5.3), or None
    when there is none."""
    values = [value for key, value in header_lines if key.lower() == name]
    return ",".join(values) if values else None


def xff_hops(value: str) -> list[str]:
    """The hops of an ``X-Forwarded-For`` list; empty elements are skipped (RFC 9110 §5.6.1)."""
    return [hop.strip() for hop in value.split(",") if hop.strip()]


# RFC 7239 §4: forwarded-element = [ pair ] *( ";" [ pair ] ), pair = token "=" value,
# value = token / quoted-string; elements are separated by "," (with optional blanks).
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"'
_PAIR = re.compile(rf"[ \t]*({_TCHARS})=({_TCHARS}|{_QUOTED})[ \t]*")
_SEPARATOR = re.compile(r"[ \t]*([;,]|\Z)[ \t]*")


def forwarded_hops(value: str) -> list[str] | None:
    """The ``for=`` value of each element of a ``Forwarded`` list, or None when the list is
    malformed (an unclosed quote could otherwise swallow the elements after it), or an element
    has no ``for`` or two of them."""
    hops: list[str] = []
    position = 0
    element_for: str | None = None
    element_has_pairs = False
    while True:
        pair = _PAIR.match(value, position)
        if pair:
            if pair.group(1).lower() == "for":
                if element_for is not None:
                    return None
                element_for = _unquote(pair.group(2))
            element_has_pairs, position = True, pair.end()
        separator = _SEPARATOR.match(value, position)
        if separator is None:
            return None
        position = separator.end()
        if separator.group(1) == ";":
            continue
        # The end of an element ("," or the end of the text); empty elements are allowed.
        if element_for is not None:
            hops.append(element_for)
        elif element_has_pairs:  # an element that does not say whom it forwarded
            return None
        element_for, element_has_pairs = None, False
        if position >= len(value):
            return hops


def _unquote(raw: str) -> str:
    if raw.startswith('"'):
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def resolve(peer: str | None, header_lines: Iterable[tuple[str, str]],
            trusted_proxies: str) -> Resolved:
    """The address to check against the whitelist, with the reason when there is none.

    ``header_lines`` are all of the request's header field lines as (name, value) pairs
    (Starlette's ``headers.items()``, which keeps repeated names).
    """
    address = parse_address(peer) if peer else None
    if address is None:
        return Resolved(None, UNKNOWN_HOP, "the connection's address is unknown")
    trusted = parse_trusted_proxies(trusted_proxies)
    if not trusted or not _is_trusted(address, trusted):
        return Resolved(address)
    lines = list(header_lines)
    xff, forwarded = combined(lines, XFF), combined(lines, FORWARDED)
    if xff is not None and forwarded is not None:
        return Resolved(None, BOTH_HEADERS, "the request came through a trusted proxy with "
                        "both X-Forwarded-For and Forwarded headers, so the client address "
                        "is ambiguous: the proxy must remove the one it does not write")
    if forwarded is not None:
        hops = forwarded_hops(forwarded)
        if hops is None:
            return Resolved(None, UNKNOWN_HOP, "the Forwarded header is malformed")
    else:
        hops = xff_hops(xff or "")
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            return Resolved(None, UNKNOWN_HOP,
                            "a forwarding hop does not name an IP address")
        address = hop_address
        if not _is_trusted(address, trusted):
            return Resolved(address)
    # Every hop is a trusted proxy: the left-most one is where the request came from.
    return Resolved(address)


def client_address(peer: str | None, header_lines: Iterable[tuple[str, str]],
                   trusted_proxies: str) -> IPAddress | None:
    """The address to check against the whitelist, or None when it cannot be known."""
    return resolve(peer, header_lines, trusted_proxies).address


def request_resolved(connection: HTTPConnection, trusted_proxies: str) -> Resolved:
    """``resolve`` for a request: its TCP peer and every one of its header lines."""
    peer = connection.client.host if connection.client else None
    return resolve(peer, connection.headers.items(), trusted_proxies)


def request_client_address(connection: HTTPConnection, trusted_proxies: str) -> IPAddress | None:
    return request_resolved(connection, trusted_proxies).address
