"""KVM_PRE_FAULT_MEMORY's rule on its own: each row cites api.rst 4.143 or the 7.3 source
(docs/kernel-7.3-facts.md, "KVM_PRE_FAULT_MEMORY")."""

from __future__ import annotations

import errno

import pytest

from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import load_profile
from harness.rules.prefault import PreFaultInput, pre_fault_left, pre_fault_memory

P = PAGE_SIZE
SLOT = 1 << 20  # a two-page memslot at 1 MiB
STRUCT = load_profile("released").structs["kvm_pre_fault_memory"]


def sent(**values: int) -> PreFaultInput:
    return PreFaultInput({"gpa": SLOT, "size": P, "flags": 0, **values}, STRUCT, P, SLOT, SLOT + 2 * P)


ROWS = [
    ("baseline", sent(), 0, "0 if at least one page is processed"),
    ("flags", sent(flags=1 << 63), errno.EINVAL, "kvm_main.c:4399: range->flags → EINVAL"),
    ("gpa-unaligned", sent(gpa=SLOT + P // 2), errno.EINVAL, "EINVAL: not page aligned"),
    ("size-unaligned", sent(size=1), errno.EINVAL, "EINVAL: not page aligned"),
    ("size-0", sent(size=0), errno.EINVAL, "EINVAL: size is zero"),
    ("wraps", sent(gpa=(1 << 64) - P, size=P), errno.EINVAL, "EINVAL: causes an overflow (gpa + size ≤ gpa)"),
    ("padding", sent(**{"padding[2]": 1}), errno.EINVAL, "botching-up-ioctls: unused fields must be zero"),
    ("below-slot", sent(gpa=SLOT - P, size=2 * P), errno.ENOENT, "ENOENT: the gpa is outside defined memslots"),
    ("past-slot", sent(gpa=SLOT + 2 * P), errno.ENOENT, "ENOENT: the gpa is outside defined memslots"),
    ("across-end", sent(gpa=SLOT + P, size=2 * P), 0, "0 if at least one page is processed"),
]


@pytest.mark.parametrize(("name", "given", "want", "cite"), ROWS, ids=[r[0] for r in ROWS])
def test_pre_fault_memory(name: str, given: PreFaultInput, want: int, cite: str) -> None:
    got = pre_fault_memory(given)
    assert got.errno == want, f"{name}: rule gives {got} ({got.clause}); {cite}"


def test_range_left() -> None:
    """"The input values are updated to point to the remaining range": what was not mapped
    after a partial success, all of it after a refusal."""
    assert pre_fault_left(sent())["gpa"] == SLOT + P and pre_fault_left(sent())["size"] == 0
    across = pre_fault_left(sent(gpa=SLOT + P, size=4 * P))
    assert (across["gpa"], across["size"]) == (SLOT + 2 * P, 3 * P)
    refused = pre_fault_left(sent(flags=1, size=3 * P))
    assert (refused["gpa"], refused["size"], refused["flags"]) == (SLOT, 3 * P, 1)
