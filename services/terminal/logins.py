"""The login sessions each shell owner has been seen with, for the logout recheck: a user's
shells end when none of their logins is live any more (a logout everywhere), not when the one
that started them logs out while another, on another device, goes on. Each is asked about with
the freshest token seen of it, expired or not (users' CheckSession takes it lapsed)."""

from __future__ import annotations

from collections.abc import Callable

from services.runtime.context import Identity

# Logins remembered per owner at most (the freshest tokens are kept): a user's devices and tabs.
MAX_PER_OWNER = 16


class Logins:
    """Per owner, the freshest token seen of each of their login sessions; only for owners
    with shells here (`has_shells`), so callers without one leave nothing behind."""

    def __init__(
        self, has_shells: Callable[[str], bool], *, max_per_owner: int = MAX_PER_OWNER
    ) -> None:
        self._has_shells = has_shells
        self._max = max_per_owner
        self._seen: dict[str, dict[str, Identity]] = {}

    def saw(self, identity: Identity) -> None:
        """`identity` (a caller's own token) reached the service."""
        if not self._has_shells(identity.user_id):
            return
        known = self._seen.setdefault(identity.user_id, {})
        held = known.get(identity.session_id)
        if held is None or identity.expires_at >= held.expires_at:
            known[identity.session_id] = identity
        if len(known) > self._max:
            stalest = min(known.values(), key=lambda login: login.expires_at)
            del known[stalest.session_id]

    def of(self, owner: str) -> list[Identity]:
        return list(self._seen.get(owner, {}).values())

    def drop(self, login: Identity) -> None:
        """This login is not asked about again: the users service says it is over (a fresher
        token of it, seen later, would bring it back)."""
        known = self._seen.get(login.user_id)
        if known is not None and known.get(login.session_id) is login:
            del known[login.session_id]

    def forget_owner(self, owner: str) -> None:
        """The owner's last shell here is gone."""
        self._seen.pop(owner, None)
