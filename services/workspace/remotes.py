"""Where a git remote may point: https://, ssh:// and git@host:path to public addresses only, and
file:// inside the operator's roots.

A host name is resolved (in the resolver's thread, off the event loop) and refused when any of
its addresses is loopback, private (RFC 1918, ULA), link-local, shared, unspecified, multicast or
otherwise not globally routable, unless the operator allowlists the host. The address checked is
the one git then connects to (`Destination.pins`), so the name cannot resolve elsewhere between
the check and the connection (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.runtime.errors import InvalidArgument
from services.workspace.paths import CONTROL_CHARACTERS

_SCP_LIKE = re.compile(r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+):(?P<path>.+)")
_HOST = re.compile(r"[A-Za-z0-9._-]+")
DEFAULT_PORTS = {"https": 443, "ssh": 22}
# The remote a push or pull naming none goes to (git's own name for the one cloned from).
DEFAULT_REMOTE = "origin"
FIELD = "url"
REFUSED = "REMOTE_NOT_ALLOWED"


def _url_error(description: str, reason: str | None = None) -> InvalidArgument:
    return InvalidArgument(f"{FIELD}: {description}", fields=[(FIELD, description)], reason=reason)


@dataclass(frozen=True)
class Destination:
    """Where a validated remote URL connects: nothing for file://, else its host and port."""

    url: str
    scheme: str  # "https", "ssh" (scp-like included) or "file"
    host: str | None = None
    port: int | None = None

    @property
    def is_network(self) -> bool:
        return self.host is not None


def validate_remote_url(url: str, allowed_file_roots: Sequence[Path]) -> Destination:
    """`url` if it is https://, ssh://, scp-like git@host:path or file:// inside a root."""
    if url.startswith("-"):
        raise _url_error("must not start with '-'")
    if CONTROL_CHARACTERS.search(url) or " " in url:
        raise _url_error("must not contain spaces or control characters")
    if "::" in url.split("/", 1)[0] or "::" in url[:10]:
        raise _url_error("transport helpers (such as ext::) are not allowed", REFUSED)
    if "://" not in url:
        return _validate_scp_like(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # a bracketed host that is no IPv6 address, an unbalanced bracket
        raise _url_error("has a host that is not a valid address") from None
    scheme = parts.scheme.lower()
    if scheme in ("https", "ssh"):
        if not parts.hostname or parts.hostname.startswith("-"):
            raise _url_error("needs a host name")
        if not _HOST.fullmatch(parts.hostname) and not _is_address(parts.hostname):
            # A host name reaches ssh's command line, which git runs through a shell.
            raise _url_error("has a host name with characters no host name holds")
        if parts.password is not None or (scheme == "https" and parts.username is not None):
            raise _url_error("must not carry credentials")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise _url_error("has an invalid port") from None
        return Destination(url, scheme, parts.hostname, port)
    if scheme == "file":
        return _validate_file_url(url, allowed_file_roots)
    raise _url_error("only https://, ssh://, git@host:path and file:// URLs are allowed", REFUSED)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _validate_scp_like(url: str) -> Destination:
    matched = _SCP_LIKE.fullmatch(url)
    if matched is None or matched["host"].startswith("-") or "/" in url.split(":", 1)[0]:
        raise _url_error("only https://, ssh://, git@host:path and file:// URLs are allowed")
    if matched["path"].startswith("-"):
        raise _url_error("path must not start with '-'")
    return Destination(url, "ssh", matched["host"], DEFAULT_PORTS["ssh"])


def _validate_file_url(url: str, allowed_file_roots: Sequence[Path]) -> Destination:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise _url_error("file:// URLs must name a local path")
    target = os.path.realpath(unquote(parts.path))
    for root in allowed_file_roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, target]) == real_root:
            return Destination(url, "file")
    raise _url_error("file:// URLs must lie inside the configured roots", REFUSED)


def refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local, shared, unspecified, multicast, reserved: anything a remote
    on the internet never is (IPv4 written inside IPv6 is judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


@dataclass(frozen=True)
class Checked:
    """A destination whose host was resolved and accepted; `address` is what git must use
    (None for file:// and for allowlisted hosts, which connect as they resolve)."""

    destination: Destination
    address: str | None


async def check_destination(destination: Destination, allowed_hosts: Collection[str]) -> Checked:
    """Resolve the destination's host and refuse it if any address is not a public one."""
    host = destination.host
    if host is None or host.lower() in allowed_hosts:
        return Checked(destination, None)
    loop = asyncio.get_running_loop()
    try:
        # The event loop runs getaddrinfo in its executor: never on the loop itself.
        found = await loop.getaddrinfo(host, destination.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise _url_error(f"the host {host} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in found))
    for address in addresses:
        if refused_address(ipaddress.ip_address(address)):
            raise _url_error(
                f"the host {host} resolves to {address}: loopback, private, link-local,"
                " unspecified and multicast addresses are not allowed for remotes",
                REFUSED,
            )
    if not addresses:
        raise _url_error(f"the host {host} does not resolve")
    return Checked(destination, addresses[0])


def is_address_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


__all__ = [
    "Checked",
    "Destination",
    "check_destination",
    "is_address_literal",
    "refused_address",
    "validate_remote_url",
]
