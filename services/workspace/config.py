"""The workspace service's settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.runtime.config import ConfigError, Env, RuntimeConfig

MB = 1024 * 1024


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
    # Folders whose repositories may be remotes as file:// URLs; none by default.
    git_file_roots: tuple[Path, ...]
    # Seconds between two scans of a watched project.
    watch_interval: float


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
    env = Env(runtime.environ if environ is None else environ)
    root = env.optional("WORKSPACE_ROOT")
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
    )
