"""What a tenant may see, as an expression the engine always applies (Selection.scope).

Enterprise tenants see only flows with an endpoint inside their registered prefixes; the scope is
ANDed with whatever filter they send, so no filter can widen it. ``outside_scope`` re-checks
results that carry both endpoints, as a second line behind the engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import Prefix
from flowatlas.governance.tenants import Role, Tenant
from flowatlas.query.expr import ALL, AddrMatch, All, And, Direction, Expr, Not, Or
from flowatlas.ranges import in_prefixes


class ScopeError(PermissionError):
    """The tenant's role may not read flows at all."""


def scope_for(tenant: Tenant) -> Expr:
    if tenant.role in (Role.ADMIN, Role.ANALYST):
        return ALL
    if tenant.role is Role.ENTERPRISE:
        if not tenant.prefixes:
            raise ScopeError(f"enterprise tenant {tenant.name} has no prefixes")
        return AddrMatch(Direction.ANY, tenant.prefixes)
    raise ScopeError(f"role {tenant.role.value} does not read flows")


def address_terms(expr: Expr) -> Iterator[Prefix]:
    """Every address or prefix an expression names, wherever it sits."""
    if isinstance(expr, AddrMatch):
        yield from expr.prefixes
    elif isinstance(expr, (And, Or)):
        for child in expr.children:
            yield from address_terms(child)
    elif isinstance(expr, Not):
        yield from address_terms(expr.child)
    elif isinstance(expr, All):
        return


def outside_scope(
    tenant: Tenant, table: pa.Table, endpoints: tuple[str, str] = ("src_addr", "dst_addr")
) -> npt.NDArray[np.bool_]:
    """Rows with neither of the ``endpoints`` address columns in the tenant's prefixes (always
    none, unless the engine or an investigation is wrong)."""
    names = set(table.column_names)
    if tenant.role is not Role.ENTERPRISE or not set(endpoints) <= names:
        return np.zeros(table.num_rows, dtype=bool)
    inside = np.zeros(table.num_rows, dtype=bool)
    for name in endpoints:
        col = table.column(name)
        if not (pa.types.is_fixed_size_binary(col.type) and col.type.byte_width == 16):
            raise TypeError(f"scope check: column {name} must hold 16-byte addresses")
        inside |= in_prefixes(col, tenant.prefixes)
    return ~inside
