"""Builds the workspace service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.workspace.v1 import workspace_pb2, workspace_pb2_grpc

from services.runtime.account_deletions import DatabaseCursor, follow_account_deletions
from services.runtime.cache import create_cache
from services.runtime.channels import create_channel
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.idempotency import IdempotencyStore
from services.runtime.sandbox import Sandbox, warn_unsandboxed
from services.runtime.server import ServiceParts
from services.runtime.sessions import USERS_SERVICE, remote_sessions
from services.workspace.authors import ProfileAuthors
from services.workspace.config import load_workspace_config
from services.workspace.erasure import AccountErasure
from services.workspace.files import Files
from services.workspace.git import GitRunner
from services.workspace.locks import LOCK_FOLDER
from services.workspace.orm import idempotency_keys, purge_cursor
from services.workspace.project_writes import ProjectWrites
from services.workspace.projects import Projects
from services.workspace.quota import Quotas, Usage
from services.workspace.servicer import UseCases, WorkspaceServicer
from services.workspace.staging import Sweeper, staging_folder
from services.workspace.versioning import Versioning
from services.workspace.watch import Watchers

SERVICE = workspace_pb2.DESCRIPTOR.services_by_name["WorkspaceService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    settings = load_workspace_config(config)
    settings.root.mkdir(parents=True, exist_ok=True)
    db = Database(config.database_url)
    resources.push_async_callback(db.close)
    sandbox = Sandbox.create(settings.sandbox)
    resources.callback(sandbox.close)
    if not sandbox.enabled:
        warn_unsandboxed("git for every user")
    git = GitRunner(
        timeout=settings.git_timeout,
        allowed_file_roots=settings.git_file_roots,
        sandbox=sandbox,
        workspace_root=settings.root,
        allowed_hosts=settings.git_allowed_hosts,
    )
    resources.callback(git.close)
    quotas = Quotas(
        db,
        Usage(settings.quota_bytes, settings.quota_files),
        interval=settings.quota_scan_interval,
        lease=settings.quota_lease,
    )
    quotas.start()
    resources.push_async_callback(quotas.close)
    staging = staging_folder(settings.root)
    sweeper = Sweeper(staging)
    sweeper.start()
    resources.push_async_callback(sweeper.close)
    users = create_channel(config.addresses["users"], [USERS_SERVICE], deadline=config.rpc_deadline)
    resources.push_async_callback(users.close)
    watchers = Watchers(settings.watch_interval)
    resources.push_async_callback(watchers.close)
    authors = ProfileAuthors(users)
    files = Files(
        max_text_bytes=settings.max_text_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        quotas=quotas,
        lock_folder=settings.root / LOCK_FOLDER,
        staging=staging,
    )
    # A project's rename or delete and the writes inside it hold its place on one set of
    # locks (services/workspace/locks.py `project_place`).
    projects = Projects(db, settings.root, git, quotas=quotas, places=files.locks)
    writes = ProjectWrites(projects, files, authors)
    cases = UseCases(
        projects=projects,
        files=files,
        writes=writes,
        git=git,
        authors=authors,
        watchers=watchers,
        idempotency=IdempotencyStore(db, idempotency_keys),
        quotas=quotas,
        versioning=Versioning(git, authors, quotas, writes),
    )
    # A deleted account's projects, their folders and its quota state are erased here (one
    # replica at a time where the cache is shared).
    cache = create_cache(config.redis_url, prefix="sf:workspace:")
    resources.push_async_callback(cache.close)
    await follow_account_deletions(
        config,
        resources,
        AccountErasure(db, settings.root).erase,
        DatabaseCursor(db, purge_cursor),
        interval=settings.purge_interval,
        cache=cache,
    )
    servicer = WorkspaceServicer(cases)

    def register(server: grpc.aio.Server) -> None:
        workspace_pb2_grpc.add_WorkspaceServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE],
        register=register,
        sessions=await remote_sessions(config, resources),
        checks={"database": db.ping},
        # Watches never end by themselves: ending them lets the drain finish.
        draining=[watchers.close],
    )
