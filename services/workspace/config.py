"""The workspace service's settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.runtime.account_deletions import DEFAULT_INTERVAL as DEFAULT_PURGE_INTERVAL
from services.runtime.account_deletions import purge_interval
from services.runtime.config import ConfigError, Env, RuntimeConfig
from services.runtime.sandbox import SandboxConfig, load_sandbox_config

MB = 1024 * 1024
GB = 1024 * MB


@dataclass(frozen=True)
class WorkspaceConfig:
    runtime: RuntimeConfig
    # Every user's files live under <root>/<user id>; each project is a folder there.
    root: Path
    # Largest file an upload may write.
    max_upload_bytes: int
    # Largest file read or written as JSON (GetFile, CreateFile, UpdateFile); larger ones are
    # downloaded and uploaded instead.
    max_text_bytes: int
    # Seconds a git command may run (network operations included) before it is killed.
    git_timeout: float
    # Folders whose repositories may be remotes as file:// URLs; none by default. A user uses
    # <root>/<user id>/ only, and <root>/shared/ to pull from (services/workspace/remotes.py).
    git_file_roots: tuple[Path, ...]
    # Seconds between two scans of a watched project.
    watch_interval: float
    # Where git runs for a user: their bubblewrap sandbox ("bwrap"), or, in development only,
    # as the service ("off"). WORKSPACE_SANDBOX, else TERMINAL_SANDBOX; SANDBOX_* limits.
    sandbox: SandboxConfig
    # Remote hosts allowed even when they resolve to a private or loopback address.
    git_allowed_hosts: frozenset[str]
    # Per user, over all their projects (.git included): bytes and files.
    quota_bytes: int
    quota_files: int
    # Seconds between two usage scans of a user's folder (the terminal writes files too).
    quota_scan_interval: float
    # Seconds a reservation (room a write under way holds) outlives its replica if that dies:
    # a live replica renews its reservations' leases every third of this.
    quota_lease: float
    # Seconds between two reads of the users service's account deletions (erasure.py).
    purge_interval: float = DEFAULT_PURGE_INTERVAL


def _paths(name: str, raw: str) -> tuple[Path, ...]:
    found = []
    for part in raw.split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part.strip())
        if not path.is_absolute():
            raise ConfigError(f"{name} must list absolute paths, got {part!r}")
        found.append(path)
    return tuple(found)


def load_workspace_config(
    runtime: RuntimeConfig, environ: Mapping[str, str] | None = None
) -> WorkspaceConfig:
    source = runtime.environ if environ is None else environ
    env = Env(source)
    root = env.optional("WORKSPACE_ROOT")
    mode = source.get("WORKSPACE_SANDBOX") or source.get("TERMINAL_SANDBOX") or "bwrap"
    return WorkspaceConfig(
        runtime=runtime,
        root=Path(root).resolve() if root else runtime.var_dir / "workspaces",
        max_upload_bytes=env.int(
            "WORKSPACE_MAX_UPLOAD_BYTES", 20 * MB, minimum=1024, maximum=1024 * MB
        ),
        max_text_bytes=env.int("WORKSPACE_MAX_TEXT_BYTES", 5 * MB, minimum=1024, maximum=8 * MB),
        git_timeout=env.float("WORKSPACE_GIT_TIMEOUT", 60.0, minimum=1.0),
        git_file_roots=_paths("WORKSPACE_GIT_FILE_ROOTS", env.str("WORKSPACE_GIT_FILE_ROOTS", "")),
        watch_interval=env.float("WORKSPACE_WATCH_INTERVAL", 1.0, minimum=0.01),
        sandbox=load_sandbox_config(
            {**source, "WORKSPACE_SANDBOX": mode},
            production=runtime.production,
            variable="WORKSPACE_SANDBOX",
        ),
        git_allowed_hosts=frozenset(
            host.strip().lower()
            for host in env.str("WORKSPACE_GIT_ALLOWED_HOSTS", "").split(",")
            if host.strip()
        ),
        quota_bytes=env.int("WORKSPACE_QUOTA_BYTES", GB, minimum=MB, maximum=2**50),
        quota_files=env.int("WORKSPACE_QUOTA_FILES", 100_000, minimum=10, maximum=10**9),
        quota_scan_interval=env.float("WORKSPACE_QUOTA_SCAN_INTERVAL", 60.0, minimum=0.05),
        quota_lease=env.float("WORKSPACE_QUOTA_LEASE", 60.0, minimum=1.0),
        purge_interval=purge_interval(env),
    )
