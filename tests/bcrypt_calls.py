"""Counting bcrypt's own work in a users server running in the test's process: what an attacker
costs it, and that a refused call costs nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import bcrypt
import pytest


class BcryptCalls:
    """bcrypt's own hashpw and checkpw, counted as the users service (in this process, on its
    hashing threads) calls them; they still run, and nothing of ours is replaced."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def counted(self, function: Callable[[bytes, bytes], Any]) -> Callable[[bytes, bytes], Any]:
        def call(password: bytes, salt_or_hash: bytes) -> Any:
            with self._lock:
                self._count += 1
            return function(password, salt_or_hash)

        return call

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


def count_bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> BcryptCalls:
    """Count bcrypt's calls until the test ends (the `bcrypt_calls` fixture)."""
    calls = BcryptCalls()
    monkeypatch.setattr(bcrypt, "hashpw", calls.counted(bcrypt.hashpw))
    monkeypatch.setattr(bcrypt, "checkpw", calls.counted(bcrypt.checkpw))
    return calls
