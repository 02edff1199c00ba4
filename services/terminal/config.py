"""The terminal service's settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.runtime.account_deletions import DEFAULT_INTERVAL as DEFAULT_PURGE_INTERVAL
from services.runtime.account_deletions import purge_interval
from services.runtime.config import ConfigError, Env, RuntimeConfig
from services.runtime.sandbox import SandboxConfig, load_sandbox_config

KB = 1024
MB = 1024 * KB


@dataclass(frozen=True)
class TerminalConfig:
    runtime: RuntimeConfig
    # Every user's files live under <root>/<user id> (the workspace service's layout): no shell
    # starts outside it.
    root: Path
    shells: tuple[str, ...]
    max_sessions: int
    max_sessions_per_user: int
    # Seconds without input or output after which a session is closed.
    idle_timeout: float
    scrollback_bytes: int
    max_write_bytes: int
    # Output one session may produce per second before its PTY is paused (0: no limit).
    output_rate: int
    # Output one attachment may have queued before it is dropped (with a note).
    watcher_buffer_bytes: int
    # Seconds between SIGHUP and SIGKILL when a session closes.
    close_grace: float
    # Seconds a call to the workspace service (ResolveProject) may take.
    workspace_deadline: float
    # Where shells run (bubblewrap unless TERMINAL_SANDBOX=off, development only) and limits.
    sandbox: SandboxConfig
    # Seconds between checks that each session's owner is still logged in somewhere.
    session_recheck: float
    # Seconds between two reads of the users service's account deletions: a deleted account's
    # shells end within about this long (Terminals.erase_owner).
    purge_interval: float = DEFAULT_PURGE_INTERVAL


def _shells(raw: str) -> tuple[str, ...]:
    shells = tuple(part.strip() for part in raw.split(",") if part.strip())
    for shell in shells:
        if not os.path.isabs(shell):
            raise ConfigError(f"TERMINAL_SHELLS must list absolute paths, got {shell!r}")
    present = tuple(shell for shell in shells if os.access(shell, os.X_OK))
    if not present:
        raise ConfigError(f"TERMINAL_SHELLS: none of {', '.join(shells)} is an executable")
    return present


def load_terminal_config(
    runtime: RuntimeConfig, environ: Mapping[str, str] | None = None
) -> TerminalConfig:
    env = Env(runtime.environ if environ is None else environ)
    root = env.optional("WORKSPACE_ROOT")
    max_sessions = env.int("TERMINAL_MAX_SESSIONS", 1000, minimum=1, maximum=100_000)
    return TerminalConfig(
        runtime=runtime,
        root=Path(root).resolve() if root else runtime.var_dir / "workspaces",
        shells=_shells(env.str("TERMINAL_SHELLS", "/bin/bash,/bin/sh")),
        max_sessions=max_sessions,
        max_sessions_per_user=env.int(
            "TERMINAL_MAX_SESSIONS_PER_USER", 10, minimum=1, maximum=max_sessions
        ),
        idle_timeout=env.float("TERMINAL_IDLE_TIMEOUT", 3600.0, minimum=0.0),
        scrollback_bytes=env.int(
            "TERMINAL_SCROLLBACK_BYTES", 256 * KB, minimum=KB, maximum=64 * MB
        ),
        max_write_bytes=env.int("TERMINAL_MAX_WRITE_BYTES", 64 * KB, minimum=16, maximum=MB),
        output_rate=env.int("TERMINAL_OUTPUT_RATE", 4 * MB, minimum=0, maximum=1024 * MB),
        watcher_buffer_bytes=env.int(
            "TERMINAL_WATCHER_BUFFER_BYTES", MB, minimum=64 * KB, maximum=256 * MB
        ),
        close_grace=env.float("TERMINAL_CLOSE_GRACE", 2.0, minimum=0.0),
        workspace_deadline=env.float("TERMINAL_WORKSPACE_DEADLINE", 5.0, minimum=0.1),
        sandbox=load_sandbox_config(runtime.environ, production=runtime.production),
        session_recheck=env.float("TERMINAL_SESSION_RECHECK", 10.0, minimum=0.05),
        purge_interval=purge_interval(env),
    )
