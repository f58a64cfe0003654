"""The store's one error type, apart from the modules that raise it (no import cycles)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store path is not a flowatlas store, a file of it is damaged or cannot be written,
    or an operation on it failed; the message names the path."""
