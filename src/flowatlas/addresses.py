"""IP addresses in the canonical 16-byte form, one at a time and vectorised.

IPv4 is stored IPv4-mapped (``::ffff:a.b.c.d``) so that both families share one column and the
byte order sorts like the number; prefixes become inclusive byte ranges ``[low, high]``, which is
what Parquet min/max statistics can prune on.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.schema import ADDRESS_TYPE

V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


class AddressError(ValueError):
    """Text that is not an IP address or prefix."""


def pack(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """One address to its 16-byte form."""
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address.strip())
        except ValueError as exc:
            raise AddressError(f"not an IP address: {address!r}") from exc
    if address.version == 4:
        return V4_MAPPED_PREFIX + address.packed
    return address.packed


def unpack(raw: bytes) -> str:
    """One 16-byte address to text (dotted quad for IPv4-mapped)."""
    if raw[:12] == V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


@dataclass(frozen=True, order=True)
class Prefix:
    """An inclusive range of 16-byte addresses, from a CIDR prefix or a single address."""

    low: bytes
    high: bytes
    text: str

    @property
    def is_single(self) -> bool:
        return self.low == self.high

    def contains(self, raw: bytes) -> bool:
        return self.low <= raw <= self.high

    @property
    def prefix_length(self) -> int:
        """Length counted in the address's own family (IPv4 /24 is 24, not 120)."""
        net = ipaddress.ip_network(self.text, strict=False)
        return net.prefixlen


def parse_prefix(text: str) -> Prefix:
    """``10.0.0.0/8``, ``2001:db8::/32``, or a bare address (a /32 or /128)."""
    t = text.strip()
    try:
        net = ipaddress.ip_network(t, strict=False)
    except ValueError as exc:
        raise AddressError(f"not an IP address or prefix: {text!r}") from exc
    low = pack(net.network_address)
    high = pack(net.broadcast_address)
    return Prefix(low, high, str(net) if "/" in t else str(net.network_address))


def pack_many(texts: Iterable[str] | pa.Array | pa.ChunkedArray) -> pa.FixedSizeBinaryArray:
    """Many textual addresses to an Arrow column; IPv4 dotted quads are parsed vectorised."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    arr = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())
    arr = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    n = len(arr)
    out = np.zeros((n, 16), dtype=np.uint8)
    is_v6 = np.asarray(pc.fill_null(pc.match_substring(arr, ":"), False), dtype=bool)
    v4_idx = np.flatnonzero(~is_v6)
    if len(v4_idx):
        v4 = arr.take(pa.array(v4_idx))
        parts = pc.split_pattern(v4, ".")
        lengths = np.asarray(pc.fill_null(pc.list_value_length(parts), 0))
        bad = np.flatnonzero(lengths != 4)
        if len(bad) == 0:
            octets = pc.list_flatten(parts)
            digits = np.asarray(pc.fill_null(pc.match_substring_regex(octets, r"^\d{1,3}$"), False))
            if digits.all():
                values = np.asarray(octets.cast(pa.int64())).reshape(-1, 4)
                bad = np.flatnonzero((values > 255).any(axis=1))
            else:
                bad = np.flatnonzero(~digits.reshape(-1, 4).all(axis=1))
        if len(bad):
            row = int(v4_idx[bad[0]])
            raise AddressError(f"not an IP address: {v4[int(bad[0])].as_py()!r} (row {row + 1})")
        out[v4_idx, 10] = 0xFF
        out[v4_idx, 11] = 0xFF
        out[v4_idx, 12:] = values.astype(np.uint8)
    for i in np.flatnonzero(is_v6):
        out[i] = np.frombuffer(pack(str(arr[int(i)].as_py())), dtype=np.uint8)
    return from_matrix(out)


def from_matrix(matrix: npt.NDArray[np.uint8], *, copy: bool = True) -> pa.FixedSizeBinaryArray:
    """An (n, 16) uint8 matrix to an Arrow address column without copying per row.

    ``copy=False`` shares a contiguous matrix's memory with the column (the column keeps it
    alive): for callers that built the matrix for this and will not change it afterwards.
    """
    m = np.ascontiguousarray(matrix, dtype=np.uint8)
    n = m.shape[0]
    data = pa.py_buffer(m if not copy else m.tobytes())
    result = pa.FixedSizeBinaryArray.from_buffers(ADDRESS_TYPE, n, [None, data])
    assert isinstance(result, pa.FixedSizeBinaryArray)
    return result


def from_ipv4(values: npt.NDArray[np.uint32]) -> pa.FixedSizeBinaryArray:
    """IPv4 addresses as host-order integers to mapped 16-byte addresses (vectorised)."""
    n = len(values)
    m = np.zeros((n, 16), dtype=np.uint8)
    m[:, 10] = 0xFF
    m[:, 11] = 0xFF
    m[:, 12:] = np.asarray(values, dtype=">u4").view(np.uint8).reshape(n, 4)
    return from_matrix(m)


def to_matrix(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.uint8]:
    """An Arrow address column to an (n, 16) uint8 matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if not pa.types.is_fixed_size_binary(column.type):
        column = column.cast(ADDRESS_TYPE)
    n = len(column)
    buf = column.buffers()[1]
    if buf is None:
        return np.zeros((0, 16), dtype=np.uint8)
    data = np.frombuffer(buf, dtype=np.uint8)
    start = column.offset * 16
    return data[start : start + n * 16].reshape(n, 16)


def unpack_many(column: pa.Array | pa.ChunkedArray | Sequence[bytes]) -> list[str]:
    """Addresses to text as a Python list (see :func:`texts` for the Arrow column)."""
    if not isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = pa.array(list(column), ADDRESS_TYPE)
    out: list[str] = texts(column).to_pylist()
    return out


def texts(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Addresses to an Arrow string column: IPv4 by Arrow kernels, IPv6 by inet_ntop one by one;
    no Python objects for the IPv4 rows."""
    m = to_matrix(column)
    n = m.shape[0]
    if n == 0:
        return pa.array([], pa.string())
    is_v4 = (m[:, :10] == 0).all(axis=1) & (m[:, 10] == 0xFF) & (m[:, 11] == 0xFF)
    if is_v4.all():
        return _dotted(m)
    v4_idx = np.flatnonzero(is_v4)
    v6_idx = np.flatnonzero(~is_v4)
    v6 = pa.array([socket.inet_ntop(socket.AF_INET6, m[i].tobytes()) for i in v6_idx.tolist()],
                  pa.string())
    if not len(v4_idx):
        return v6
    # Both families side by side, then each row picks its own text.
    order = np.empty(n, dtype=np.int64)
    order[v4_idx] = np.arange(len(v4_idx))
    order[v6_idx] = len(v4_idx) + np.arange(len(v6_idx))
    both = pa.concat_arrays([_dotted(m[v4_idx]), v6])
    return both.take(pa.array(order))


def _dotted(m: npt.NDArray[np.uint8]) -> pa.Array:
    octets = [pa.array(m[:, 12 + k]).cast(pa.string()) for k in range(4)]
    joined = pc.binary_join_element_wise(*octets, ".")
    assert isinstance(joined, pa.Array)
    return joined


def is_ipv4(raw: bytes) -> bool:
    return raw[:12] == V4_MAPPED_PREFIX


def prefix_texts(column: pa.Array | pa.ChunkedArray, v4: int, v6: int) -> pa.Array:
    """Network addresses as prefix text, IPv4 ones with ``/v4`` and IPv6 ones with ``/v6``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_fixed_size_binary(column.type):
        column = column.cast(ADDRESS_TYPE)
    text = texts(column)
    m = to_matrix(column)
    is_v4 = (m[:, :10] == 0).all(axis=1) & (m[:, 10] == 0xFF) & (m[:, 11] == 0xFF)
    lengths = pa.array(np.where(is_v4, f"/{v4}", f"/{v6}"), pa.string())
    return pc.binary_join_element_wise(text, lengths, "")
