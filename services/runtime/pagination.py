"""Page/limit rules shared by every list RPC (DESIGN.md: limit defaults to 20, at most 100)."""

from __future__ import annotations

from dataclasses import dataclass

from stockfolio.common.v1 import pagination_pb2

from services.runtime.errors import InvalidArgument

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class Page:
    number: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.limit

    def describe(self, total: int) -> pagination_pb2.Pagination:
        pages = (total + self.limit - 1) // self.limit
        return pagination_pb2.Pagination(
            page=self.number, limit=self.limit, total=total, total_pages=pages
        )


def page_of(page: int, limit: int) -> Page:
    """Validate a request's page and limit; 0 (unset in proto3) takes the default."""
    violations: list[tuple[str, str]] = []
    if page < 0:
        violations.append(("page", "must be 1 or more"))
    if limit < 0 or limit > MAX_LIMIT:
        violations.append(("limit", f"must be between 1 and {MAX_LIMIT}"))
    if violations:
        raise InvalidArgument("invalid pagination", fields=violations)
    return Page(number=page or 1, limit=limit or DEFAULT_LIMIT)
