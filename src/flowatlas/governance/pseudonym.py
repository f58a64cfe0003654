"""Crypto-PAn: prefix-preserving, keyed, reversible pseudonyms for addresses.

Bit ``i`` of the pseudonym is bit ``i`` of the address flipped by the top bit of
AES(first ``i`` address bits, then the pad's bits from ``i`` on). Every block of every address is
independent, so one address batch becomes one (n * bits, 16)-byte ECB call instead of a Python
loop per bit. IPv4 (stored IPv4-mapped) permutes only its 32 bits and stays IPv4; IPv6 permutes
all 128. A key per tenant keeps pivots working inside a tenant and unjoinable across tenants.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from flowatlas.addresses import (
    V4_MAPPED_PREFIX,
    Prefix,
    from_matrix,
    pack,
    pack_many,
    to_matrix,
    unpack,
    unpack_many,
)
from flowatlas.governance.classes import PSEUDONYMISED
from flowatlas.ranges import NetClassTable, in_classes, in_prefixes

_V4_BATCH = 4096
_V6_BATCH = 256
_CACHE_LIMIT = 200_000


class CryptoPAn:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a Crypto-PAn key is 32 bytes")
        self._cipher = Cipher(algorithms.AES(key[:16]), modes.ECB())
        pad = self._aes(key[16:])
        self._pad = np.unpackbits(np.frombuffer(pad, dtype=np.uint8))
        self._cache: dict[bytes, bytes] = {}

    def _aes(self, data: bytes) -> bytes:
        enc = self._cipher.encryptor()
        return enc.update(data) + enc.finalize()

    def _flips(self, bits: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """(n, L) address bits -> (n, L) flip bits, all n * L AES blocks in one call."""
        n, length = bits.shape
        below = np.tri(length, length, -1, dtype=bool)  # below[i, j]: j < i, the address's own bits
        blocks = np.broadcast_to(self._pad, (n, length, 128)).copy()
        blocks[:, :, :length] = np.where(
            below[None, :, :], bits[:, None, :], self._pad[None, None, :length]
        )
        cipher = np.frombuffer(self._aes(np.packbits(blocks, axis=2).tobytes()), dtype=np.uint8)
        return (cipher.reshape(n, length, 16)[:, :, 0] >> 7).astype(np.uint8)

    def _permute(self, matrix: npt.NDArray[np.uint8], v4: bool) -> npt.NDArray[np.uint8]:
        out = matrix.copy()
        part = matrix[:, 12:] if v4 else matrix
        step = _V4_BATCH if v4 else _V6_BATCH
        for start in range(0, len(part), step):
            bits = np.unpackbits(part[start : start + step], axis=1)
            permuted = np.packbits(bits ^ self._flips(bits), axis=1)
            if v4:
                out[start : start + step, 12:] = permuted
            else:
                out[start : start + step] = permuted
        return out

    def encrypt_matrix(self, matrix: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """(n, 16) addresses -> their pseudonyms; repeated addresses are cached."""
        m = np.ascontiguousarray(matrix, dtype=np.uint8)
        if not len(m):
            return m.copy()
        uniq, inverse = np.unique(m, axis=0, return_inverse=True)
        keys = [row.tobytes() for row in uniq]
        # A local view: other threads may clear the shared cache meanwhile.
        known = {k: v for k in keys if (v := self._cache.get(k)) is not None}
        todo = [i for i, k in enumerate(keys) if k not in known]
        if todo:
            sub = uniq[todo]
            is_v4 = (sub[:, :12] == np.frombuffer(V4_MAPPED_PREFIX, dtype=np.uint8)).all(axis=1)
            result = np.empty_like(sub)
            if is_v4.any():
                result[is_v4] = self._permute(sub[is_v4], True)
            if (~is_v4).any():
                result[~is_v4] = self._permute(sub[~is_v4], False)
            fresh = {keys[i]: row.tobytes() for i, row in zip(todo, result, strict=True)}
            known.update(fresh)
            if len(self._cache) + len(fresh) > _CACHE_LIMIT:
                self._cache.clear()
            self._cache.update(fresh)
        mapped = np.frombuffer(b"".join(known[k] for k in keys), dtype=np.uint8).reshape(-1, 16)
        return mapped[np.asarray(inverse).reshape(-1)]

    def encrypt(self, address: str) -> str:
        return unpack(
            self.encrypt_matrix(np.frombuffer(pack(address), dtype=np.uint8)[None, :])[0].tobytes()
        )

    def decrypt(self, pseudonym: str) -> str:
        """The address behind a pseudonym: bit by bit, each flip needs the bits recovered so far."""
        raw = pack(pseudonym)
        v4 = raw[:12] == V4_MAPPED_PREFIX
        part = raw[12:] if v4 else raw
        length = len(part) * 8
        bits = np.unpackbits(np.frombuffer(part, dtype=np.uint8))
        orig = np.zeros(length, dtype=np.uint8)
        for i in range(length):
            block = self._pad.copy()
            block[:i] = orig[:i]
            flip = self._aes(np.packbits(block).tobytes())[0] >> 7
            orig[i] = bits[i] ^ flip
        restored = np.packbits(orig).tobytes()
        return unpack(V4_MAPPED_PREFIX + restored if v4 else restored)


def pseudonymise_table(
    table: pa.Table,
    pan: CryptoPAn,
    classes: NetClassTable,
    exempt: tuple[Prefix, ...],
    text_columns: tuple[str, ...] = (),
) -> tuple[pa.Table, int]:
    """Replace addresses whose class is pseudonymised (and outside ``exempt``) in every address
    column, and say which: each address column gets a boolean ``<name>_pseudonymised`` column
    (appended, on every table of a tenant whose classes pseudonymise, empty tables too, so a
    streamed export keeps one schema). Renderers mark those cells (``~`` in tables).

    Returns the new table and how many cells were pseudonymised.
    """
    from flowatlas.formats.text import PSEUDONYM_SUFFIX

    if not PSEUDONYMISED.intersection(classes.names):
        return table, 0
    changed = 0
    marks: dict[str, pa.Array] = {}
    for name in text_columns:
        # Analytics hand some addresses back as text: pseudonymise them through the binary form.
        if name in table.column_names:
            i = table.column_names.index(name)
            packed = pa.table({"a": pack_many(table.column(i))})
            done, n = pseudonymise_table(packed, pan, classes, exempt)
            marks[name] = done.column("a" + PSEUDONYM_SUFFIX).combine_chunks()
            if n:
                changed += n
                table = table.set_column(i, name, pa.array(unpack_many(done.column(0))))
    for i, fld in enumerate(table.schema):
        if not (pa.types.is_fixed_size_binary(fld.type) and fld.type.byte_width == 16):
            continue
        col = table.column(i)
        matrix = to_matrix(col)
        mask = in_classes(matrix, classes, PSEUDONYMISED)
        if exempt:
            mask &= ~in_prefixes(matrix, exempt)
        if col.null_count:
            mask &= np.asarray(pc.is_valid(col), dtype=bool)
        marks[fld.name] = pa.array(mask, pa.bool_())
        if not mask.any():
            continue
        out = matrix.copy()
        out[mask] = pan.encrypt_matrix(matrix[mask])
        changed += int(mask.sum())
        new = from_matrix(out)
        if col.null_count:
            table = table.set_column(
                i, fld, pc.if_else(pc.is_valid(col), new, pa.scalar(None, fld.type))
            )
        else:
            table = table.set_column(i, fld, new)
    # An AS number tells where a hidden address lives (and ingest fills it from the clear
    # address, docs/enrichment.md): it is hidden with the address.
    for addr, as_field in (("src_addr", "src_as"), ("dst_addr", "dst_as")):
        hidden = marks.get(addr)
        if hidden is not None and as_field in table.column_names and pc.any(hidden).as_py():
            i = table.column_names.index(as_field)
            col = table.column(i)
            table = table.set_column(i, table.schema.field(i),
                                     pc.if_else(hidden, pa.scalar(0, col.type), col))
    for name, mask_col in marks.items():
        mark = name + PSEUDONYM_SUFFIX
        if mark not in table.column_names:
            table = table.append_column(mark, mask_col)
    return table, changed
