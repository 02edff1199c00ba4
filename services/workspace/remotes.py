"""Where a git remote may point: https://, ssh:// and git@host:path to public addresses only, and
file:// inside the operator's roots: in the caller's own folder there, `<root>/<user id>/`, or,
to pull only, in the folder every user shares, `<root>/shared/`.

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
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.runtime.errors import InvalidArgument
from services.workspace.paths import CONTROL_CHARACTERS, real_root

_SCP_LIKE = re.compile(r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+):(?P<path>.+)")
_HOST = re.compile(r"[A-Za-z0-9._-]+")
DEFAULT_PORTS = {"https": 443, "ssh": 22}
# The remote a push or pull naming none goes to (git's own name for the one cloned from).
DEFAULT_REMOTE = "origin"
FIELD = "url"
REFUSED = "REMOTE_NOT_ALLOWED"
# The folder of each file:// root whose repositories every user may pull from and none may push
# to (the operator fills it); a user id (a UUID) never names it.
SHARED = "shared"
# The names git tries for a local repository's path, after the path itself (enter_repo): each
# is looked at, as git may open it.
_GIT_SUFFIXES = ("", "/.git", ".git", ".git/.git")


def _url_error(description: str, reason: str | None = None) -> InvalidArgument:
    return InvalidArgument(f"{FIELD}: {description}", fields=[(FIELD, description)], reason=reason)


@dataclass(frozen=True)
class Destination:
    """Where a validated remote URL connects: nothing for file://, else its host and port."""

    url: str
    scheme: str  # "https", "ssh" (scp-like included) or "file"
    host: str | None = None
    port: int | None = None
    # file:// only: the folder of the roots it lies in (the caller's own, or the shared one),
    # as the URL writes it: all the sandbox is given of the roots.
    area: Path | None = None
    # file:// only: in the shared folder, which is read-only (pulls only).
    shared: bool = False

    @property
    def is_network(self) -> bool:
        return self.host is not None


def validate_remote_url(
    url: str, allowed_file_roots: Sequence[Path], *, owner: str, push: bool = False
) -> Destination:
    """`url` if it is https://, ssh://, scp-like git@host:path, or file:// inside `owner`'s
    folder of a root (or its shared folder, unless it is for a `push`). A file:// URL's path is
    looked at on disk (it blocks: call it in a thread)."""
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
        return _validate_file_url(url, allowed_file_roots, owner, push=push)
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


def _validate_file_url(
    url: str, allowed_file_roots: Sequence[Path], owner: str, *, push: bool
) -> Destination:
    """A file:// URL inside `owner`'s folder of a root (or the shared one, unless to push),
    judged by its path as written, not where links lead: `.` and `..` are refused, and so is
    a link or a file (a `gitdir:` file, a bundle) anywhere from the folder to the repository,
    git's other names for it included. The sandbox of a push or a pull sees that folder only
    (GitRunner), so what git follows inside a repository (`commondir`, alternates) cannot
    leave it either."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise _url_error("file:// URLs must name a local path")
    path = unquote(parts.path)
    yours = _your_folder(allowed_file_roots, owner)
    if CONTROL_CHARACTERS.search(path) or not path.startswith("/"):
        raise _url_error(f"file:// URLs must name a repository in {yours}", REFUSED)
    if any(segment in (".", "..") for segment in path.split("/")):
        raise _url_error(f"must not hold '.' or '..' segments; use {yours}", REFUSED)
    target = Path(path)
    for root in allowed_file_roots:
        # The root as configured, or where it really lies (the operator's root may be a link).
        for form in dict.fromkeys((root, Path(os.path.realpath(root)))):
            if target.is_relative_to(form) and target != form:
                return _in_area(url, form, target.relative_to(form).parts, owner, yours, push)
    raise _url_error(f"file:// URLs must lie in {yours}", REFUSED)


def _your_folder(allowed_file_roots: Sequence[Path], owner: str) -> str:
    """How a refusal names the folders `owner` may use, in the first root."""
    if not allowed_file_roots:
        return "the configured roots (none are: file:// remotes are off)"
    root = allowed_file_roots[0]
    return (
        f"your own folder, {(root / owner).as_uri()}/ (or {(root / SHARED).as_uri()}/ to pull only)"
    )


def _in_area(
    url: str, root: Path, relative: tuple[str, ...], owner: str, yours: str, push: bool
) -> Destination:
    head = relative[0]
    if head not in (owner, SHARED):
        raise _url_error(f"that folder is another user's; use {yours}", REFUSED)
    if head == SHARED and push:
        raise _url_error(f"the shared folder is read-only (pull from it); push to {yours}", REFUSED)
    if len(relative) < 2:
        raise _url_error(f"must name a repository inside {yours}", REFUSED)
    area = root / head
    _check_no_link(area, relative[1:], yours)
    return Destination(url, "file", area=area, shared=head == SHARED)


def _check_no_link(area: Path, inside: tuple[str, ...], yours: str) -> None:
    """Refuse a link anywhere from `area` down to the repository `inside` names, and a file
    where git would look for the repository (its path, `<path>/.git`, `<path>.git`,
    `<path>.git/.git`): git would follow a `gitdir:` file where it leads. What is missing is
    fine (nothing there to follow; git then finds no repository)."""
    folders = [area, *(area.joinpath(*inside[:n]) for n in range(1, len(inside)))]
    target = area.joinpath(*inside)
    looked = [(folder, False) for folder in folders]
    looked += [(Path(f"{target}{suffix}"), True) for suffix in _GIT_SUFFIXES]
    for place, is_repository in looked:
        try:
            mode = os.lstat(place).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISLNK(mode):
            raise _url_error(f"leads through a link, which is not followed; use {yours}", REFUSED)
        if is_repository and not stat.S_ISDIR(mode):
            raise _url_error(
                "must name a repository folder, not a file (a gitdir: file is not followed),"
                f" in {yours}",
                REFUSED,
            )


def open_area(area: Path) -> int | None:
    """The folder of the roots a file:// remote lies in (`Destination.area`), opened (O_PATH),
    what git's sandbox binds; None when there is no such folder (git then finds no repository).
    Refused when it is a link or is not where its path says (swapped meanwhile)."""
    try:
        fd = os.open(area, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        raise _url_error("the folder it lies in is a link or no folder", REFUSED) from None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = real_root(area)  # no /proc here: O_NOFOLLOW stands alone
    if real != real_root(area):
        os.close(fd)
        raise _url_error("the folder it lies in moved while it was checked", REFUSED)
    return fd


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
    "open_area",
    "refused_address",
    "validate_remote_url",
]
