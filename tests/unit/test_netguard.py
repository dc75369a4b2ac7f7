"""The http node's address policy: private, loopback and link-local targets are refused,
in every form an address can take, and a guarded client connects only where a check
pinned it."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from trilha.errors import BlockedAddress, NodeError
from trilha.netguard import (
    Destination,
    check_url,
    embedded_ipv4,
    guarded_client,
    is_public,
    pinned,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "100.64.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.88.99.1",
        "2001:db8::1",
        "ff0e::1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    """Loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved are not public."""
    assert not is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.192",  # 192.0.0.0/24 is refused whole (Python 3.11 calls .192 global)
        "192.0.0.1",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 (well-known prefix) of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::808:808",  # NAT64 local use: refused whole
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "::8.8.8.8",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45
        "2001:0:7f00:1:0:0:f5ff:fffe",  # Teredo, server 127.0.0.1 and client 10.0.0.1
    ],
)
def test_ipv4_in_ipv6_and_special_blocks_are_not_public(address: str) -> None:
    """6to4, NAT64, Teredo, IPv4-mapped and IPv4-compatible forms of internal addresses,
    the NAT64 local-use prefix and 192.0.0.0/24 are not public, whatever Python says."""
    assert not is_public(address)


def test_embedded_ipv4_finds_every_form() -> None:
    """The IPv4 addresses carried by 6to4, both ends of Teredo and IPv4-compatible
    addresses are found."""
    v4 = ipaddress.IPv4Address
    assert embedded_ipv4(ipaddress.IPv6Address("2002:7f00:1::1")) == [v4("127.0.0.1")]
    teredo = embedded_ipv4(ipaddress.IPv6Address("2001:0:7f00:1:0:0:f5ff:fffe"))
    assert teredo == [v4("127.0.0.1"), v4("10.0.0.1")]
    assert embedded_ipv4(ipaddress.IPv6Address("::a00:1")) == [v4("10.0.0.1")]
    assert embedded_ipv4(ipaddress.IPv6Address("2001:4860:4860::8888")) == []


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",  # IPv4-mapped of a public address is that address
        "64:ff9b::808:808",  # so is NAT64 (DNS64 answers on IPv6-only networks)
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_public_addresses(address: str) -> None:
    """Globally routable unicast addresses, and the IPv6 forms of public IPv4 ones, are
    public."""
    assert is_public(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/x",
        "http://localhost/x",
        "http://[::1]/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_refuses_internal_targets(url: str) -> None:
    """A URL whose host is or resolves to an internal address is refused."""
    with pytest.raises(BlockedAddress):
        await check_url(url, [])


async def test_allowed_hosts_pass() -> None:
    """A host declared in configuration is allowed even though it is loopback, and is
    pinned to what it resolved to like any other."""
    assert await check_url("http://127.0.0.1:8000/x", ["127.0.0.1"]) == Destination(
        "127.0.0.1", 8000, ("127.0.0.1",)
    )
    local = await check_url("http://LOCALHOST/x", ["localhost"])
    assert (local.host, local.port) == ("localhost", 80)
    assert local.addresses and not any(is_public(a) for a in local.addresses)


async def test_destination_names_the_host_as_connected() -> None:
    """The destination's host is the one the client connects to: no IPv6 brackets, the
    scheme's port when the URL names none."""
    assert await check_url("https://[::1]/", ["::1"]) == Destination("::1", 443, ("::1",))


async def test_guarded_client_connects_only_where_pinned() -> None:
    """A guarded client refuses a connection that no check pinned, or that was pinned
    for another host or port, before anything is sent."""
    async with guarded_client() as client:
        with pytest.raises(BlockedAddress, match="not checked"):
            await client.get("http://127.0.0.1:9/")
        with (
            pinned(Destination("127.0.0.1", 10, ("127.0.0.1",))),
            pytest.raises(BlockedAddress, match="not checked"),
        ):
            await client.get("http://127.0.0.1:9/")
        with (
            pinned(Destination("localhost", 9, ("127.0.0.1",))),
            pytest.raises(BlockedAddress, match="not checked"),
        ):
            await client.get("http://127.0.0.1:9/")


async def test_guarded_client_keeps_no_cookies() -> None:
    """The guarded client's jar refuses every cookie it is offered."""
    async with guarded_client() as client:
        offered = httpx.Response(
            200,
            headers={"set-cookie": "session=b-secret; Path=/"},
            request=httpx.Request("GET", "http://crm.example.com/login"),
        )
        client.cookies.extract_cookies(offered)
        assert len(client.cookies.jar) == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "http:///nohost"])
async def test_refuses_other_schemes_and_no_host(url: str) -> None:
    """Only http(s) URLs with a host are accepted."""
    with pytest.raises(NodeError):
        await check_url(url, [])
