"""Loads and saves the project index; hides SQLAlchemy from the rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.queries import fetch_page
from services.workspace.orm import projects


@dataclass(frozen=True)
class ProjectRecord:
    id: str
    user_id: str
    name: str
    template: str
    created_at: datetime
    updated_at: datetime


class NameTaken(Exception):
    """The user already has a project of that name."""


def _record(row: Any) -> ProjectRecord:
    return ProjectRecord(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        template=row.template,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class ProjectRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, project: ProjectRecord) -> None:
        try:
            async with self._session.begin_nested():
                await self._session.execute(
                    insert(projects).values(
                        id=project.id,
                        user_id=project.user_id,
                        name=project.name,
                        template=project.template,
                        created_at=project.created_at,
                        updated_at=project.updated_at,
                    )
                )
        except IntegrityError:
            raise NameTaken(project.name) from None

    async def find(self, user_id: str, key: str) -> ProjectRecord | None:
        """The user's project whose id or name is `key`; another user's is never found."""
        query = (
            select(projects)
            .where(projects.c.user_id == user_id)
            .where(or_(projects.c.id == key, projects.c.name == key))
            .order_by(projects.c.id != key)
            .limit(1)
        )
        row = (await self._session.execute(query)).first()
        return _record(row) if row else None

    async def by_id(self, user_id: str, project_id: str) -> ProjectRecord | None:
        """The user's project with this id, whatever its name now (never one named like it)."""
        query = (
            select(projects).where(projects.c.user_id == user_id).where(projects.c.id == project_id)
        )
        row = (await self._session.execute(query)).first()
        return _record(row) if row else None

    async def page(
        self, user_id: str, *, offset: int, limit: int
    ) -> tuple[list[ProjectRecord], int]:
        query = (
            select(projects)
            .where(projects.c.user_id == user_id)
            .order_by(projects.c.created_at, projects.c.id)
        )
        rows, total = await fetch_page(self._session, query, offset=offset, limit=limit)
        return [_record(r) for r in rows], total

    async def rename(self, project_id: str, name: str, when: datetime) -> None:
        try:
            async with self._session.begin_nested():
                await self._session.execute(
                    update(projects)
                    .where(projects.c.id == project_id)
                    .values(name=name, updated_at=when)
                )
        except IntegrityError:
            raise NameTaken(name) from None

    async def remove(self, project_id: str) -> None:
        await self._session.execute(delete(projects).where(projects.c.id == project_id))
