"""Errno names for people: pure, so the report and the rules can name an answer
without loading libc (the kernel backend re-exports these)."""

from __future__ import annotations

import errno


def errno_name(code: int) -> str:
    """EINVAL for 22 (or -22); the number itself only when the name is unknown."""
    return errno.errorcode.get(abs(code), f"errno {abs(code)}")


def describe(result: int) -> str:
    """A raw call's result for people: "EINVAL" or "0 (success)"."""
    return errno_name(result) if result < 0 else f"{result} (success)"
