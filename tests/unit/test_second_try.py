"""unary_with_second_try (services/runtime/channels.py): a safe call that failed UNAVAILABLE is
sent once more, within what is left of its deadline; anything else fails as it did."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from services.runtime.channels import SECOND_TRY_PAUSE, unary_with_second_try


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


class Calls:
    """A multicallable that fails with each of `failures` in turn, then answers "reply"."""

    def __init__(self, *failures: grpc.StatusCode) -> None:
        self.failures = list(failures)
        self.timeouts: list[float | None] = []

    async def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a multicallable's own signature
        metadata: Any = None,
    ) -> Any:
        self.timeouts.append(timeout)
        if self.failures:
            raise rpc_error(self.failures.pop(0))
        return "reply"


async def test_a_safe_call_that_failed_unavailable_is_sent_once_more_within_its_deadline() -> None:
    call = Calls(grpc.StatusCode.UNAVAILABLE)
    reply = await unary_with_second_try(call, "req", deadline=10, metadata=(), retry_safe=True)
    assert reply == "reply"
    first, second = call.timeouts
    assert first == 10
    assert second is not None and second <= 10 - SECOND_TRY_PAUSE


async def test_only_once_more() -> None:
    call = Calls(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError):
        await unary_with_second_try(call, "req", deadline=10, metadata=(), retry_safe=True)
    assert len(call.timeouts) == 2


@pytest.mark.parametrize(
    ("code", "safe", "deadline"),
    [
        pytest.param(grpc.StatusCode.UNAVAILABLE, False, 10, id="a write is never repeated"),
        pytest.param(grpc.StatusCode.INTERNAL, True, 10, id="another code is final"),
        pytest.param(grpc.StatusCode.UNAVAILABLE, True, 0.01, id="no time left"),
    ],
)
async def test_other_failures_are_not_tried_again(
    code: grpc.StatusCode, safe: bool, deadline: float
) -> None:
    call = Calls(code)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary_with_second_try(call, "req", deadline=deadline, metadata=(), retry_safe=safe)
    assert raised.value.code() == code
    assert len(call.timeouts) == 1
