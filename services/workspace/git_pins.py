"""What every git call pins off (git.py): the programs a repository's own config could start,
named here once: hooks, fsmonitor, pager, editors, signature verifiers, credential helpers, ssh,
external diff, submodules, and the filter, diff and merge drivers its config defines."""

from __future__ import annotations

from services.runtime.errors import FailedPrecondition
from services.workspace.paths import CONTROL_CHARACTERS

# Pinned on every call, after the repository's own config (command-line config wins, except for
# the few keys git keeps the first value of: see `_transport_options`). "false" names a program
# that does nothing and fails: if git ever did start one of these, nothing would happen.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.editor=false",
    "sequence.editor=false",
    "core.askPass=",
    "core.sshCommand=ssh -o BatchMode=yes",
    "core.alternateRefsCommand=true",
    # A checkout or pull writes links as small text files: a pulled tree cannot plant a link
    # leading out of the project (or into .git) for a later write to follow (the class of
    # CVE-2024-32002 and CVE-2021-21300).
    "core.symlinks=false",
    "credential.helper=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "push.gpgSign=false",
    "log.showSignature=false",
    "gpg.program=false",
    "gpg.openpgp.program=false",
    "gpg.x509.program=false",
    "gpg.ssh.program=false",
    "gpg.ssh.defaultKeyCommand=false",
    "diff.external=",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.ssh.allow=always",
    "protocol.file.allow=always",
    "protocol.ext.allow=never",
    "http.followRedirects=false",
    "http.proxy=",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "push.recurseSubmodules=no",
    # A `gc --auto` (or maintenance) a commit starts runs within the call, not detached: the
    # call's sandbox ends every process it started when it returns (sandbox.py), and a gc
    # killed midway left its gc.pid.lock behind, which stops every later automatic gc.
    "gc.autoDetach=false",
    "maintenance.autoDetach=false",
)
# Repository config that names a driver whose programs must be switched off on every call.
DRIVER_KEYS = (
    r"^filter\..+\.(clean|smudge|process|required)$|^diff\..+\.(textconv|command)$"
    r"|^merge\..+\.driver$|^remote\..+\.vcs$"
)
# The other end of a file:// push or pull runs in the caller's sandbox, with the remote's own
# config: its hooks and fsmonitor, and the program receive-pack runs for the refs of the
# remote's alternates, pinned off the same way.
SAFE_PACK = (
    "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.alternateRefsCommand=true"
)


def neutral_drivers(names: str) -> tuple[str, ...]:
    """Config that switches off every driver a repository's config defines: filter, diff and
    merge drivers run programs. A remote with a `vcs` helper is refused outright."""
    overrides: list[str] = []
    for key in filter(None, names.split("\x00")):
        section, _, rest = key.partition(".")
        driver, _, variable = rest.rpartition(".")
        if section == "remote" and variable == "vcs":
            raise FailedPrecondition(
                f"the repository config gives remote {driver!r} a helper (vcs), which is not"
                " allowed",
                reason="GIT_UNSAFE_CONFIG",
            )
        if not driver or "=" in driver or CONTROL_CHARACTERS.search(driver):
            raise FailedPrecondition(
                f"the repository config names a {section} driver that cannot be switched off",
                reason="GIT_UNSAFE_CONFIG",
            )
        if section == "filter":
            overrides += [f"filter.{driver}.{part}=" for part in ("clean", "smudge", "process")]
            overrides.append(f"filter.{driver}.required=false")
        elif section == "diff":
            overrides += [f"diff.{driver}.textconv=false", f"diff.{driver}.command=false"]
        else:
            overrides.append(f"merge.{driver}.driver=false")
    return tuple(dict.fromkeys(overrides))
