"""The http node's address policy: private, loopback and link-local targets are refused."""

from __future__ import annotations

import pytest

from trilha.errors import BlockedAddress, NodeError
from trilha.netguard import check_url, is_public


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
    ],
)
def test_non_public_addresses(address: str) -> None:
    """Loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved are not public."""
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"])
def test_public_addresses(address: str) -> None:
    """Globally routable unicast addresses are public."""
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
    """A host declared in configuration is allowed even though it is loopback."""
    await check_url("http://127.0.0.1:8000/x", ["127.0.0.1"])
    await check_url("http://LOCALHOST/x", ["localhost"])


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "http:///nohost"])
async def test_refuses_other_schemes_and_no_host(url: str) -> None:
    """Only http(s) URLs with a host are accepted."""
    with pytest.raises(NodeError):
        await check_url(url, [])
