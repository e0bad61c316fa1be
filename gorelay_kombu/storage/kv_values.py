"""Key/value rules shared by the stores that compute them in Python (memory, SQLite)."""

from __future__ import annotations

from ..errors import StoreError


def incremented(current: bytes | None, amount: int, key: str) -> int:
    """The value :meth:`Store.kv_incr` stores: ``current`` (ASCII digits, None: 0) + ``amount``."""
    if current is None:
        return int(amount)
    try:
        return int(bytes(current).decode("ascii")) + int(amount)
    except (UnicodeDecodeError, ValueError):
        raise StoreError(
            f"kv_incr({key!r}): the value there is not an integer ({bytes(current)[:40]!r}). "
            "Delete the key or use another key for the counter."
        ) from None
