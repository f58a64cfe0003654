"""Errors as JSON: ``{"error": {"code": ..., "message": ..., "quota": ...}}`` with stable codes."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from flowatlas.governance.gate import GateError


class ErrorBody(BaseModel):
    code: str
    message: str
    quota: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad input (code names what)"},
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key"},
    403: {"model": ErrorResponse, "description": "Role or tenant may not do this"},
    429: {"model": ErrorResponse, "description": "A quota would be exceeded (X-Quota-Exceeded)"},
}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    quota: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if quota:
        body["quota"] = quota
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def gate_error_response(exc: GateError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.quota)
