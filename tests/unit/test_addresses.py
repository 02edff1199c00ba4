"""The client address behind proxies: the right-most untrusted X-Forwarded-For hop."""

from __future__ import annotations

import ipaddress

import pytest

from services.runtime.addresses import grpc_peer_host, parse_address, resolve_client_address

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # An untrusted peer is the client, whatever it claims.
        ("198.51.100.4", ["203.0.113.9"], "198.51.100.4"),
        # A trusted peer with nothing forwarded is itself the client.
        ("10.0.0.2", [], "10.0.0.2"),
        # One proxy: the hop it appended.
        ("10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        # The client wrote a hop of its own on the left: the proxy's hop wins.
        ("10.0.0.2", ["1.1.1.1, 203.0.113.9"], "203.0.113.9"),
        # Two proxies: trusted hops are skipped from the right.
        ("10.0.0.2", ["1.1.1.1, 203.0.113.9, 10.0.0.7"], "203.0.113.9"),
        # Several headers are one list, in order.
        ("10.0.0.2", ["1.1.1.1", "203.0.113.9, 10.0.0.7"], "203.0.113.9"),
        # Every hop trusted: the left-most is as far as anyone can see.
        ("10.0.0.2", ["10.1.1.1, 10.0.0.7"], "10.1.1.1"),
        # Garbage stops the walk at the trusted proxy that passed it on.
        ("10.0.0.2", ["203.0.113.9, not-an-ip, 10.0.0.7"], "10.0.0.7"),
        ("10.0.0.2", ["unknown"], "10.0.0.2"),
        # Ports and brackets are not part of the address; empty hops are skipped.
        ("10.0.0.2", ["203.0.113.9:5555, ,"], "203.0.113.9"),
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        # IPv6 proxies, and an IPv4 client seen through an IPv4-mapped peer.
        ("fd00::5", ["2001:db8::1"], "2001:db8::1"),
        ("::ffff:10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert resolve_client_address(peer, forwarded, PROXIES) == client


def test_nothing_is_trusted_without_proxies() -> None:
    assert resolve_client_address("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"


def test_a_peer_that_is_no_ip_is_passed_through() -> None:
    assert resolve_client_address("", ["203.0.113.9"], PROXIES) == ""


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv6:[::1]:5555", "::1"),
        ("unix:/tmp/socket", ""),
        (None, ""),
    ],
)
def test_grpc_peers_name_their_host(peer: str | None, host: str) -> None:
    assert grpc_peer_host(peer) == host


def test_a_hostname_is_no_address() -> None:
    assert parse_address("proxy.internal") is None
