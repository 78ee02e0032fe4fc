"""The dirty-log rules on their own: rows from api.rst 4.8, 4.117, 4.125 and
kvm_main.c:2257-2454, 5037-5060 (docs/kernel-7.3-facts.md, "KVM_GET_DIRTY_LOG")."""

from __future__ import annotations

import errno
from collections.abc import Mapping

import pytest

from harness.abi.profile import load_profile
from harness.rules.dirty_log import DirtyLogInput, clear_dirty_log, get_dirty_log, reset_dirty_rings

FACTS = load_profile("released")
BITMAP, NPAGES = 0x7000, 130


def clear(first: int, count: int, **kw: bool) -> int:
    values = {"slot": 0, "first_page": first, "num_pages": count, "dirty_bitmap": BITMAP}
    return clear_dirty_log(DirtyLogInput(values, FACTS.structs["kvm_clear_dirty_log"], NPAGES, kw.get("logging", True),
                                         kw.get("ring", False), 1, BITMAP)).errno


def get(values: Mapping[str, int], ring: bool = False) -> int:
    sent = {"slot": 0, "dirty_bitmap": BITMAP, **values}
    return get_dirty_log(DirtyLogInput(sent, FACTS.structs["kvm_dirty_log"], NPAGES, True, ring, 1, BITMAP)).errno


@pytest.mark.parametrize(("first", "count", "want"), [
    (0, NPAGES, 0), (0, 64, 0), (64, NPAGES - 64, 0), (128, 2, 0), (0, 0, 0), (128, 0, 0),
    (1, 64, errno.EINVAL), (63, 1, errno.EINVAL), (0, 63, errno.EINVAL), (128, 1, errno.EINVAL),
    (0, NPAGES + 1, errno.EINVAL), (192, 0, errno.EINVAL), (NPAGES, 0, errno.EINVAL),
])
def test_clear_ranges(first: int, count: int, want: int) -> None:
    """first_page a multiple of 64; num_pages too unless it reaches the slot's end; inside the slot."""
    assert clear(first, count) == want


def test_clear_and_get_order() -> None:
    """A ring is ENXIO before anything; an unaligned first_page is EINVAL before a slot without logging's ENOENT."""
    assert clear(1, 64, ring=True) == errno.ENXIO
    assert clear(1, 64, logging=False) == errno.EINVAL
    assert clear(0, 64, logging=False) == errno.ENOENT
    assert get({}) == 0 and get({}, ring=True) == errno.ENXIO
    assert get({"slot": 1}) == errno.ENOENT and get({"slot": 1 << 16}) == errno.EINVAL
    assert get({"padding1": 1}) == errno.EINVAL and get({"dirty_bitmap": 0}) == errno.EFAULT


def test_reset_dirty_rings() -> None:
    assert reset_dirty_rings(0, ring=True).ok
    assert reset_dirty_rings(0, ring=False).errno == reset_dirty_rings(1, ring=True).errno == errno.EINVAL
