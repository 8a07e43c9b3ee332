"""The OpenAPI 3.1 document of what this daemon serves, made from the endpoint catalogue.

Served at /docs/openapi.json. It describes exactly the endpoints this daemon serves (an
optional section the config leaves off is not in it), their parameters, bodies and
answers, with ``token`` and ``hash`` as API-key query parameters.
"""

from __future__ import annotations

import re
from typing import Any

from .catalogue import (ACCEPTED, DOWNLOAD, FILE, JSON, PAGE, PLAIN_TEXT, READ, REDIRECT, STATUS, Catalogue, Endpoint,
                        Operation)

_STATUS_BODY = {
    "type": "object",
    "properties": {"Status": {"type": "string", "examples": ["200 OK"]}},
    "required": ["Status"],
}
_ERROR_BODY = {
    "type": "object",
    "properties": {
        "Status": {"type": "string", "examples": ["403 Forbidden"]},
        "Error-Message": {"type": "string"},
        "First-Run": {"type": "boolean"},
    },
    "required": ["Status"],
}
_ACCEPTED_BODY = {
    "type": "object",
    "properties": {"Status": {"type": "string", "examples": ["202 Accepted"]}, "Location": {"type": "string"}},
    "required": ["Status", "Location"],
}
_ERROR_MESSAGE_HEADER = {"description": "Why the request failed", "schema": {"type": "string"}}
_REASONS = {
    400: "Invalid request: wrong method, a missing or invalid parameter, or the work is already running",
    403: "Authentication error",
    404: "Not found, or an optional endpoint this appliance does not enable",
    405: "Method not allowed",
    413: "The body, or one of its fields, is larger than this endpoint accepts",
    500: "Internal error",
    507: "Not enough disk space for the upload",
}


API_VERSION = "1"


def openapi_document(catalogue: Catalogue) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for section, endpoint in catalogue.endpoints():
        paths[endpoint.full_path] = {
            op.method.lower(): _operation(section.title, endpoint, op) for op in endpoint.operations
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Admin API",
            # The API's version, not the package's: the document is served without
            # authentication, and the daemon does not announce what it runs on.
            "version": API_VERSION,
            "description": "The appliance Admin API, version 1. HEAD is answered as GET. "
            "The full reference is at /docs.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": section.title} for section in catalogue.sections],
        "security": [{"signature": []}, {"token": []}, {"hash": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "query", "name": "token",
                          "description": "The API token itself"},
                "hash": {"type": "apiKey", "in": "query", "name": "hash",
                         "description": "HMAC-SHA256 of METHOD + path, keyed by the hex SHA-256 of the token"},
                "signature": {"type": "apiKey", "in": "header", "name": "Signature",
                              "description": "HTTP Message Signatures (RFC 9421), alg hmac-sha256, with "
                              "Signature-Input covering \"@method\", \"@target-uri\" and, with a body, "
                              "\"content-digest\" (and a Content-Digest header), created and nonce "
                              "parameters, keyid the token's name (admin for the API token); the key is "
                              "the hex SHA-256 of the token. Refused outside the signature window and "
                              "on a second use. See /docs, section 2."},
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A named token of scope read (operations marked x-scope: read)"},
                "link": {"type": "apiKey", "in": "query", "name": "link",
                         "description": "A one-time download link's id, from POST /downloads"},
            },
            "schemas": {"Status": _STATUS_BODY, "Error": _ERROR_BODY, "Accepted": _ACCEPTED_BODY},
        },
    }


def _operation(tag: str, endpoint: Endpoint, op: Operation) -> dict[str, Any]:
    value: dict[str, Any] = {
        "operationId": _operation_id(op.method, endpoint.full_path),
        "summary": op.summary,
        "tags": [tag],
        "responses": {**_success(op), **_errors(endpoint, op)},
    }
    if endpoint.public:
        value["security"] = []
    elif endpoint.by_link:
        value["security"] = [{"link": []}]
    elif endpoint.open_while_no_token:
        value["security"] = [{}, {"signature": []}, {"token": []}, {"hash": []}]  # none before the first token
        value["description"] = "Answers without authentication while no API token exists."
    elif op.scope == READ:
        value["security"] = [{"signature": []}, {"token": []}, {"hash": []}, {"bearer": []}]
    if not endpoint.public:
        value["x-scope"] = op.scope  # read: a token of scope read may call it too
    if op.form:
        value["requestBody"] = _form(op)
    return value


def _operation_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w] or ["root"]
    if len(path) > 1 and path.endswith("/"):
        words.append("index")  # /docs/ beside /docs
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


def _form(op: Operation) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in op.form:
        if field.kind == FILE:
            schema: dict[str, Any] = {"type": "string", "contentMediaType": "application/octet-stream"}
        else:
            schema = {"type": "string"}
            if field.allowed and field.any_case:
                schema["pattern"] = "^(" + "|".join(_any_case(value) for value in field.allowed) + ")$"
            elif field.allowed:
                schema["enum"] = list(field.allowed)
        if field.description:
            schema["description"] = field.description
        properties[field.name] = schema
    required = [f.name for f in op.form if f.required]
    body: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        body["required"] = required
    return {"required": True, "content": {"multipart/form-data": {"schema": body}}}


def _any_case(value: str) -> str:
    """START as [Ss][Tt][Aa][Rr][Tt]: JSON Schema patterns have no case-insensitive flag."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in value)


def _success(op: Operation) -> dict[str, Any]:
    reply = op.reply
    if reply.kind == STATUS:
        return {str(reply.code): _json("Done" if reply.code == 200 else "Started",
                                       {"$ref": "#/components/schemas/Status"})}
    if reply.kind == JSON:
        return {"200": _json(reply.description or "The document", reply.schema or {"type": "object"})}
    if reply.kind == ACCEPTED:
        answer = _json("Started; follow it at Location", {"$ref": "#/components/schemas/Accepted"})
        answer["headers"] = {"Location": {"description": "Where to poll the job's status",
                                          "schema": {"type": "string"}}}
        return {"202": answer}
    if reply.kind == PLAIN_TEXT:
        return {"200": {"description": reply.description or "Text",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}
    if reply.kind == DOWNLOAD:
        media = reply.media_type or "application/octet-stream"
        return {"200": {"description": reply.description or "A file to save",
                        "content": {media: {"schema": {"type": "string", "contentMediaType": media}}}}}
    if reply.kind == PAGE:
        media = reply.media_type or "text/html"
        return {"200": {"description": reply.description or "The page",
                        "content": {media: {"schema": {"type": "string"}}}}}
    if reply.kind == REDIRECT:
        return {"301": {"description": reply.description or "Moved",
                        "headers": {"Location": {"description": "Where it is now", "schema": {"type": "string"}}}}}
    raise ValueError(f"unknown reply kind {reply.kind!r}")


def _errors(endpoint: Endpoint, op: Operation) -> dict[str, Any]:
    # Every operation refuses an oversized body (413: a body where none is taken, or a field
    # over its cap), whatever the section declares; a file field can also fill the disk (507).
    statuses = {405, 413} if endpoint.public else {400, 403, 404, 413, *op.errors}
    if any(field.kind == FILE for field in op.form):
        statuses.add(507)
    return {
        str(status): {
            **_json(_REASONS.get(status, "Error"), {"$ref": "#/components/schemas/Error"}),
            "headers": {"Error-Message": _ERROR_MESSAGE_HEADER},
        }
        for status in sorted(statuses)
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
