"""What a caller may spend on the users service's own gRPC port, which answers whoever reaches
it: the facade's limits (facade/limits.py) hold only callers that come through the facade.

A registration and a successful login each cost a bcrypt hash (~250 ms of CPU at cost 12) and
rows; a password change, two (the current password's check, the new one's hash) and the end of
the account's other sessions; a refresh, rows; a session check, a read. A change of one's own
email and a deletion of one's own account check the current password as a login does, and are
counted as logins. Each is counted with the runtime's limiter in the users cache (one budget over
every replica on Redis, one per replica otherwise), and one past its budget is refused before
that cost: ResourceExhausted (RATE_LIMITED), with the rest of the window as its retry delay.
Failed logins, and wrong current passwords, are the login guard's (guard.py), not counted here.

Addresses are the client's as the interceptor resolved it (the facade's `x-forwarded-for`
from a trusted proxy, else the peer), by block: an IPv6 host holds a whole /64.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.runtime.addresses import address_block
from services.runtime.errors import ResourceExhausted
from services.runtime.ratelimit import Decision, Rate, RateLimiter


@dataclass(frozen=True)
class Allowances:
    """Per window; a limit of 0 turns one off."""

    # Registrations from one address, whatever they end in (each hashes a password first).
    registrations_per_address: Rate
    # Successful logins to one account, and from one address (over any accounts); with them,
    # the right current passwords of changes of one's own email and deletions of one's account.
    logins_per_account: Rate
    logins_per_address: Rate
    # Refreshes of one account's tokens (each spends a refresh token and records the next).
    refreshes_per_account: Rate
    # Password changes of one account that give its current password (an admin's reset of
    # another account is not counted).
    password_changes_per_account: Rate
    # CheckSession answers about one account's sessions.
    session_checks_per_account: Rate


class Budgets:
    def __init__(self, limiter: RateLimiter, allowances: Allowances) -> None:
        self._limiter = limiter
        self._allowances = allowances

    async def register(self, address: str) -> None:
        """Count a registration from `address`, or refuse it."""
        rate = self._allowances.registrations_per_address
        decision = await self._limiter.hit(f"registrations:{address_block(address)}", rate)
        _check(decision, rate, "registrations from this address")

    async def check_login(self, user_id: str | None, address: str, *, action: str = "") -> None:
        """Refuse a login, before its password is checked, when its account (None: no account
        has the email) or its address has spent its budget of successful logins. `action`
        names what is refused when it is no login but counts as one (a change of one's own
        email, a deletion of one's own account): the refusal says so.

        Only successes spend them, and a success needs the password: failures from anywhere
        can never keep an account's owner out (as with the guard), nor can another's failures
        spend an address's budget."""
        allowances = self._allowances
        await self._refuse_if_spent(
            f"logins:address:{address_block(address)}",
            allowances.logins_per_address,
            "logins from this address",
            action,
        )
        if user_id is not None:
            await self._refuse_if_spent(
                f"logins:account:{user_id}",
                allowances.logins_per_account,
                "logins to this account",
                action,
            )

    async def logged_in(self, user_id: str, address: str) -> None:
        """Count a login whose password matched."""
        allowances = self._allowances
        await self._limiter.hit(
            f"logins:address:{address_block(address)}", allowances.logins_per_address
        )
        await self._limiter.hit(f"logins:account:{user_id}", allowances.logins_per_account)

    async def check_password_change(self, user_id: str) -> None:
        """Refuse a change of `user_id`'s password, before its current password is checked,
        once changes that gave the right one have spent the account's budget.

        Only those spend it, as with logins: wrong current passwords (the guard's) never keep
        the owner from changing theirs. Not an admin's reset of another account: someone
        holding the password could otherwise spend the budget and keep the admin from taking
        the account back."""
        await self._refuse_if_spent(
            f"password-changes:{user_id}",
            self._allowances.password_changes_per_account,
            "password changes for this account",
        )

    async def current_password_matched(self, user_id: str) -> None:
        """Count a password change whose current password matched (its new hash is to come)."""
        await self._limiter.hit(
            f"password-changes:{user_id}", self._allowances.password_changes_per_account
        )

    async def refresh(self, user_id: str) -> None:
        """Count a refresh of one of `user_id`'s sessions, or refuse it. The account's, not the
        session's: each login would buy a fresh one."""
        rate = self._allowances.refreshes_per_account
        decision = await self._limiter.hit(f"refreshes:{user_id}", rate)
        _check(decision, rate, "token refreshes for this account")

    async def check_session(self, user_id: str) -> None:
        """Count a CheckSession about one of `user_id`'s sessions, or refuse it (why the
        account's: Accounts.session_state)."""
        rate = self._allowances.session_checks_per_account
        decision = await self._limiter.hit(f"session-checks:{user_id}", rate)
        _check(decision, rate, "session checks for this account")

    async def _refuse_if_spent(self, key: str, rate: Rate, what: str, action: str = "") -> None:
        refusal = await self._limiter.refusal(key, rate)
        if refusal is not None:
            _check(refusal, rate, what, action)


def _check(decision: Decision, rate: Rate, what: str, action: str = "") -> None:
    """Refuse past the budget: "too many <what>", or, for an `action` that counts as one of
    them, "<action> refused: too many <what> (<action> counts as one)"."""
    if not decision.allowed:
        said = f"too many {what}"
        if action:
            said = f"{action} refused: {said} (an {action} counts as one)"
        raise ResourceExhausted(
            f"{said}: at most {rate.limit} per {rate.window:g} s;"
            f" retry in {max(1, round(decision.reset_after))} s",
            retry_after=decision.reset_after,
        )
