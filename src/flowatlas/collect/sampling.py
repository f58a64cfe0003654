"""Sampling rates (and exporter boot times) learnt from options data, per exporter, domain and sampler.

An options record scoped to a sampler (v9 IE 48 flowSamplerId, IPFIX 302 selectorId) sets that
sampler's rate; one without sets the domain default. A data record then takes the rate of its
own sampler, else the domain default, else 1 ("unsampled, as far as we know": flows are never
dropped for want of a rate).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from flowatlas.collect.bounded import OwnedLRU
from flowatlas.protocols.elements import IE

SamplerKey = tuple[bytes, int, int, int]
"""(exporter, version, domain, sampler id; -1 = the domain default)."""

DOMAIN_DEFAULT = -1

Values = dict[int, npt.NDArray[Any]]


def rates_from_values(values: Values, n: int) -> npt.NDArray[np.uint64] | None:
    """Per-record sampling rate from whichever rate elements the records carry, or None."""
    rate: npt.NDArray[np.uint64] | None = None
    if IE.SAMPLING_INTERVAL in values:
        rate = values[IE.SAMPLING_INTERVAL].astype(np.uint64)
    elif IE.SAMPLER_RANDOM_INTERVAL in values:
        rate = values[IE.SAMPLER_RANDOM_INTERVAL].astype(np.uint64)
    elif IE.SAMPLING_PACKET_INTERVAL in values:
        # PSAMP systematic count-based: select `interval` packets, skip `space` (RFC 5476).
        interval = values[IE.SAMPLING_PACKET_INTERVAL].astype(np.uint64)
        if IE.SAMPLING_PACKET_SPACE in values:
            space = values[IE.SAMPLING_PACKET_SPACE].astype(np.uint64)
            rate = (interval + space) // np.maximum(interval, 1)
        else:
            rate = interval
    elif IE.SAMPLING_SIZE in values and IE.SAMPLING_POPULATION in values:
        size = values[IE.SAMPLING_SIZE].astype(np.uint64)
        rate = values[IE.SAMPLING_POPULATION].astype(np.uint64) // np.maximum(size, 1)
    if rate is None:
        return None
    return np.where(rate == 0, np.uint64(1), rate).astype(np.uint64)


def sampler_ids(values: Values) -> npt.NDArray[np.int64] | None:
    for element in (IE.SAMPLER_ID, IE.SELECTOR_ID):
        if element in values:
            return values[element].astype(np.int64)
    return None


DEFAULT_MAX_PER_EXPORTER = 1024
"""Samplers (and boot times) kept per exporter address: a few per real box."""


class SamplingRates:
    """Rates by (exporter, version, domain, sampler) and boot times by (exporter, version,
    domain), bounded per exporter and in total like the other decoder state (collect/bounded.py:
    one exporter's flood of sampler ids or domains never pushes out another's rates)."""

    def __init__(self, max_entries: int = 65536, *,
                 max_per_exporter: int = DEFAULT_MAX_PER_EXPORTER) -> None:
        self._rates: OwnedLRU[SamplerKey, int] = OwnedLRU(max_per_exporter, max_entries)
        self._init: OwnedLRU[tuple[bytes, int, int], int] = OwnedLRU(max_per_exporter,
                                                                      max_entries)
        self.max_entries = max_entries
        self.changed = False
        self.generation = 0
        """Bumped by every change of a rate or boot time (``changed`` is reset on save)."""

    def learn(self, exporter: bytes, version: int, domain: int, values: Values, n: int) -> int:
        """Take rates from decoded options records; returns how many were learnt."""
        rate = rates_from_values(values, n)
        if rate is None:
            return 0
        ids = sampler_ids(values)
        learnt = 0
        # Options records are few (one per sampler), so a loop here is not a hot path.
        for i in range(n):
            sid = DOMAIN_DEFAULT if ids is None else int(ids[i])
            key = (exporter, version, domain, sid)
            if self._rates.get(key) != int(rate[i]):
                self._rates.put(key, int(rate[i]), 1)
                self.changed = True
                self.generation += 1
            else:
                self._rates.touch(key)
            learnt += 1
        return learnt

    def learn_init_time(self, exporter: bytes, version: int, domain: int, values: Values) -> None:
        """systemInitTimeMilliseconds from options data: the base of IPFIX uptime times."""
        v = values.get(IE.SYSTEM_INIT_TIME_MILLISECONDS)
        if v is not None and len(v) and v.ndim == 1:
            key = (exporter, version, domain)
            value = int(v[-1])
            if self._init.get(key) != value:
                self._init.put(key, value, 1)
                self.changed = True
                self.generation += 1

    def init_time(self, exporter: bytes, version: int, domain: int) -> int | None:
        return self._init.get((exporter, version, domain))

    def default(self, exporter: bytes, version: int, domain: int) -> int:
        rate = self._rates.get((exporter, version, domain, DOMAIN_DEFAULT))
        return 1 if rate is None else rate

    def for_records(self, exporter: bytes, version: int, domain: int, values: Values,
                    n: int) -> npt.NDArray[np.uint64]:
        """Rates for ``n`` data records: carried in the record, by sampler, or the default."""
        own = rates_from_values(values, n)
        if own is not None:
            return own
        base = self.default(exporter, version, domain)
        ids = sampler_ids(values)
        if ids is None:
            return np.full(n, base, dtype=np.uint64)
        out = np.full(n, base, dtype=np.uint64)
        for sid in np.unique(ids).tolist():  # a handful of samplers per exporter
            r = self._rates.get((exporter, version, domain, int(sid)))
            if r is not None:
                out[ids == sid] = r
        return out

    def to_json(self) -> dict[str, list[Any]]:
        return {"rates": [[k[0].hex(), k[1], k[2], k[3], v] for k, v in self._rates.items()],
                "init": [[k[0].hex(), k[1], k[2], v] for k, v in self._init.items()]}

    def load_json(self, data: dict[str, list[Any]]) -> None:
        for exporter, version, domain, sid, rate in data["rates"]:
            self._rates.put((bytes.fromhex(exporter), int(version), int(domain), int(sid)),
                            int(rate), 1)
        for exporter, version, domain, ms in data["init"]:
            self._init.put((bytes.fromhex(exporter), int(version), int(domain)), int(ms), 1)
