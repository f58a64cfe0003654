"""Network classes of address space (residential, hosting, cdn, enterprise, ...) as the
investigations read them.

The table itself (``prefix,class[,asn]`` rows, vectorised lookups, most specific prefix wins) is
:class:`flowatlas.ranges.NetClassTable`, shared with the governance layer; this module adds the
groups of class names the analytics reason with.
"""

from __future__ import annotations

from flowatlas.ranges import UNKNOWN as UNKNOWN
from flowatlas.ranges import NetClassError as NetClassError
from flowatlas.ranges import NetClassTable as NetClassTable
from flowatlas.ranges import read_rows as read_rows

EYEBALL = frozenset({"residential", "enterprise", "mobile", "education"})
INFRASTRUCTURE = frozenset({"cdn", "infrastructure", "resolver", "cloud-edge"})
SECURITY = frozenset({"security", "research"})
