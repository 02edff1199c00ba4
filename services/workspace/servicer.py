"""gRPC servicer of WorkspaceService.

Its RPCs are declared and routed; until the workspace issue fills them in, the generated base class
answers UNIMPLEMENTED (the facade maps it to 501).
"""

from __future__ import annotations

from stockfolio.workspace.v1 import workspace_pb2_grpc


class WorkspaceServiceServicer(workspace_pb2_grpc.WorkspaceServiceServicer):
    pass
