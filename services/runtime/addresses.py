"""Who the client is behind proxies: the right-most untrusted `X-Forwarded-For` hop.

The facade (over HTTP) and every service (over gRPC metadata, from the facade) resolve the
client address with this one function, and count a budget per address by the same block of it
(`address_block`). Hops are read from the right, because each proxy appends the address it was
called from: only hops added by proxies we trust are believable, and the first untrusted one is
the client (anything left of it is whatever the client wrote).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> IPAddress | None:
    """An IP from a hop or a peer (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`), IPv4-mapped IPv6
    unwrapped; None when it is no address (`unknown`, a hostname, garbage)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def grpc_peer_host(peer: str | None) -> str:
    """`ipv4:127.0.0.1:5555` -> `127.0.0.1`; `ipv6:[::1]:5555` -> `::1`; else ``."""
    if not peer:
        return ""
    scheme, _, rest = peer.partition(":")
    if scheme not in {"ipv4", "ipv6"}:
        return ""
    host = rest.rpartition(":")[0] if rest.count(":") >= 1 else rest
    return host.strip("[]")


def address_block(address: str) -> str:
    """Whose budget an address spends: an IPv4 address its own, an IPv6 one its /64 (one host
    or home line holds a whole /64 and could rotate through it to get a fresh budget a try)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def is_trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def resolve_client_address(
    peer: str, forwarded: Iterable[str], trusted: Sequence[IPNetwork]
) -> str:
    """The client's address, given the socket peer, every `X-Forwarded-For` value received
    (in order; one header may list several hops) and the networks of trusted proxies.

    A peer outside `trusted` is the client, whatever it forwards. Otherwise the hops are walked
    from the right, skipping trusted ones; the first untrusted hop is the client. A hop that is
    no address stops the walk at the trusted proxy that passed it on; when every hop is
    trusted, the left-most one is the client.
    """
    return _resolved(peer, tuple(forwarded), tuple(trusted))


# Every call resolves its caller; the same few peers and proxies call again and again, and
# parsing and printing the addresses each time was a few percent of a service's CPU per call.
@functools.lru_cache(maxsize=4096)
def _resolved(peer: str, forwarded: tuple[str, ...], trusted: tuple[IPNetwork, ...]) -> str:
    found = parse_address(peer)
    if found is None:
        return peer
    if not is_trusted(found, trusted):
        return str(found)
    hops = [hop for value in forwarded for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break
        found = address
        if not is_trusted(address, trusted):
            break
    return str(found)
