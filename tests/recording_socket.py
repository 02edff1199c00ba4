"""A client socket that records: what the facade's feeds send a browser, kept as frames and read
back as messages, for tests that drive a feed without a real socket."""

from __future__ import annotations

import json
from typing import Any


class Recorder:
    """Stands in for a ClientSocket: keeps the frames it is given."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def messages(self) -> list[dict[str, Any]]:
        # Each frame is a header (2 bytes, 4 from 126 bytes of payload: RFC 6455, 5.2) and JSON.
        return [json.loads(frame[4 if frame[1] == 126 else 2 :]) for frame in self.frames]
