"""A user's shell tries what an attacker would, beyond the escape suite (tests/e2e/
test_isolation.py): the descriptors its processes hold, the host's unix sockets (PostgreSQL's,
one in the host's /tmp, an abstract one), every address of the host, another user's terminal and
temporary files, privileges, the file limits, and a project folder swapped for a link.

The real users, workspace and terminal services on port 0 behind the real facade, real shells in
real sandboxes. Each attack prints what it reached and the assertions read that; where the
target could be missing, a control from the host shows it is really there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import SQLITE_ONLY
from tests.integration.rest_client import User, call, register
from tests.integration.terminal_harness import WAIT, Client, Start, System, create, write

pytestmark = SQLITE_ONLY

POSTGRES_SOCKET = Path("/var/run/postgresql/.s.PGSQL.5432")
# Tries to connect to each unix socket named on its command line ("@name": an abstract one).
CONNECT_UNIX = (
    "python3 -c 'import socket, sys\n"
    "for name in sys.argv[1:]:\n"
    "    s = socket.socket(socket.AF_UNIX)\n"
    "    try:\n"
    '        s.connect("\\0" + name[1:] if name.startswith("@") else name); print("OPEN", name)\n'
    '    except OSError as e: print("CLOSED", name, e.errno)\' '
)


async def shell_of(client: Client, user: User) -> str:
    return str((await create(client, user))["sessionId"])


async def run(client: Client, user: User, sid: str, command: str) -> str:
    """Types `command` in the shell and returns what it printed between two fresh markers (split
    in the typed line, so the echo of the keystrokes never matches)."""
    tag = secrets.token_hex(4)
    await write(client, user, sid, f"echo BEGIN-''{tag}; {command}; echo END-''{tag}\n")
    deadline = time.monotonic() + WAIT
    while True:
        body = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}/history", user)
        output: str = body["data"]["recentOutput"]
        found = re.search(rf"BEGIN-{tag}\r?\n(.*?)END-{tag}", output, re.S)
        if found:
            return found.group(1).replace("\r", "")
        if time.monotonic() > deadline:
            raise AssertionError(f"{command!r} did not finish: {output[-1500:]!r}")
        await asyncio.sleep(0.05)


async def run_as_a_new_user(client: Client, command: str) -> str:
    """Registers a user, opens their first shell, and returns what `command` printed in it."""
    user = await register(client)
    return await run(client, user, await shell_of(client, user), command)


@contextlib.contextmanager
def listening(
    family: socket.AddressFamily, address: str | tuple[str, int]
) -> Iterator[socket.socket]:
    """A listening socket of the host's, non-blocking: `accepted` tells whether anyone came."""
    server = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(address)
        server.listen(8)
        server.setblocking(False)
        yield server
    finally:
        server.close()


def accepted(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def host_addresses() -> list[str]:
    """Every address of the host's interfaces (link-local ones aside: they need a scope)."""
    found = ["127.0.0.1", "::1"]
    with contextlib.suppress(OSError):
        listing = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        for address in re.findall(r"\binet6? ([0-9a-f.:]+)/", listing):
            if not address.startswith("fe80") and address not in found:
                found.append(address)
    return found


# --- what the shell's processes hold -----------------------------------------------------------


async def test_the_shells_processes_hold_only_their_terminal(system: System) -> None:
    """The service that starts a shell has sockets (gRPC, the database) and files open; none may
    reach the sandbox as an inherited descriptor, where `..` from it would lead out of every
    mount the sandbox has."""
    listing = await run_as_a_new_user(
        system.client,
        'for p in /proc/[0-9]*; do echo "== $(cat $p/comm)"; ls -l $p/fd 2>/dev/null; done'
        " | grep -v '^total'",
    )
    processes = [line.split()[1] for line in listing.splitlines() if line.startswith("== ")]
    assert {"bwrap", "bash"} <= set(processes), listing
    targets = [
        line.split(" -> ", 1)[1] for line in listing.splitlines() if " -> " in line
    ]  # each process's descriptors, the listing's own included
    assert targets, listing
    held = {re.sub(r"/dev/pts/\d+$", "/dev/pts/N", t) for t in targets}
    unexpected = {
        t
        for t in held
        if not re.fullmatch(r"/dev/pts/N|anon_inode:\[[a-z]+\]|/proc/\d+/fd|pipe:\[\d+\]", t)
    }
    assert unexpected == set(), listing


# --- sockets and addresses of the host -----------------------------------------------------------


async def test_no_unix_socket_of_the_host_is_reachable(system: System, tmp_path: Path) -> None:
    name = f"stockfolio-attack-{secrets.token_hex(6)}"
    on_disk = tmp_path / "host.sock"
    sockets = [f"@{name}", str(on_disk), str(POSTGRES_SOCKET)]
    with (
        listening(socket.AF_UNIX, f"\0{name}") as abstract,
        listening(socket.AF_UNIX, str(on_disk)) as named,
    ):
        # The control: from the host each one answers (PostgreSQL's, where it listens on one).
        postgres_here = await asyncio.to_thread(POSTGRES_SOCKET.exists)
        for target in sockets:
            if target == str(POSTGRES_SOCKET) and not postgres_here:
                continue
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(f"\0{name}" if target.startswith("@") else target)
        assert accepted(abstract) and accepted(named)

        answer = await run_as_a_new_user(
            system.client,
            f"{CONNECT_UNIX} {' '.join(sockets)};"
            " echo found: $(find / -xdev -type s 2>/dev/null | wc -l)",
        )
        assert not accepted(abstract) and not accepted(named)
    assert "OPEN" not in answer, answer
    assert answer.count("CLOSED") == 3, answer
    assert "found: 0" in answer, answer


async def test_no_address_of_the_host_is_reachable(system: System) -> None:
    """The escape suite tries the services' ports on 127.0.0.1; here a port the host listens on
    at every address (IPv4 and IPv6), tried at each of the host's addresses."""
    addresses = host_addresses()
    with listening(socket.AF_INET6, ("::", 0)) as server:
        port = server.getsockname()[1]
        for address in addresses:  # the control
            with socket.create_connection((address, port), timeout=5):
                pass
            await asyncio.sleep(0)
        assert all(accepted(server) for _ in addresses)

        client = system.client
        ann = await register(client)
        sid = await shell_of(client, ann)
        probes = " ".join(addresses)
        answer = await run(
            client,
            ann,
            sid,
            f"for a in {probes}; do (exec 3<>/dev/tcp/$a/{port}) 2>/dev/null"
            ' && echo "OPEN $a" || echo "CLOSED $a"; done; ip -o link | cut -d: -f2',
        )
        assert not accepted(server)
    assert "OPEN" not in answer, answer
    assert answer.count("CLOSED") == len(addresses), answer
    assert answer.split()[-1] == "lo", answer  # the only interface it has


# --- another user ------------------------------------------------------------------------------


async def test_a_shell_reaches_neither_another_users_terminal_nor_their_temporary_files(
    system: System,
) -> None:
    client = system.client
    ann, bob = await register(client), await register(client)
    anns, bobs = await shell_of(client, ann), await shell_of(client, bob)
    mark = secrets.token_hex(6)
    made = await run(
        client,
        bob,
        bobs,
        f"echo x > /tmp/bob-{mark}; echo x > /dev/shm/bob-{mark}; echo x > /var/tmp/bob-{mark}"
        " && echo MADE",
    )
    assert "MADE" in made, made
    typed = "INJ''" + mark  # split, so Ann's own echo of the line never holds the joined word
    tried = await run(
        client,
        ann,
        anns,
        f"for t in /dev/pts/*; do echo {typed} > $t 2>/dev/null && echo WROTE $t; done;"
        " ls -a /tmp /dev/shm /var/tmp; ps -eo comm --no-headers | sort | uniq -c",
    )
    assert f"bob-{mark}" not in tried, tried
    assert "WROTE" not in tried.replace("WROTE /dev/pts/ptmx", ""), tried
    # What Bob's terminal showed meanwhile: nothing Ann wrote.
    await run(client, bob, bobs, "true")
    body = await call(client, "GET", f"/api/v1/terminal/terminals/{bobs}/history", bob)
    assert f"INJ{mark}" not in body["data"]["recentOutput"]
    # The processes Ann sees: her own shell's, never Bob's shell.
    counts = {name: int(n) for n, name in re.findall(r"^\s*(\d+) (\S+)$", tried, re.M)}
    assert counts["bash"] == 1 and counts["bwrap"] == 1, tried


async def test_of_the_hosts_etc_ssl_the_shell_sees_the_certificates_alone(system: System) -> None:
    """Every file the sandbox shows that belongs to the service's uid is the sandbox user's own
    inside (its uid maps to the service's): a service run as root (`make run` as root, these
    CI machines) showed the host's /etc/ssl/private, and any key in it, to every shell."""
    on_host = set(await asyncio.to_thread(os.listdir, "/etc/ssl"))
    answer = await run_as_a_new_user(
        system.client, "ls -A1 /etc/ssl; ls /etc/ssl/private 2>&1 | head -1"
    )
    *shown, refused = answer.strip().split("\n")
    assert shown == sorted(on_host & {"certs", "openssl.cnf"}), answer
    assert "No such file or directory" in refused, answer


# --- privileges and limits ---------------------------------------------------------------------


async def test_the_shell_cannot_gain_privileges(system: System) -> None:
    answer = await run_as_a_new_user(
        system.client,
        "grep NoNewPrivs /proc/self/status;"
        " unshare -Ur true 2>/dev/null; echo userns=$?;"
        " mkdir -p /workspace/m; mount -t tmpfs none /workspace/m 2>/dev/null; echo mount=$?;"
        " su -c true root </dev/null 2>/dev/null; echo su=$?;"
        " python3 -c 'import os; os.setuid(0)' 2>/dev/null; echo setuid=$?;"
        " id -u",
    )
    lines = answer.split()
    assert lines[:2] == ["NoNewPrivs:", "1"], answer
    assert [line for line in lines if "=" in line and line.endswith("=0")] == [], answer
    assert lines[-1] == "1000", answer


async def test_one_file_and_open_files_are_bounded(start_system: Start) -> None:
    async with start_system(
        SANDBOX_FILE_SIZE_BYTES=str(1 << 20), SANDBOX_OPEN_FILES="64"
    ) as system:
        client = system.client
        ann = await register(client)
        sid = await shell_of(client, ann)
        answer = await run(
            client,
            ann,
            sid,
            "head -c 4M /dev/zero > big 2>/dev/null; echo rc=$?; stat -c size=%s big;"
            " echo open=$(ulimit -n);"
            " python3 -c 'import resource as r; r.setrlimit(r.RLIMIT_NOFILE, (4096, 4096))'"
            " 2>/dev/null; echo raise=$?",
        )
        found = [word for word in answer.split() if "=" in word]
        # 153: killed by SIGXFSZ at the limit.
        assert found == ["rc=153", f"size={1 << 20}", "open=64", "raise=1"], answer
        on_host = system.root / ann.id / "big"
        assert on_host.stat().st_size == 1 << 20


# --- where a shell starts ----------------------------------------------------------------------


async def test_a_project_folder_swapped_for_a_link_starts_no_shell(system: System) -> None:
    """From her own shell Ann swaps her project's folder for a link to Bob's project, or to the
    host's root: a shell started there would have Bob's files (or the host's) as its working
    directory. It is refused as the workspace refuses such a folder, 422 "put it back" (it was
    a 503 "retry shortly"), and no shell starts."""
    client = system.client
    ann, bob = await register(client), await register(client)
    body = {"name": "p"}
    mine = (await call(client, "POST", "/api/v1/workspace/projects", ann, 201, json=body))["data"]
    await call(client, "POST", "/api/v1/workspace/projects", bob, 201, json={"name": "private"})
    sid = await shell_of(client, ann)
    await run(client, ann, sid, "mv p p.real")
    for target in (f"../{bob.id}/private", "/"):
        swapped = await run(client, ann, sid, f"rm -f p && ln -s {target} p && echo SWAPPED")
        assert "SWAPPED" in swapped, swapped
        refused = await create(client, ann, 422, projectId=mine["id"])
        assert refused["error"] == "PROJECT_FOLDER_REPLACED", refused
        assert "put it back" in refused["message"]
    listed = await call(client, "GET", "/api/v1/terminal/terminals", ann)
    assert [t["sessionId"] for t in listed["data"]] == [sid]
