"""Pure ASGI middleware that keeps other sites out, in both auth modes:

- a `Host` that is neither loopback nor in DIRCONV_ALLOWED_HOSTS gets 400 when auth is off
  (DNS rebinding must not reach an open server), or when that list is set;
- a POST, PUT, PATCH or DELETE whose `Origin` is neither the server's own nor in
  DIRCONV_CORS_ORIGINS gets 403, and one without `Content-Type: application/json` gets 415
  (so no HTML form or "simple" cross-site request can change anything);
- every answer carries security headers, among them a CSP with no outside sources (on /docs,
  whose Swagger UI page FastAPI writes with an inline script, inline script and style are
  allowed too; its assets come from this server).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import is_loopback

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = (":80", ":443")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
DOCS_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
DOCS_PATHS = ("/docs",)
REFUSALS = {
    "403": "Another site's Origin (not in DIRCONV_CORS_ORIGINS), or a role without the right",
    "415": "No Content-Type: application/json (needed even without a body)",
}
ERROR_REF = "#/components/schemas/ErrorMessage"


class CrossSiteGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        check_host: bool,
        allowed_hosts: Iterable[str],
        cors_origins: Iterable[str],
    ) -> None:
        self.app = app
        self.check_host = check_host
        self.allowed_hosts = {host.lower().rstrip(".") for host in allowed_hosts}
        self.cors_origins = {_origin_key(origin) for origin in cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send, scope["path"])
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.check_host and not self._host_allowed(host):
            return _refuse(400, f"Host {host[:100]!r} is not served here (DIRCONV_ALLOWED_HOSTS)")
        if scope["method"] not in STATE_CHANGING:
            return None
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, host):
            return _refuse(
                403, f"origin {origin[:100]!r} may not change anything (DIRCONV_CORS_ORIGINS)"
            )
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _refuse(
                415, f"{scope['method']} needs Content-Type: application/json, body or not"
            )
        return None

    def _host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        return bool(name) and (is_loopback(name) or name in self.allowed_hosts)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        key = _origin_key(origin)
        if key in self.cors_origins:
            return True
        netloc = urlsplit(key).netloc if "://" in key else ""
        return bool(netloc) and _strip_default_port(netloc) == _strip_default_port(host.lower())


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _host_name(host: str) -> str:
    """The name in a Host header: without its port, IPv6 brackets kept off."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") == 1 else host.rstrip(".")


def _origin_key(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def _strip_default_port(netloc: str) -> str:
    for port in DEFAULT_PORTS:
        if netloc.endswith(port):
            return netloc[: -len(port)]
    return netloc


def _with_security_headers(send: Send, path: str) -> Send:
    extra = list(SECURITY_HEADERS)
    policy = DOCS_CSP if path.startswith(DOCS_PATHS) else CSP
    extra.append((b"content-security-policy", policy.encode()))

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return sending


def document_refusals(app: FastAPI) -> None:
    """Add this guard's answers to the OpenAPI schema: 403 and 415 on every state-changing
    operation (the 400 for a Host is on every route through the routers' `responses`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        error = {"content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}
        for operation in _state_changing(schema):
            responses = operation.setdefault("responses", {})
            for status, description in REFUSALS.items():
                responses.setdefault(status, {"description": description, **error})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _state_changing(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schema's POST, PUT, PATCH and DELETE operations."""
    for operations in schema.get("paths", {}).values():
        yield from (op for method, op in operations.items() if method.upper() in STATE_CHANGING)
