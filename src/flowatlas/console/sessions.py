"""Console sessions: a random cookie value mapped, server-side, to the tenant's API key.

The browser never holds the key after signing in: only an opaque session id in an HttpOnly,
SameSite=Strict cookie, plus a per-session CSRF token that state-changing requests must echo
in a header (or a form field). Sessions live in memory (a restart signs everyone out), expire
after ``idle_seconds`` unused or ``max_age_seconds`` in all, and at most ``capacity`` are kept
(the least recently used goes first), so memory stays bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "fa_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Session:
    key: str
    """The API key the tenant signed in with (never sent back to the browser)."""
    csrf: str
    tenant: str
    role: str
    created: float
    seen: float

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token or "", self.csrf)


def _digest(sid: str) -> str:
    # Keyed by a hash, so the table never holds a usable cookie value.
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        idle_seconds: float = 3600.0,
        max_age_seconds: float = 12 * 3600.0,
        capacity: int = 10_000,
    ) -> None:
        self.clock = clock
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.capacity = capacity
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, key: str, tenant: str, role: str) -> tuple[str, Session]:
        """A new session (a fresh id on every sign-in: no fixation); returns (cookie, session)."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(key, secrets.token_urlsafe(32), tenant, role, now, now)
        with self._lock:
            self._sessions[_digest(sid)] = session
            while len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        d = _digest(sid)
        now = self.clock()
        with self._lock:
            session = self._sessions.get(d)
            if session is None:
                return None
            if now - session.seen > self.idle_seconds or now - session.created > self.max_age_seconds:
                del self._sessions[d]
                return None
            session.seen = now
            self._sessions.move_to_end(d)
            return session

    def end(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(_digest(sid), None)

    def __len__(self) -> int:
        return len(self._sessions)
