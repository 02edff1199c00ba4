"""Datetimes as google.protobuf.Timestamp, the one way every service writes them."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime) -> Timestamp:
    """An aware datetime (UTC or any zone) as a Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def optional_timestamp(value: datetime | None) -> Timestamp | None:
    """None stays None: the field is left unset (absent in JSON)."""
    return None if value is None else timestamp(value)
