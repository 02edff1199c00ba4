"""REDIS_URL's own parameter: a namespace for every key and channel name."""

from __future__ import annotations

import re
import urllib.parse

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def split_namespace(url: str) -> tuple[str, str]:
    """A Redis URL's `namespace` query parameter apart from the rest: it starts every key and
    channel name, so deployments (or parallel test workers) can share one Redis. A database
    number separates keys but not pub/sub channels, which are server-wide."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "namespace"]
    if not names:
        return url, ""
    namespace = names[-1]
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError("REDIS_URL's namespace is 1 to 64 letters, digits, '_', '.' or '-'")
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "namespace"])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), namespace
