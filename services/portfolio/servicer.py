"""gRPC servicer of PortfolioService.

Its RPCs are declared and routed; until the portfolio issue fills them in, the generated base class
answers UNIMPLEMENTED (the facade maps it to 501).
"""

from __future__ import annotations

from stockfolio.portfolio.v1 import portfolio_pb2_grpc


class PortfolioServiceServicer(portfolio_pb2_grpc.PortfolioServiceServicer):
    pass
