"""gRPC servicer of TerminalService.

Its RPCs are declared and routed; until the terminal issue fills them in, the generated base class
answers UNIMPLEMENTED (the facade maps it to 501).
"""

from __future__ import annotations

from stockfolio.terminal.v1 import terminal_pb2_grpc


class TerminalServiceServicer(terminal_pb2_grpc.TerminalServiceServicer):
    pass
