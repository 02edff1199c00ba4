"""gRPC servicer of AssistantService.

Its RPCs are declared and routed; until the assistant issue fills them in, the generated base class
answers UNIMPLEMENTED (the facade maps it to 501).
"""

from __future__ import annotations

from stockfolio.assistant.v1 import assistant_pb2_grpc


class AssistantServiceServicer(assistant_pb2_grpc.AssistantServiceServicer):
    pass
