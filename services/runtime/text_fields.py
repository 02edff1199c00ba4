"""A text field as the domains take it: without surrounding white space, of bounded length,
and, where it is required, not empty."""

from __future__ import annotations

from services.runtime.errors import InvalidArgument


def trimmed_text(field: str, raw: str, *, most: int, if_empty: str = "") -> str:
    """`raw` without surrounding white space. InvalidArgument on `field` when it is longer than
    `most` characters, or empty when `if_empty` (the violation to name) is given."""
    text = raw.strip()
    if if_empty and not text:
        raise InvalidArgument.field(field, if_empty)
    if len(text) > most:
        raise InvalidArgument.field(field, f"must be at most {most} characters")
    return text
