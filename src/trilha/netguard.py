"""Which network addresses a flow author may reach.

A flow is data written by a platform's customers; without this guard an
``http`` node could read the platform's internal services (cloud metadata,
databases on loopback). Private, loopback, link-local, multicast, reserved
and unspecified addresses are refused unless the host is declared in the
configuration (``[http] allow_private`` or a ``[dependencies.*]`` base URL).
The check is on every address the name resolves to, so a public name that
points inside is refused as well. An IPv6 address that carries an IPv4 one
(IPv4-mapped, IPv4-compatible, 6to4, Teredo server and client, the NAT64
well-known prefix) is refused when the IPv4 one would be; the NAT64 local-use
prefix and ``192.0.0.0/24`` are refused whole. The tables are our own
(:data:`_NOT_PUBLIC`) with Python's ``is_global`` as a second opinion, because
Python's tables change between versions (3.11 calls ``192.0.0.192`` and 6to4 of
loopback global).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from trilha.errors import BlockedAddress, NodeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: special-purpose blocks that are never a flow's to reach, whatever the Python
#: version thinks of them (IANA special-purpose registries, RFC 6890 and later)
_NOT_PUBLIC: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # this network
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments, all of it (3.11 calls .192 global)
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved and broadcast
        "::/96",  # unspecified, loopback and IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # NAT64 local use: where its IPv4 sits depends on the prefix length
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")


def _as_ipv4(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped or NAT64 (well-known prefix) address is its IPv4 address by
    another name: judged as that address, so ``::ffff:8.8.8.8`` is as public as
    ``8.8.8.8`` and ``64:ff9b::7f00:1`` as internal as ``127.0.0.1``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64_WELL_KNOWN:
            return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and reaches through a relay: 6to4,
    Teredo (server and client) and IPv4-compatible (``::a.b.c.d``, deprecated)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if int(ip) >> 32 == 0:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    return found


def _plainly_public(ip: IPAddress) -> bool:
    if any(ip.version == net.version and ip in net for net in _NOT_PUBLIC):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def is_public(address: str) -> bool:
    """True for a globally routable unicast address, and every IPv4 address it carries."""
    ip = _as_ipv4(ipaddress.ip_address(address.split("%", 1)[0]))
    forms: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        forms.extend(embedded_ipv4(ip))
    return all(_plainly_public(form) for form in forms)


async def check_url(url: str, allowed_hosts: Iterable[str]) -> None:
    """Refuse ``url`` unless it is http(s) to a public address or an allowed host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise NodeError(f"url scheme must be http or https, not {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise NodeError(f"url {url!r} has no host")
    allowed = {h.lower() for h in allowed_hosts}
    if host.lower() in allowed:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise NodeError(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        address = str(info[4][0])
        if address in allowed:
            continue
        if not is_public(address):
            raise BlockedAddress(
                f"refusing {host!r}: it resolves to non-public address {address};"
                " declare it as a dependency or in [http] allow_private",
                host=host,
                address=address,
            )
