"""A lease among replicas (one holder, with a fencing term), as a cache grants it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    """A lease as `Cache.lead` granted it: its key, holder, term and duration."""

    key: str
    holder: str
    term: int
    ttl: float

    @property
    def value(self) -> str:
        return f"{self.holder}:{self.term}"
