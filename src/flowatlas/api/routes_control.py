"""Service routes: health, quota usage, the audit log, revealing a pseudonym, the collector's
counters."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from flowatlas.addresses import AddressError, parse_prefix
from flowatlas.api.deps import Credential, Purpose
from flowatlas.api.errors import ERROR_RESPONSES
from flowatlas.collect.status import published
from flowatlas.governance.gate import ANY_ROLE, AUDIT_ROLES, PSEUDONYMISED_ROLES, Gate, GateError
from flowatlas.governance.tenants import Role

OPERATOR_ROLES = frozenset({Role.ADMIN})
"""Collector counters name partner exporters: operators only."""


class RevealRequest(BaseModel):
    pseudonym: str = Field(max_length=64, description="A pseudonymised address this tenant saw")


def control_router(gate: Gate, collector_status: Path) -> APIRouter:
    """``collector_status``: the JSON file a collector on this store rewrites every few
    seconds (``<store>/collector-status.json`` by default)."""
    r = APIRouter(responses=ERROR_RESPONSES)

    @r.get("/v1/collector", tags=["service"],
           summary="The collector's live counters per exporter (operators)")
    def collector(cred: Credential) -> JSONResponse:
        ticket = gate.admit(cred, "collector", {}, roles=OPERATOR_ROLES)
        body = published(collector_status)
        gate.close(ticket)
        return JSONResponse(body, headers=ticket.headers())

    @r.get("/health", tags=["service"], summary="Liveness (no key needed)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/v1/usage", tags=["service"], summary="Quotas, what is used today and what is left")
    def usage(cred: Credential) -> JSONResponse:
        ticket = gate.admit(cred, "usage", {}, roles=ANY_ROLE)
        gate.close(ticket)
        u = gate.ledger.usage(ticket.tenant)
        body = {
            "tenant": ticket.tenant.name,
            "role": ticket.tenant.role.value,
            "day": u.day,
            "quotas": asdict(u.quotas),
            "used": {"lookups": u.lookups, "rows": u.rows},
            "remaining": u.remaining(),
            "seconds_to_reset": u.seconds_to_reset,
        }
        return JSONResponse(body, headers=u.headers())

    @r.get("/v1/audit", tags=["audit"], summary="Audit entries after a sequence number")
    def audit(
        cred: Credential,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
    ) -> JSONResponse:
        params = {"after": after, "limit": limit}
        ticket = gate.admit(cred, "audit", params, roles=AUDIT_ROLES, rows=limit)
        entries = list(gate.audit.entries(after, limit))
        ticket.rows = len(entries)
        gate.close(ticket)
        return JSONResponse({"count": len(entries), "entries": entries}, headers=ticket.headers())

    @r.get("/v1/audit/verify", tags=["audit"], summary="Recompute the hash chain")
    def audit_verify(cred: Credential) -> JSONResponse:
        ticket = gate.admit(cred, "audit.verify", {}, roles=AUDIT_ROLES)
        v = gate.audit.verify()
        gate.close(ticket)
        return JSONResponse(
            {
                "ok": v.ok,
                "entries": v.entries,
                "head_seq": v.head_seq,
                "head_hash": v.head_hash,
                "problems": v.problems[:1000],
            },
            headers=ticket.headers(),
        )

    @r.get("/v1/audit/report", tags=["audit"], summary="Transparency summary per tenant/source")
    def audit_report(cred: Credential) -> JSONResponse:
        ticket = gate.admit(cred, "audit.report", {}, roles=AUDIT_ROLES)
        report = gate.audit.report()
        gate.close(ticket)
        return JSONResponse(report, headers=ticket.headers())

    @r.post("/v1/reveal", tags=["flows"], summary="The address behind a pseudonym (audited)")
    def reveal(cred: Credential, purpose: Purpose, body: RevealRequest) -> JSONResponse:
        params: dict[str, Any] = {"pseudonym": body.pseudonym}
        try:
            prefix = parse_prefix(body.pseudonym)
        except AddressError as exc:
            raise gate.reject(cred, "reveal", params, 400, "bad_address", str(exc)) from None
        if not prefix.is_single:
            raise gate.reject(
                cred,
                "reveal",
                params,
                400,
                "bad_address",
                "a pseudonym is one address, not a prefix",
            )
        ticket = gate.admit(
            cred,
            "reveal",
            params,
            roles=PSEUDONYMISED_ROLES,
            purpose=purpose,
            rows=1,
            targets=(prefix,),
            reveal=True,
        )
        address = gate.reveal(ticket, prefix.text)
        if address is None:
            gate.close(ticket, "error:not_a_pseudonym")
            raise GateError(
                404,
                "not_a_pseudonym",
                f"{body.pseudonym} is not a pseudonym of an "
                "address in pseudonymised space for this tenant",
            )
        gate.close(ticket)
        return JSONResponse(
            {"pseudonym": prefix.text, "address": address}, headers=ticket.headers()
        )

    return r
