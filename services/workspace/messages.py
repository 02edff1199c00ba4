"""Domain values -> protobuf messages."""

from __future__ import annotations

from stockfolio.workspace.v1 import workspace_pb2

from services.runtime.timestamps import timestamp
from services.workspace.files import Entry, EntryKind, FileContent, Written
from services.workspace.git_values import Branch, Commit, Remote, Status
from services.workspace.repository import ProjectRecord
from services.workspace.watch import Change, Event

ENTRY_TYPES = {
    EntryKind.FILE: workspace_pb2.ENTRY_TYPE_FILE,
    EntryKind.DIRECTORY: workspace_pb2.ENTRY_TYPE_DIRECTORY,
    EntryKind.SYMLINK: workspace_pb2.ENTRY_TYPE_SYMLINK,
}
CHANGE_KINDS = {
    Change.CREATED: workspace_pb2.CHANGE_KIND_CREATED,
    Change.MODIFIED: workspace_pb2.CHANGE_KIND_MODIFIED,
    Change.DELETED: workspace_pb2.CHANGE_KIND_DELETED,
}


def project_message(project: ProjectRecord) -> workspace_pb2.Project:
    return workspace_pb2.Project(
        id=project.id,
        name=project.name,
        template=project.template,
        created_at=timestamp(project.created_at),
        updated_at=timestamp(project.updated_at),
    )


def entry_message(entry: Entry) -> workspace_pb2.Entry:
    return workspace_pb2.Entry(
        name=entry.name,
        path=entry.path,
        type=ENTRY_TYPES[entry.kind],
        size=entry.size,
        modified_at=timestamp(entry.modified_at),
    )


def content_message(project: str, found: FileContent) -> workspace_pb2.File:
    return workspace_pb2.File(
        path=found.path,
        content=found.content,
        encoding=found.encoding,
        sha=found.sha,
        size=found.size,
        modified_at=timestamp(found.modified_at),
        project=project,
    )


def written_message(project: str, written: Written) -> workspace_pb2.File:
    return workspace_pb2.File(
        path=written.path,
        sha=written.sha,
        size=written.size,
        modified_at=timestamp(written.modified_at),
        project=project,
    )


def event_message(event: Event) -> workspace_pb2.WatchFilesResponse:
    return workspace_pb2.WatchFilesResponse(
        kind=CHANGE_KINDS[event.change],
        path=event.path,
        type=ENTRY_TYPES[event.kind],
        time=timestamp(event.time),
    )


def status_message(status: Status) -> workspace_pb2.GitStatusResponse:
    return workspace_pb2.GitStatusResponse(
        branch=status.branch or "",
        ahead=status.ahead,
        behind=status.behind,
        staged=[c.path for c in status.staged],
        unstaged=[c.path for c in status.unstaged],
        untracked=status.untracked,
        upstream=status.upstream or "",
        conflicted=status.conflicted,
        commit=status.commit or "",
    )


def commit_message(commit: Commit) -> workspace_pb2.GitCommitInfo:
    return workspace_pb2.GitCommitInfo(
        sha=commit.sha,
        author_name=commit.author_name,
        author_email=commit.author_email,
        authored_at=timestamp(commit.authored_at),
        subject=commit.subject,
    )


def branch_message(branch: Branch) -> workspace_pb2.GitBranch:
    return workspace_pb2.GitBranch(name=branch.name, current=branch.current, commit=branch.commit)


def remote_message(remote: Remote) -> workspace_pb2.GitRemote:
    return workspace_pb2.GitRemote(name=remote.name, url=remote.url)
