"""The hand-written part of the OpenAPI document: the facade's own routes (health, registry,
metrics, the document itself) and the schemas every operation shares (the envelopes, errors,
pagination, health). The generated part, from the protos, is in openapi.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from facade.routes import DOMAIN_APIS

Schema = dict[str, Any]
OPENAPI_PATH = "/api/v1/openapi.json"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def success(data: Schema, description: str, *, paginated: bool = False) -> Schema:
    properties: Schema = {"data": data}
    required = ["data"]
    if paginated:
        properties["pagination"] = ref("Pagination")
        required.append("pagination")
    schema = {
        "allOf": [
            ref("SuccessEnvelope"),
            {"type": "object", "properties": properties, "required": required},
        ]
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _facade_operation(
    operation_id: str, summary: str, data: Schema, *, parameters: Sequence[Schema] = ()
) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["facade"],
        "parameters": list(parameters),
        "responses": {
            "200": success(data, "Success, in the envelope"),
            "default": {"$ref": "#/components/responses/Error"},
        },
    }


def _plain(
    operation_id: str, summary: str, media: str, schema: Schema, *, redirect: str = ""
) -> Schema:
    responses: Schema = {"200": {"description": summary, "content": {media: {"schema": schema}}}}
    if redirect:
        responses["302"] = {
            "description": redirect,
            "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
        }
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["facade"],
        "responses": responses,
    }


def facade_paths() -> dict[str, Schema]:
    service_param = {
        "name": "service",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(DOMAIN_APIS)},
    }
    facade_health = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "const": "ok"},
            "service": {"type": "string"},
            "uptime": {"type": "number", "description": "seconds since the facade started"},
        },
    }
    return {
        "/health": {
            "get": _facade_operation("Facade_Health", "The facade's health", facade_health)
        },
        "/health/all": {
            "get": _facade_operation(
                "Facade_HealthAll",
                "Every domain service's health (503 when any is down)",
                {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded"]},
                        "services": {"type": "array", "items": ref("ServiceHealth")},
                    },
                },
            )
        },
        "/health/{service}": {
            "get": _facade_operation(
                "Facade_HealthOne",
                "One domain service's health (503 when down)",
                ref("ServiceHealth"),
                parameters=[service_param],
            )
        },
        "/services": {
            "get": _facade_operation(
                "Facade_Services",
                "The service registry: addresses, route prefixes and health",
                {
                    "type": "object",
                    "properties": {"services": {"type": "array", "items": ref("ServiceEntry")}},
                },
            )
        },
        "/metrics": {
            "get": _plain("Facade_Metrics", "Prometheus metrics", "text/plain", {"type": "string"})
        },
        OPENAPI_PATH: {
            "get": _plain(
                "Facade_OpenApi", "This OpenAPI document", "application/json", {"type": "object"}
            )
        },
        "/docs": {
            "get": {
                **_plain(
                    "Facade_Docs",
                    "The interactive API reference (the web app's explorer), or with static a "
                    "page listing every route",
                    "text/html",
                    {"type": "string"},
                    redirect="to the web app's API explorer (FRONTEND_URL + /explorer)",
                ),
                "parameters": [
                    {
                        "name": "static",
                        "in": "query",
                        "required": False,
                        "description": "any value: this page's route table, not the explorer",
                        "schema": {"type": "string"},
                    }
                ],
            }
        },
    }


def shared_schemas() -> dict[str, Schema]:
    common = {
        "timestamp": {"type": "string", "format": "date-time"},
        "correlationId": {"type": "string"},
        "service": {"type": "string", "description": "the service that answered, or facade"},
    }
    replica = {
        "type": "object",
        "properties": {
            "address": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["SERVING", "NOT_SERVING", "SERVICE_UNKNOWN", "UNKNOWN", "UNREACHABLE"],
            },
            "latencyMs": {"type": "number"},
            "error": {"type": "string"},
        },
    }
    return {
        "SuccessEnvelope": {
            "type": "object",
            "required": ["success", "timestamp", "correlationId", "service"],
            "properties": {"success": {"const": True}, "data": {}, **common},
        },
        "ErrorEnvelope": {
            "type": "object",
            "required": ["success", "error", "message", "timestamp", "correlationId", "service"],
            "properties": {
                "success": {"const": False},
                "error": ref("ErrorCode"),
                "message": {"type": "string", "description": "The human sentence."},
                "details": ref("ErrorDetails"),
                "data": {},
                **common,
            },
        },
        "ErrorCode": {
            "type": "string",
            "description": "The machine code: the service's reason (e.g. VALIDATION_ERROR, "
            "TOKEN_EXPIRED, INSUFFICIENT_SHARES) or the status (NOT_FOUND, UNAUTHENTICATED, ...).",
        },
        "ErrorDetails": {
            "type": "object",
            "description": "Everything richer than the message: field violations, the retry "
            "hint, and what the service adds (the current sha on a conflict, quota usage).",
            "properties": {
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "description"],
                        "properties": {
                            "field": {"type": "string"},
                            "description": {"type": "string"},
                        },
                    },
                },
                "retryAfter": {"type": "integer", "description": "seconds"},
            },
            "additionalProperties": {"type": "string"},
        },
        "StreamError": {
            "type": "object",
            "description": "The record that ends a message stream that failed midway.",
            "required": ["error", "message"],
            "properties": {
                "error": ref("ErrorCode"),
                "message": {"type": "string"},
                "details": ref("ErrorDetails"),
            },
        },
        "Pagination": {
            "type": "object",
            "required": ["page", "limit", "total", "totalPages"],
            "properties": {
                "page": {"type": "integer"},
                "limit": {"type": "integer"},
                "total": {"type": "integer"},
                "totalPages": {"type": "integer"},
            },
        },
        "ServiceHealth": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "status": {"type": "string", "enum": ["SERVING", "NOT_SERVING"]},
                "latencyMs": {"type": "number"},
                "addresses": {"type": "array", "items": replica},
            },
        },
        "ServiceEntry": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "grpcService": {"type": "string"},
                "addresses": {"type": "array", "items": {"type": "string"}},
                "routePrefixes": {"type": "array", "items": {"type": "string"}},
                "routes": {"type": "integer"},
                "health": ref("ServiceHealth"),
            },
        },
    }
