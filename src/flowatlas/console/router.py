"""Routes of the web console, mounted on the API app by :func:`mount_console`.

Pages: ``/`` (home), ``/ip/ADDRESS``, ``/explore``, ``/graph``, ``/trace``; ``/signin`` and
``/signout``; ``/static/...`` (the console's own files), ``/vendor/...`` (npm packages) and
``/docs`` (Swagger UI from swagger-ui-dist). The pages themselves carry no data: their script
asks the ``/v1`` routes with the session cookie, which the API's credential dependency maps to
the tenant's key, so every answer goes through the gate.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowatlas.console.assets import (
    MEDIA,
    STATIC,
    MissingAssets,
    inside,
    modules_root,
    vendor_file,
)
from flowatlas.console.pages import docs_page, message_page, shell_page, signin_page
from flowatlas.console.sessions import SESSION_COOKIE, Session, SessionStore
from flowatlas.governance.gate import ANY_ROLE, Gate, GateError

if TYPE_CHECKING:
    from flowatlas.service import Service

SIGNIN_COOKIE = "fa_signin"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PAGES = {"home": "Home", "ip": "Address", "explore": "Explore", "graph": "Graph",
         "trace": "Trace"}
_NO_STORE = {"Cache-Control": "no-store"}


class SecurityHeaders:
    """Adds the CSP and its companions to every response (pages, assets and the API alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def local_path(target: str | None) -> str:
    """``target`` if it is a path on this site (never another host: no open redirect)."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or target.startswith("/signin")):
        return "/"
    return target


def _cookie(response: Response, request: Request, name: str, value: str, path: str = "/") -> None:
    response.set_cookie(name, value, path=path, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def mount_console(app: FastAPI, service: Service) -> None:
    """Sessions, the security headers and the console's routes on ``app``."""
    sessions = SessionStore()
    app.state.sessions = sessions
    app.add_middleware(SecurityHeaders)
    app.include_router(console_router(service.gate, sessions,
                                      modules_root(service.settings.service.console_assets)))


def console_router(gate: Gate, sessions: SessionStore, modules: Any) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(SESSION_COOKIE))

    def page(request: Request, name: str) -> Response:
        session = session_of(request)
        if session is None:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={quote(wanted, safe='')}", 303)
        html = shell_page(name, PAGES[name], session.tenant, session.role, session.csrf)
        return HTMLResponse(html, headers=_NO_STORE)

    @r.get("/")
    def home(request: Request) -> Response:
        return page(request, "home")

    @r.get("/ip")
    def ip_lookup(request: Request, address: str = "") -> Response:
        # The header's look-up box is a plain GET form: its address becomes the page's path.
        return RedirectResponse(f"/ip/{quote(address.strip(), safe='/:')}" if address.strip()
                                else "/", 303)

    @r.get("/ip/{address:path}")
    def ip_page(request: Request, address: str) -> Response:
        return page(request, "ip")

    @r.get("/explore")
    def explore(request: Request) -> Response:
        return page(request, "explore")

    @r.get("/graph")
    def graph(request: Request) -> Response:
        return page(request, "graph")

    @r.get("/trace")
    def trace(request: Request) -> Response:
        return page(request, "trace")

    # -- signing in and out --------------------------------------------------------------

    @r.get("/signin")
    def signin_form(request: Request, next: str = "/") -> Response:
        # Sign-in is a state change too (login CSRF): the form's token must match a cookie
        # that only this site can have set.
        token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)
        response = HTMLResponse(signin_page(token, local_path(next)), headers=_NO_STORE)
        _cookie(response, request, SIGNIN_COOKIE, token, "/signin")
        return response

    @r.post("/signin")
    async def signin(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                                max_num_fields=10).items()}
        token = request.cookies.get(SIGNIN_COOKIE)
        next_path = local_path(form.get("next"))
        if not token or not secrets.compare_digest(form.get("csrf", ""), token):
            return HTMLResponse(signin_page(token or secrets.token_urlsafe(24), next_path,
                                            "The sign-in form expired; please try again."),
                                status_code=403, headers=_NO_STORE)
        key = form.get("api_key", "").strip()
        try:
            ticket = await run_in_threadpool(gate.admit, key or None, "console.signin", {},
                                             roles=ANY_ROLE)
        except GateError as exc:
            return HTMLResponse(signin_page(token, next_path, exc.message), status_code=exc.status,
                                headers=_NO_STORE)
        await run_in_threadpool(gate.close, ticket)
        sid, _ = sessions.create(key, ticket.tenant.name, ticket.tenant.role.value)
        response = RedirectResponse(next_path, 303)
        _cookie(response, request, SESSION_COOKIE, sid)
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    @r.post("/signout")
    async def signout(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                                max_num_fields=10).items()}
        sid = request.cookies.get(SESSION_COOKIE)
        session = sessions.get(sid)
        if session is not None:
            if not session.csrf_ok(form.get("csrf") or request.headers.get("x-csrf-token")):
                return HTMLResponse(message_page("Not signed out",
                                                 "The request lacked the page's CSRF token."),
                                    status_code=403, headers=_NO_STORE)
            sessions.end(sid)
        response = RedirectResponse("/signin", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- files ---------------------------------------------------------------------------

    @r.get("/static/{path:path}")
    def static(path: str) -> Response:
        found = inside(STATIC, path)
        if found is None:
            return Response("not found", 404, media_type="text/plain")
        return FileResponse(found, media_type=MEDIA[found.suffix])

    @r.get("/vendor/{package}/{path:path}")
    def vendor(package: str, path: str) -> Response:
        try:
            found = vendor_file(modules, package, path)
        except MissingAssets as exc:
            return Response(str(exc), 503, media_type="text/plain")
        if found is None:
            return Response("not found", 404, media_type="text/plain")
        # Pinned by package-lock.json: a day of caching is safe.
        return FileResponse(found, media_type=MEDIA[found.suffix],
                            headers={"Cache-Control": "public, max-age=86400"})

    @r.get("/docs")
    def docs() -> Response:
        return HTMLResponse(docs_page())

    return r
