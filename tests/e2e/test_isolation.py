"""The escape suite: a user's browser terminal tries what an attacker would, against the system
as `make run` starts it (real shells in real sandboxes), and gets nowhere.

Each attempt prints what it found between markers; the assertions read that text. A command
that merely fails would prove nothing, so each attack also prints what it *did* reach.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.processes import host_processes
from tests.system_harness import Account, System, register, request

pytestmark = pytest.mark.e2e

WAIT = 30.0
SECRET_NAMES = re.compile(
    r"JWT_SECRET|TOKEN_PRIVATE|PRIVATE KEY|DATABASE_URL|REDIS_URL|CLAUDE_API_KEY|"
    r"ALPHA_VANTAGE|STOCKFOLIO_VAR_DIR|PYTHONPATH"
)


@dataclass
class Shell:
    system: System
    account: Account
    session_id: str
    pid: int

    def run(self, command: str, *, within: float = WAIT) -> str:
        """Types `command` and returns what it printed between two fresh markers."""
        tag = secrets.token_hex(4)
        begin, end = f"BEGIN-{tag}", f"END-{tag}"
        # The markers are split in the typed line, so the echo of the keystrokes never matches.
        typed = f"echo BEGIN-''{tag}; {command}; echo END-''{tag}\n"
        self._post("write", {"data": typed})
        deadline = time.monotonic() + within
        while True:
            output = self._history()
            found = re.search(rf"{begin}\r?\n(.*?){end}", output, re.S)
            if found:
                return found.group(1).replace("\r", "")
            if time.monotonic() > deadline:
                raise AssertionError(f"{command!r} did not finish: {output[-1500:]!r}")
            time.sleep(0.1)

    def close(self) -> None:
        self._call("DELETE", "")

    def _post(self, action: str, body: object) -> None:
        self._call("POST", f"/{action}", body)

    def _history(self) -> str:
        output: str = self._call("GET", "/history")["data"]["recentOutput"]
        return output

    def _call(self, method: str, path: str, body: object = None) -> Any:
        """A request about this terminal (`path` after its URL), which must answer 200."""
        answer = request(
            method,
            f"{self.system.facade_url}/api/v1/terminal/terminals/{self.session_id}{path}",
            body=body,
            token=self.account.access_token,
        )
        assert answer.status == 200, answer.body
        return answer.body


def open_shell(system: System, account: Account, project_id: str = "") -> Shell:
    body: dict[str, object] = {"cols": 200, "rows": 50}
    if project_id:
        body["projectId"] = project_id
    created = request(
        "POST",
        f"{system.facade_url}/api/v1/terminal/terminals/create",
        body=body,
        token=account.access_token,
    )
    assert created.status == 201, created.body
    data = created.body["data"]
    return Shell(system, account, data["sessionId"], data["pid"])


@pytest.fixture
def shell(system: System, account: Account) -> Iterator[Shell]:
    opened = open_shell(system, account)
    yield opened
    request(
        "DELETE",
        f"{system.facade_url}/api/v1/terminal/terminals/{opened.session_id}",
        token=account.access_token,
    )


def create_project(system: System, account: Account, name: str) -> str:
    created = request(
        "POST",
        f"{system.facade_url}/api/v1/workspace/projects",
        body={"name": name, "template": "notes"},
        token=account.access_token,
    )
    assert created.status == 201, created.body
    project_id: str = created.body["data"]["id"]
    return project_id


# --- secrets and processes ---------------------------------------------------------------------


def test_no_process_the_shell_can_read_holds_a_secret(shell: Shell) -> None:
    environ = shell.run(
        'for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do echo "== $f";'
        ' tr "\\0" "\\n" < "$f"; done'
    )
    assert "== /proc/1/environ" in environ  # it did read the sandbox's own processes
    assert "PATH=" in environ
    assert not SECRET_NAMES.search(environ), environ
    # The shell's parent is the sandbox's PID 1, bubblewrap: it holds no environment at all.
    parent = shell.run('echo "parent=$PPID"; tr "\\0" "\\n" < /proc/$PPID/environ; echo')
    assert parent.split() == ["parent=1"], parent


def test_the_shell_sees_only_its_own_processes(shell: Shell) -> None:
    listing = shell.run("ps -eo pid,comm --no-headers")
    commands = [line.split()[1] for line in listing.splitlines() if line.strip()]
    assert "ps" in commands and "bash" in commands
    assert not {"python", "python3", "honcho", "postgres", "redis-server"} & set(commands)
    assert len(commands) <= 5, listing
    count = int(shell.run("ls -d /proc/[0-9]* | wc -l").strip())
    assert count <= 5


def test_the_shell_runs_as_an_unprivileged_user(shell: Shell) -> None:
    assert shell.run("id -u; id -g").split() == ["1000", "1000"]
    capabilities = shell.run("grep CapEff /proc/self/status")
    assert capabilities.split()[-1] == "0000000000000000"


def test_the_development_secrets_are_out_of_reach(system: System, shell: Shell) -> None:
    assert system.var_dir is not None
    names = sorted(p.name for p in (system.var_dir / "secrets").iterdir())
    assert names  # the host does hold secrets there
    listing = shell.run(f"ls {system.var_dir}/secrets 2>&1; ls ../../secrets 2>&1")
    assert listing.count("No such file or directory") == 2, listing
    # The services' own files too: their databases and whatever else lies in var/.
    names += [p.name for p in system.var_dir.iterdir() if p.is_file()]
    pattern = " -o ".join(f"-name '{n}'" for n in names)
    found = shell.run(f"find / -path /proc -prune -o \\( {pattern} \\) -print 2>/dev/null")
    assert found.strip() == "", found


# --- files -------------------------------------------------------------------------------------


def test_another_users_files_cannot_be_found_or_read(system: System, shell: Shell) -> None:
    _, bob = register(system)
    project = create_project(system, bob, "bobs-plans")
    secret = secrets.token_hex(8)
    written = request(
        "POST",
        f"{system.facade_url}/api/v1/files",
        body={"project": project, "path": "secret.txt", "content": secret},
        token=bob.access_token,
    )
    assert written.status == 201, written.body
    found = shell.run(
        f"find / -name secret.txt 2>/dev/null; ls ../{bob.user_id} 2>&1;"
        f" grep -r {secret} /workspace /tmp /var 2>/dev/null | head -3; cd / && ls"
    )
    assert secret not in found and "secret.txt" not in found
    assert "No such file or directory" in found
    top = set(found.split()[-12:])
    assert "workspace" in top and "root" not in top and "work" not in top


def test_nothing_outside_the_users_folder_is_writable(system: System, shell: Shell) -> None:
    attempts = shell.run(
        "for d in / /usr /etc /bin /var /proc/sys/kernel /workspace/..; do"
        ' touch "$d/escape-test" 2>/dev/null && echo "WROTE $d" || echo "REFUSED $d"; done;'
        " touch /workspace/mine && echo WROTE-HOME"
    )
    assert "WROTE /" not in attempts.replace("WROTE-HOME", ""), attempts
    assert attempts.count("REFUSED") == 7 and "WROTE-HOME" in attempts


def test_the_sandboxs_tmp_is_not_the_hosts(shell: Shell) -> None:
    name = f"stockfolio-escape-{secrets.token_hex(6)}"
    assert "MADE" in shell.run(f"echo x > /tmp/{name} && echo MADE")
    assert not Path("/tmp", name).exists()
    assert not Path("/var/tmp", name).exists()


# --- network -----------------------------------------------------------------------------------


def test_no_database_cache_or_service_port_is_reachable(system: System, shell: Shell) -> None:
    ports = [5432, 6379, *system.grpc_ports.values(), *system.admin_ports.values()]
    ports.append(int(system.facade_url.rsplit(":", 1)[1]))
    probes = " ".join(str(p) for p in ports)
    # A control: from the host, the same addresses answer.
    with socket.create_connection(("127.0.0.1", 5432), timeout=5):
        pass
    answer = shell.run(
        f"for p in {probes}; do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null"
        ' && echo "OPEN $p" || echo "CLOSED $p"; done; ip -o addr 2>/dev/null | wc -l'
    )
    assert "OPEN" not in answer, answer
    assert answer.count("CLOSED") == len(ports)


# --- lifetimes and limits ------------------------------------------------------------------------


def test_nothing_outlives_a_closed_terminal(system: System, account: Account) -> None:
    opened = open_shell(system, account)
    marker = f"600.{secrets.randbelow(10**6):06d}"
    opened.run(
        f"setsid sleep {marker} >/dev/null 2>&1 < /dev/null & nohup sleep {marker} >/dev/null"
        f" 2>&1 & (sleep {marker} &) ; sleep 0.2"
    )
    assert len(host_processes(["sleep", marker])) == 3
    opened.close()
    deadline = time.monotonic() + WAIT
    while host_processes(["sleep", marker]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_processes(["sleep", marker]) == []


def test_the_process_limit_holds(shell: Shell) -> None:
    # perl's fork fails at once at the limit (bash would retry for half a minute).
    answer = shell.run(
        "perl -e 'my $n = 0; for (1..200) { my $p = fork(); if (!defined $p) { last }"
        ' if ($p == 0) { sleep 30; exit 0 } $n++ } print "FORKED $n\\n"; kill 9, -$$;\''
        " 2>&1; echo done"
    )
    forked = int(re.search(r"FORKED (\d+)", answer).group(1))  # type: ignore[union-attr]
    assert 10 < forked < 64, answer


def test_the_memory_limit_holds(shell: Shell) -> None:
    answer = shell.run(
        "python3 -c 'x = bytearray(512 << 20); print(\"ALLOCATED\", len(x))' 2>&1; echo rc=$?"
    )
    assert "ALLOCATED" not in answer
    assert re.search(r"rc=(137|1)\b", answer), answer
    assert "small=ok" in shell.run("python3 -c 'x = bytearray(64 << 20); print(\"small=ok\")' 2>&1")


# --- through the files API ---------------------------------------------------------------------


def test_links_made_in_the_terminal_do_not_open_the_files_api(
    system: System, account: Account
) -> None:
    project = create_project(system, account, "links")
    opened = open_shell(system, account, project)
    try:
        made = opened.run("ln -s / rootlink && ln -s .git gitdir && ln -s /etc etclink && echo OK")
        assert "OK" in made
    finally:
        opened.close()
    base = f"{system.facade_url}/api/v1/files"
    tries = [
        ("GET", f"{base}/rootlink/etc/passwd?project={project}", None),
        ("GET", f"{base}/etclink/hostname?project={project}", None),
        ("GET", f"{base}/gitdir/config?project={project}", None),
        ("PUT", f"{base}/gitdir/config", {"project": project, "content": "[core]\n"}),
        ("POST", base, {"project": project, "path": "gitdir/hooks/post-commit", "content": "x"}),
        ("PUT", f"{base}/.git/config", {"project": project, "content": "[core]\n"}),
    ]
    for method, url, body in tries:
        answer = request(method, url, body=body, token=account.access_token)
        assert 400 <= answer.status < 500, (method, url, answer.status, answer.body)
        assert answer.body["success"] is False


# --- git on a repository the user controls ------------------------------------------------------

HOSTILE_CONFIG = (
    "[log]\\n\\tshowSignature = true\\n"
    "[gpg]\\n\\tprogram = {evil}\\n"
    '[gpg "ssh"]\\n\\tprogram = {evil}\\n'
    "[core]\\n\\tfsmonitor = {evil}\\n\\tpager = {evil}\\n\\tsshCommand = {evil}\\n"
    "\\thooksPath = .githooks\\n\\teditor = {evil}\\n"
    '[diff "x"]\\n\\ttextconv = {evil}\\n\\tcommand = {evil}\\n'
    '[filter "f"]\\n\\tclean = {evil}\\n\\tsmudge = {evil}\\n\\trequired = true\\n'
    '[remote "origin"]\\n\\turl = git@example.com:x/y.git\\n\\tuploadpack = {evil}\\n'
    "\\treceivepack = {evil}\\n\\tfetch = +refs/heads/*:refs/remotes/origin/*\\n"
    '[url "ext::sh -c {evil}%% "]\\n\\tinsteadOf = https://\\n'
)


def test_a_hostile_git_config_written_in_the_terminal_runs_nothing(
    system: System, account: Account
) -> None:
    assert system.var_dir is not None
    project = create_project(system, account, "hostile")
    mark = f"pwned-{secrets.token_hex(6)}"
    host_markers = [Path("/tmp", mark), system.var_dir / mark]
    evil = "/workspace/hostile-evil.sh"
    opened = open_shell(system, account, project)
    try:
        written = opened.run(
            f"printf '#!/bin/sh\\ntouch /tmp/{mark} {system.var_dir}/{mark} ./ran-{mark}"
            f" $HOME/ran-{mark}\\ncat\\n' > {evil} && chmod +x {evil} && cp {evil} ./evil.sh &&"
            f" printf '{HOSTILE_CONFIG.format(evil='./evil.sh')}' >> .git/config &&"
            " printf '* diff=x filter=f\\n' > .gitattributes && mkdir -p .githooks &&"
            " cp evil.sh .githooks/pre-commit && cp evil.sh .githooks/post-checkout &&"
            " echo changed >> README.md && git config --get gpg.program && echo WRITTEN"
        )
        assert "./evil.sh\nWRITTEN" in written, written
    finally:
        opened.close()
    base = f"{system.facade_url}/api/v1/git"
    token = account.access_token
    answers = [
        request("GET", f"{base}/status?project={project}", token=token),
        request("GET", f"{base}/log?project={project}", token=token),
        request("GET", f"{base}/diff?project={project}", token=token),
        request("GET", f"{base}/branches?project={project}", token=token),
        request("GET", f"{base}/remotes?project={project}", token=token),
        request("POST", f"{base}/commit", body={"project": project, "message": "x"}, token=token),
        request("POST", f"{base}/pull", body={"project": project, "remote": "origin"}, token=token),
        request("POST", f"{base}/push", body={"project": project, "remote": "origin"}, token=token),
    ]
    for answer in answers:
        assert answer.status < 500, answer.body
    assert answers[0].status == 200 and answers[1].status == 200
    # Nothing ran outside a sandbox (the host's files), and nothing ran at all (pinned keys).
    assert [m for m in host_markers if m.exists()] == []
    ran = [p for p in (system.var_dir / "workspaces").rglob(f"ran-{mark}")]
    assert ran == []
