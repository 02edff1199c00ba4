"""Prometheus metrics shared by every process (one registry per process, labelled by service)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds, from a millisecond to ten: the range both an RPC and an HTTP request fall in.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RPC_HANDLED = Counter(
    "stockfolio_grpc_server_handled_total",
    "RPCs completed by this server, by method and status code.",
    ["service", "method", "code"],
)
RPC_SECONDS = Histogram(
    "stockfolio_grpc_server_handling_seconds",
    "Time spent handling an RPC.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_HANDLED = Counter(
    "stockfolio_http_requests_total",
    "HTTP requests answered by the facade, by route and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "stockfolio_http_request_seconds",
    "Time spent answering an HTTP request in the facade.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
