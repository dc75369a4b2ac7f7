"""Which network addresses a flow author may reach, and how a call gets there.

A flow is data written by a platform's customers; without this guard an
``http`` node could read the platform's internal services (cloud metadata,
databases on loopback). Private, loopback, link-local, multicast, reserved
and unspecified addresses are refused unless the host is declared in the
configuration (``[http] allow_private`` or a ``[dependencies.*]`` base URL).

- **Every address, every form.** The check is on every address the name
  resolves to, so a public name that points inside is refused as well. An IPv6
  address that carries an IPv4 one (IPv4-mapped, IPv4-compatible, 6to4, Teredo
  server and client, the NAT64 well-known prefix) is refused when the IPv4 one
  would be; the NAT64 local-use prefix and ``192.0.0.0/24`` are refused whole.
  The tables are our own (:data:`_NOT_PUBLIC`) with Python's ``is_global`` as a
  second opinion, because Python's tables change between versions (3.11 calls
  ``192.0.0.192`` and 6to4 of loopback global).
- **The address checked is the address used.** :func:`check_url` resolves the
  name once and returns the :class:`Destination` that passed; the client of
  :func:`guarded_client` connects through a network backend that takes its
  addresses from the destination :func:`pinned` for the current task and never
  resolves again, so a name that answers a public address to the check and
  ``127.0.0.1`` to the connection (DNS rebinding) still reaches the first. A
  connection that nothing pinned is refused. The URL keeps its host name, so the
  ``Host`` header, the TLS server name and the certificate check all carry the
  name, and the connection pool is keyed by it: a TLS connection verified for
  one name is never reused for a request to another name that happens to share
  its address (which rewriting the URL to the address would allow). Hosts the
  configuration allows are pinned too (resolved once, not checked): one
  resolution per call, and no difference between the name checked and used.
- **Nothing kept between calls.** The client keeps no cookies (a ``Set-Cookie``
  answered to one institution's call would ride along on another's), follows no
  redirects and reads no proxy or certificate settings from the environment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Final

import httpcore
import httpx

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


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a checked URL may connect: its host as the connection names it (IDNA, no
    brackets), the port, and the addresses that passed the check, in resolver order."""

    host: str
    port: int
    addresses: tuple[str, ...]


async def check_url(url: str, allowed_hosts: Iterable[str]) -> Destination:
    """Resolve ``url``'s host once and refuse it unless it is http(s) to public addresses
    or an allowed host; the destination to :func:`pinned` for the call."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise NodeError(f"url {url!r} is not valid: {exc}", kind="validation") from exc
    if parsed.scheme not in ("http", "https"):
        raise NodeError(f"url scheme must be http or https, not {parsed.scheme!r}")
    if not parsed.host:
        raise NodeError(f"url {url!r} has no host")
    # the URL is parsed as httpx parses it, so the host checked is the host it connects to
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    allowed = {h.lower() for h in allowed_hosts}
    trusted = host in allowed or parsed.host in allowed
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NodeError(f"cannot resolve {parsed.host!r}: {exc}", kind="connection") from exc
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise NodeError(f"cannot resolve {parsed.host!r}: no address", kind="connection")
    for address in addresses:
        if trusted or address in allowed:
            continue
        if not is_public(address):
            raise BlockedAddress(
                f"refusing {parsed.host!r}: it resolves to non-public address {address};"
                " declare it as a dependency or in [http] allow_private",
                host=parsed.host,
                address=address,
            )
    return Destination(host, port, addresses)


_PINNED: ContextVar[Destination | None] = ContextVar("trilha_pinned_destination", default=None)


@contextmanager
def pinned(destination: Destination) -> Iterator[None]:
    """Let the current task's calls through a :func:`guarded_client` connect to
    ``destination``'s addresses, and to nothing else."""
    token = _PINNED.set(destination)
    try:
        yield
    finally:
        _PINNED.reset(token)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the addresses of the pinned destination instead of resolving the
    host again; a host that nothing pinned is refused."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        destination = _PINNED.get()
        if destination is None or (destination.host, destination.port) != (host, port):
            raise BlockedAddress(
                f"refusing {host}:{port}: its address was not checked for this call",
                host=host,
                address=host,
            )
        *others, last = destination.addresses  # check_url never pins an empty list
        for address in others:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError:  # the next address may answer
                continue
        return await self._inner.connect_tcp(last, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("refusing a unix socket", host=path, address=path)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections go through
    :class:`PinnedBackend`.

    httpx takes no network backend, but its transport is a thin adapter (requests,
    responses, error mapping) over ``self._pool``; the pool is replaced by one built
    with the same settings and our backend. The rebinding tests fail if a later httpx
    stops using it.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(verify=context, trust_env=False, limits=_LIMITS)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            network_backend=PinnedBackend(),
        )


def refuse_all_cookies() -> CookieJar:
    """A jar that stores nothing, so no answer's ``Set-Cookie`` reaches a later call
    (a flow's own ``Cookie`` header still goes out as written)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def guarded_client(*, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The client for calls made on behalf of flows: connects only where
    :func:`pinned` says, keeps no cookies, follows no redirects, ignores the
    environment. ``verify`` is for tests that bring their own certificate authority."""
    context = httpx.create_ssl_context(verify=verify, trust_env=False)
    return httpx.AsyncClient(
        transport=_PinnedTransport(context),
        cookies=refuse_all_cookies(),
        follow_redirects=False,
        trust_env=False,
    )
