"""Request parts every route shares: the API key, the purpose, the common query parameters."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer fa_<id>_<secret>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key")


class Format(StrEnum):
    json = "json"
    csv = "csv"
    ndjson = "ndjson"


def credential_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def credential(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    return api_key or None


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
