"""Remote addresses, pinned connections, stripped error messages, and git in the sandbox."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stockfolio.workspace.v1 import workspace_pb2

from services.runtime.errors import FailedPrecondition, InvalidArgument
from services.runtime.sandbox import Sandbox, SandboxConfig
from services.runtime.validation import violations
from services.workspace.git import GitRunner
from services.workspace.remotes import (
    Checked,
    Destination,
    check_destination,
    validate_remote_url,
)

AUTHOR = {"author_name": "Alice Example", "author_email": "alice@example.com"}
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")


@pytest.fixture
async def git(tmp_path: Path) -> AsyncIterator[GitRunner]:
    home = tmp_path / "home"
    home.mkdir()
    runner = GitRunner(
        timeout=20,
        allowed_file_roots=[tmp_path / "remotes"],
        home=home,
        workspace_root=tmp_path / "root",
    )
    yield runner
    runner.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/repo.git",
        "https://127.0.0.1/repo.git",
        "https://10.0.0.1/repo.git",
        "https://192.168.1.20/repo.git",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/repo.git",
        "https://[fd00::1]/repo.git",
        "https://[::ffff:127.0.0.1]/repo.git",
        "https://0.0.0.0/repo.git",
        "https://224.0.0.1/repo.git",
        "https://100.64.0.1/repo.git",
        "ssh://git@127.0.0.1/repo.git",
        "git@localhost:team/repo.git",
    ],
)
async def test_remotes_on_loopback_private_link_local_or_multicast_addresses_are_refused(
    url: str,
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await check_destination(validate_remote_url(url, [], owner="ada"), frozenset())
    assert (caught.value.reason, caught.value.fields[0][0]) == ("REMOTE_NOT_ALLOWED", "url")
    assert "not allowed for remotes" in caught.value.message


async def test_an_allowlisted_host_may_resolve_to_a_private_address() -> None:
    checked = await check_destination(
        validate_remote_url("https://LocalHost:8443/repo.git", [], owner="ada"),
        frozenset({"localhost"}),
    )
    assert (checked.destination.host, checked.destination.port, checked.address) == (
        "localhost",
        8443,
        None,
    )


async def test_a_public_address_is_kept_as_the_address_to_connect_to() -> None:
    checked = await check_destination(
        validate_remote_url("https://1.1.1.1/r.git", [], owner="ada"), ()
    )
    assert checked.address == "1.1.1.1"


async def test_adding_a_remote_on_a_loopback_host_is_refused_and_adds_nothing(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = tmp_path / "root" / "ada" / "p"
    await git.init(repo)
    for url in ("https://localhost/x.git", "https://127.0.0.1/x.git", "https://[::1]/x.git"):
        with pytest.raises(InvalidArgument, match="not allowed"):
            await git.add_remote(repo, "origin", url)
    assert await git.remotes(repo) == []


async def test_a_remote_rewritten_by_insteadof_is_checked_as_rewritten(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = tmp_path / "root" / "ada" / "p"
    await git.init(repo)
    git.allowed_hosts = frozenset({"example.com"})  # no DNS needed for the stored URL
    await git.add_remote(repo, "origin", "https://example.com/x.git")
    await git.run(repo, "config", "url.https://169.254.169.254/.insteadOf", "https://example.com/")
    with pytest.raises(InvalidArgument, match=r"169\.254\.169\.254"):
        await git.pull(repo, branch="main")
    await git.run(repo, "config", "url.ext::id.pushInsteadOf", "https://example.com/")
    with pytest.raises(InvalidArgument, match="transport helpers"):
        await git.push(repo, branch="main")


async def test_a_host_with_any_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name resolving to a public and a private address (a rebinding setup) is refused."""
    loop = asyncio.get_running_loop()

    async def resolve(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    with pytest.raises(InvalidArgument, match=r"10\.1\.2\.3"):
        await check_destination(
            validate_remote_url("https://rebind.example/r.git", [], owner="ada"), ()
        )


async def test_a_push_to_a_host_name_is_pinned_to_the_address_that_was_checked(
    git: GitRunner,
) -> None:
    url = "https://example.com/team/r.git"
    checked = Checked(Destination(url, "https", "example.com", 443), "93.184.216.34")
    network = git._pins("origin", checked, push=True)
    resolve = [c for c in network.config if ".curloptResolve=" in c]
    assert resolve == [
        f"http.{url}.curloptResolve=",
        f"http.{url}.curloptResolve=example.com:443:93.184.216.34",
    ]
    assert f"http.{url}.followRedirects=false" in network.config
    assert f"http.{url}.proxy=" in network.config
    assert network.options == ("--receive-pack=git receive-pack",)

    ssh = Checked(Destination("git@example.com:r.git", "ssh", "example.com", 22), "93.184.216.34")
    pulled = git._pins("origin", ssh, push=False)
    assert pulled.env["GIT_SSH_COMMAND"] == (
        "ssh -o BatchMode=yes -o HostName=93.184.216.34 -o HostKeyAlias=example.com"
    )
    assert pulled.options == ("--upload-pack=git upload-pack",)


async def test_a_file_remote_is_reached_without_network_and_written_to_by_a_push_only(
    git: GitRunner, tmp_path: Path
) -> None:
    """git on the host's network reaches every service on loopback, which a local remote never
    needs; and a pull that could write the remotes folder would check a tree out there when
    the repository's `core.worktree` names it (tests/integration/test_attacks_workspace.py).
    Its sandbox sees the owner's folder of the roots only, not the roots: another user's
    repositories are not there to follow a `commondir` or a link into."""
    ada = tmp_path / "remotes" / "ada"
    ada.mkdir(parents=True)
    url = (ada / "r.git").as_uri()
    local = Checked(validate_remote_url(url, [tmp_path / "remotes"], owner="ada"), None)
    pushed, pulled = (git._pins("origin", local, push=push) for push in (True, False))
    assert (pushed.network, pulled.network) == (False, False)
    assert [(b.source, b.target, b.writable) for b in pushed.binds] == [(ada, ada, True)]
    assert [(b.source, b.target, b.writable) for b in pulled.binds] == [(ada, ada, False)]
    remote = Checked(Destination("https://example.com/r.git", "https", "example.com", 443), None)
    over_https = git._pins("origin", remote, push=False)
    assert (over_https.network, over_https.binds) == (True, ())


async def test_a_failing_git_commands_message_names_no_host_path(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = tmp_path / "root" / "ada" / "p"
    await git.init(repo)
    remotes = tmp_path / "remotes" / "ada"
    remotes.mkdir(parents=True)
    await git.add_remote(repo, "origin", (remotes / "missing.git").as_uri())
    with pytest.raises(FailedPrecondition) as caught:
        await git.pull(repo, branch="main")
    message = caught.value.message
    assert str(tmp_path) not in message
    assert "<remotes>/ada/missing.git" in message
    with pytest.raises(FailedPrecondition) as caught:
        await git.run(repo, "show", "HEAD:nothing.txt")
    assert str(tmp_path) not in caught.value.message


@needs_bwrap
async def test_git_runs_in_the_owners_sandbox_and_writes_only_its_repository(
    tmp_path: Path,
) -> None:
    """A program git starts (here an alias, as a hostile config's program would) runs as the
    sandbox's user, sees its own processes only and writes nothing outside the repository."""
    sandbox = Sandbox.create(SandboxConfig(mode="bwrap"))
    home = tmp_path / "home"
    home.mkdir()
    runner = GitRunner(timeout=20, home=home, sandbox=sandbox, workspace_root=tmp_path / "root")
    try:
        repo = tmp_path / "root" / "ada" / "p"
        await runner.init(repo)
        marker = tmp_path / "marker"
        script = (
            f"!id -u > {repo}/uid; ls /proc | grep -c '^[0-9]' > {repo}/pids;"
            f" touch {marker}; touch {home}/written; true"
        )
        await runner.run(repo, "probe", config=[f"alias.probe={script}"], check=False)
        assert (repo / "uid").read_text().strip() == "1000"
        assert int((repo / "pids").read_text()) < 10
        assert not marker.exists()
        assert not (home / "written").exists()
    finally:
        runner.close()
        sandbox.close()


@pytest.mark.parametrize(
    "url",
    [
        "ssh://a;touch${IFS}pwned;.evil.example/r.git",
        "ssh://git@$(id).example/r.git",
        "https://a`id`.example/r.git",
        "ssh://host'quote.example/r.git",
    ],
)
def test_a_host_name_holding_a_shells_characters_is_refused(url: str) -> None:
    # The host reaches GIT_SSH_COMMAND, which git runs through `sh -c`: a name resolving to a
    # public address would have run commands in git's sandbox, which has the network.
    with pytest.raises(InvalidArgument, match="characters no host name holds") as refused:
        validate_remote_url(url, [], owner="ada")
    assert refused.value.fields[0][0] == "url"


def test_the_ssh_command_quotes_what_it_is_given() -> None:
    runner = GitRunner(timeout=5, allowed_file_roots=[])
    try:
        odd = Checked(Destination("ssh://x/r", "ssh", "a;touch pwned", 22), "93.184.216.34")
        command = runner._pins("origin", odd, push=False).env["GIT_SSH_COMMAND"]
    finally:
        runner.close()
    assert command == (
        "ssh -o BatchMode=yes -o HostName=93.184.216.34 -o HostKeyAlias='a;touch pwned'"
    )
    assert (
        validate_remote_url("ssh://git@[2606:4700::1111]/r.git", [], owner="ada").host
        == "2606:4700::1111"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://git_server.example/team/repo.git",
        "ssh://git@git_server.example/team/repo.git",
        "https://[2001:4860:4860::8888]/team/repo.git",
        "ssh://git@example.com:10022/team/repo.git",
    ],
)
def test_a_remote_the_service_allows_passes_the_request_rule_too(url: str) -> None:
    # AddRemote's proto rule, which every request passes first, refused a '_' in an https or
    # ssh host, an IPv6 address and a five-digit port, with a reason that named none of them:
    # adding a remote and pushing to one followed different rules.
    assert validate_remote_url(url, [], owner="ada").host is not None
    request = workspace_pb2.AddRemoteRequest(project="p", name="origin", url=url)
    assert violations(request) == []
    # and the rule still refuses what it is there for
    bad = workspace_pb2.AddRemoteRequest(
        project="p", name="origin", url=url.replace("//", "//a b.")
    )
    assert [v[0] for v in violations(bad)] == ["url"]


@pytest.mark.parametrize(
    "url", ["ssh://[3B3aBf:9073bBc4aDEb]:54/r", "https://[::1/r.git", "https://[zz]/r.git"]
)
def test_a_bracketed_host_that_is_no_address_is_a_bad_url(url: str) -> None:
    # The request rule lets a bracketed host through to the service, whose URL parser raised
    # on one that is no IPv6 address: a 500 (found by the fuzzer).
    with pytest.raises(InvalidArgument, match="not a valid address") as refused:
        validate_remote_url(url, [], owner="ada")
    assert refused.value.fields[0][0] == "url"


@pytest.fixture
def file_roots(tmp_path: Path) -> Path:
    """A root of file:// remotes: Ada's folder and Bob's, each with a bare repository, and the
    shared folder with one."""
    roots = tmp_path / "remotes"
    for folder in ("ada", "bob", "shared"):
        (roots / folder / "r.git").mkdir(parents=True)
    return roots


@pytest.mark.parametrize(
    ("path", "push"),
    [("ada/r.git", True), ("ada/r.git", False), ("ada/team/r.git", True), ("shared/r.git", False)],
)
def test_a_file_remote_is_ada_s_own_or_shared_to_pull_from(
    file_roots: Path, path: str, push: bool
) -> None:
    url = (file_roots / path).as_uri()
    found = validate_remote_url(url, [file_roots], owner="ada", push=push)
    area = path.split("/")[0]
    assert (found.url, found.area, found.shared) == (url, file_roots / area, area == "shared")


@pytest.mark.parametrize(
    ("path", "push", "said"),
    [
        ("bob/r.git", False, "another user's"),
        ("bob/r.git", True, "another user's"),
        ("shared/r.git", True, "read-only"),
        ("ada/../bob/r.git", True, "'..'"),
        ("ada/%2e%2e/bob/r.git", True, "'..'"),
        ("ada/./r.git", True, "'.'"),
        ("ada", True, "must name a repository inside"),
        ("", True, "must lie in"),
    ],
)
def test_a_file_remote_outside_ada_s_folder_is_refused_naming_hers(
    file_roots: Path, path: str, push: bool, said: str
) -> None:
    url = f"{file_roots.as_uri()}/{path}"
    with pytest.raises(InvalidArgument) as refused:
        validate_remote_url(url, [file_roots], owner="ada", push=push)
    assert (refused.value.reason, refused.value.fields[0][0]) == ("REMOTE_NOT_ALLOWED", "url")
    assert said in refused.value.message
    assert f"{(file_roots / 'ada').as_uri()}/" in refused.value.message


@pytest.mark.parametrize(
    ("planted", "url_path"),
    [
        ("link", "ada/mine.git"),  # ada/mine.git -> ../bob/r.git
        ("link", "ada/mine"),  # git tries mine.git too when mine is missing
        ("folder link", "ada/team/r.git"),  # ada/team -> ../bob
        ("gitdir file", "ada/mine.git"),  # a file saying "gitdir: <bob's>"
        ("dot git file", "ada/mine.git"),  # a folder whose .git is such a file
    ],
)
def test_a_link_or_a_gitdir_file_in_ada_s_folder_is_not_followed(
    file_roots: Path, planted: str, url_path: str
) -> None:
    ada, bobs = file_roots / "ada", file_roots / "bob" / "r.git"
    if planted == "link":
        (ada / "mine.git").symlink_to("../bob/r.git")
    elif planted == "folder link":
        (ada / "team").symlink_to("../bob")
    elif planted == "gitdir file":
        (ada / "mine.git").write_text(f"gitdir: {bobs}\n")
    else:
        (ada / "mine.git").mkdir()
        (ada / "mine.git" / ".git").write_text(f"gitdir: {bobs}\n")
    with pytest.raises(InvalidArgument) as refused:
        validate_remote_url(f"{file_roots.as_uri()}/{url_path}", [file_roots], owner="ada")
    assert refused.value.reason == "REMOTE_NOT_ALLOWED"
    assert "link" in refused.value.message or "gitdir" in refused.value.message
