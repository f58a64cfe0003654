"""Sending datagrams to a collector over UDP at a bounded rate of flow records per second."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable


class TargetError(ValueError):
    """A ``HOST:PORT`` that cannot be used."""


def parse_target(text: str) -> tuple[str, int]:
    """``127.0.0.1:2055``, ``[::1]:2055`` or ``localhost:2055``."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise TargetError(f"target={text!r}: expected HOST:PORT, e.g. 127.0.0.1:2055")
    try:
        number = int(port)
    except ValueError:
        raise TargetError(f"target={text!r}: port {port!r} is not a number") from None
    if not 1 <= number <= 65535:
        raise TargetError(f"target={text!r}: port must be 1..65535")
    return host, number


class UdpSender:
    """Sends datagrams, sleeping so that records/s stays at or below ``rate`` (0: no limit)."""

    def __init__(self, host: str, port: int, rate: float = 0.0) -> None:
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise TargetError(f"target={host}:{port}: {exc}") from exc
        self.address = info[4]
        self.sock = socket.socket(info[0], socket.SOCK_DGRAM)
        self.rate = rate
        self.records = 0
        self.datagrams = 0
        self._t0 = time.monotonic()

    def send(self, datagrams: Iterable[tuple[bytes, int]]) -> None:
        for data, records in datagrams:
            self.sock.sendto(data, self.address)
            self.records += records
            self.datagrams += 1
            if self.rate > 0:
                ahead = self.records / self.rate - (time.monotonic() - self._t0)
                if ahead > 0.002:  # sleep in slices of a few ms, not per datagram
                    time.sleep(ahead)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
