"""Which network addresses a flow author may reach.

A flow is data written by a platform's customers; without this guard an
``http`` node could read the platform's internal services (cloud metadata,
databases on loopback). Private, loopback, link-local, multicast, reserved
and unspecified addresses are refused unless the host is declared in the
configuration (``[http] allow_private`` or a ``[dependencies.*]`` base URL).
The check is on every address the name resolves to, so a public name that
points inside is refused as well.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from trilha.errors import BlockedAddress, NodeError


def is_public(address: str) -> bool:
    """True for a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


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
