"""Request parts every route shares: the API key, the purpose, the common query parameters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from flowatlas.console.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, SessionStore
from flowatlas.governance.gate import Gate, Ticket

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer fa_<id>_<secret>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key")


class Format(StrEnum):
    json = "json"
    csv = "csv"
    ndjson = "ndjson"
    parquet = "parquet"
    arrow = "arrow"


def credential_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or session_key(request)


def session_key(request: Request) -> str | None:
    """The key behind the web console's session cookie, if any (a header key wins).

    A cookie is sent by the browser on its own, so a state-changing request authenticated by it
    must also carry the session's CSRF token in ``X-CSRF-Token``; without it the request is
    refused (and audited) whatever it asks."""
    sessions: SessionStore | None = getattr(request.app.state, "sessions", None)
    session = sessions.get(request.cookies.get(SESSION_COOKIE)) if sessions else None
    if session is None:
        return None
    if request.method not in SAFE_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        gate: Gate = request.app.state.gate
        raise gate.reject(session.key, request.url.path, {}, 403, "csrf_failed",
                          f"a request signed in by the console's cookie needs its {CSRF_HEADER} "
                          "header")
    return session.key


def credential(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    return api_key or session_key(request)


def purpose(
    purpose: Annotated[
        str | None,
        Query(
            max_length=200,
            description=(
                "Purpose or case reference (required for analysts; recorded in the audit log)"
            ),
        ),
    ] = None,
    x_purpose: Annotated[str | None, Header(max_length=200)] = None,
) -> str | None:
    return purpose or x_purpose


Credential = Annotated[str | None, Depends(credential)]
Purpose = Annotated[str | None, Depends(purpose)]
FilterText = Annotated[str | None, Query(max_length=4000, description="nfdump-style filter")]
Since = Annotated[str | None, Query(max_length=64, description="ISO time, epoch or 7d/12h back")]
Until = Annotated[str | None, Query(max_length=64, description="ISO time, epoch or 7d/12h back")]


@dataclass(frozen=True)
class Asked:
    """The filter and time window a data or investigation route was asked for."""

    filter: str | None = None
    since: str | None = None
    until: str | None = None

    def params(self, **more: Any) -> dict[str, Any]:
        """The request's parameters, as refusals and the audit log record them."""
        return {"filter": self.filter, "since": self.since, "until": self.until, **more}

    def admit(self, gate: Gate, cred: str | None, route: str, params: dict[str, Any],
              purpose: str | None, **more: Any) -> Ticket:
        """``gate.admit`` for this filter and window (``more``: rows, targets, hops...)."""
        return gate.admit(cred, route, params, purpose=purpose, filter=self.filter,
                          since=self.since, until=self.until, **more)


def asked(filter: FilterText = None, since: Since = None, until: Until = None) -> Asked:
    return Asked(filter, since, until)


AskedWindow = Annotated[Asked, Depends(asked)]
"""``filter``, ``since`` and ``until`` query parameters as one :class:`Asked`."""
