"""A service reached directly over gRPC, as grpcurl or a generated client would, is protected."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import bearer
from tests.system_harness import Account, System

pytestmark = pytest.mark.e2e


@pytest.fixture
def users(system: System) -> Iterator[users_pb2_grpc.UsersServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{system.grpc_ports['users']}") as channel:
        yield users_pb2_grpc.UsersServiceStub(channel)


def test_get_me_without_a_token_is_unauthenticated(
    users: users_pb2_grpc.UsersServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        users.GetMe(users_pb2.GetMeRequest(), timeout=10)

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_get_me_with_a_bearer_token_returns_its_user(
    users: users_pb2_grpc.UsersServiceStub, account: Account
) -> None:
    answer = users.GetMe(
        users_pb2.GetMeRequest(),
        metadata=[bearer(account.access_token)],
        timeout=10,
    )

    assert answer.user.id == account.user_id
    assert answer.user.email == account.email
    assert answer.user.name == account.name
    assert list(answer.user.roles) == [users_pb2.ROLE_USER]


def test_get_me_with_a_forged_token_is_unauthenticated(
    users: users_pb2_grpc.UsersServiceStub, account: Account
) -> None:
    header, payload, _ = account.access_token.split(".")
    with pytest.raises(grpc.RpcError) as raised:
        users.GetMe(
            users_pb2.GetMeRequest(),
            metadata=[("authorization", f"Bearer {header}.{payload}.forged")],
            timeout=10,
        )

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_another_service_reached_directly_also_requires_a_token(system: System) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{system.grpc_ports['portfolio']}") as channel:
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), timeout=10)

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
