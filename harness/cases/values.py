"""Values where the rules have edges: reserved-word values, page residues, wrap points."""

from __future__ import annotations

from harness.abi.linux import PAGE_SIZE


def reserved_values(bits: int) -> tuple[int, int, int]:
    """1, the top bit and all ones of a word (1, 1<<63, ~0 for a u64)."""
    return (1, 1 << (bits - 1), (1 << bits) - 1)


def page_residues(page: int = PAGE_SIZE) -> tuple[int, ...]:
    """Unaligned residues: every power of two below the page (a check against 512-byte
    sectors or half a page misses one of them), one between and page − 1."""
    return (*(1 << b for b in range(page.bit_length() - 1)), page // 2 + 8, page - 1)


def wrap_points(page: int = PAGE_SIZE) -> tuple[int, ...]:
    """Page-aligned values where signed (2^63) and unsigned (2^64) arithmetic wraps."""
    return ((1 << 63) - page, 1 << 63, (1 << 64) - page)
