"""The HTTP API: a FastAPI app built from a :class:`~flowatlas.service.Service`.

Routes stay thin (parse -> gate -> Atlas -> disclose -> render); every decision about who may see
what lives in flowatlas.governance.gate. OpenAPI is served at /openapi.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowatlas import __version__
from flowatlas.api.deps import credential_from
from flowatlas.api.errors import error_response, gate_error_response
from flowatlas.api.routes_control import control_router
from flowatlas.api.routes_data import data_router
from flowatlas.console.router import mount_console
from flowatlas.governance.gate import GateError

if TYPE_CHECKING:
    from flowatlas.service import Service

_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def create_app(service: Service) -> FastAPI:
    """The API over the service's Atlas, through its gate, and the web console over the same
    routes (its session cookie is one more way to present the tenant's key)."""
    atlas, gate = service.atlas, service.gate
    app = FastAPI(
        title="flowatlas",
        version=__version__,
        description="Flow telemetry with safeguards: scoped tenants, quotas, pseudonymised "
        "counterparts, purposes and a tamper-evident audit log.",
        # The console serves /docs from the npm package swagger-ui-dist (no CDN: works offline).
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.gate = gate
    app.state.atlas = atlas

    @app.exception_handler(GateError)
    async def _gate_error(request: Request, exc: GateError) -> JSONResponse:
        return gate_error_response(exc)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Sync, so Starlette runs it on the thread pool: the audit write never blocks the loop.
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body"))
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        route = request.url.path
        params = {k: v[:200] for k, v in request.query_params.items()}
        try:
            err = gate.reject(credential_from(request), route, params, 400, "bad_request", message)
        except GateError as auth:
            return gate_error_response(auth)
        return gate_error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(
            exc.status_code, code, str(exc.detail), dict(exc.headers) if exc.headers else None
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", "internal error; see the server log")

    app.include_router(data_router(atlas, gate))
    app.include_router(control_router(gate, service.collector_status_path))
    try:
        from flowatlas.api.routes_analytics import analytics_router
    except ImportError:  # analytics not installed in this build: the core routes still serve
        pass
    else:
        app.include_router(analytics_router(atlas, gate))
    mount_console(app, service)
    return app
