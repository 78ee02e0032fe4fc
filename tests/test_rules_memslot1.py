"""KVM_SET_USER_MEMORY_REGION (v1)'s rule on its own: v1's own flags check first
(kvm_main.c:5255-5258), then v2's answer on a zeroed v2 struct."""

from __future__ import annotations

import errno

import pytest

from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import load_profile
from harness.rules import V1_FLAGS, MemslotInput, set_user_memory_region, set_user_memory_region2

P = PAGE_SIZE
FACTS = load_profile("released")
V1 = FACTS.structs["kvm_userspace_memory_region"]
V2 = FACTS.structs["kvm_userspace_memory_region2"]
FLAGS = {n: FACTS.const(n) for n in ("KVM_MEM_LOG_DIRTY_PAGES", "KVM_MEM_READONLY", "KVM_MEM_GUEST_MEMFD")}


def slot(struct: object = V1, **values: int) -> MemslotInput:
    base = {"slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": P, "userspace_addr": 1 << 30}
    return MemslotInput({**base, **values}, struct, P, FLAGS)  # type: ignore[arg-type]


@pytest.mark.parametrize(("flags", "want"), [(0, 0), (1, 0), (2, 0), (3, 0), (4, errno.EINVAL), (8, errno.EINVAL), (1 << 31, errno.EINVAL)])
def test_v1_flags(flags: int, want: int) -> None:
    """v1 knows only LOG_DIRTY_PAGES and READONLY; KVM_MEM_GUEST_MEMFD is refused."""
    got = set_user_memory_region(slot(flags=flags))
    assert got.errno == want and (want == 0 or got.clause == V1_FLAGS), got.clause


@pytest.mark.parametrize("change", [{"slot": 32764}, {"memory_size": 1}, {"guest_phys_addr": 1}, {"userspace_addr": 1},
                                    {"memory_size": 0}, {"guest_phys_addr": (1 << 64) - P}, {"slot": 1 << 16}])
def test_v1_answers_as_v2(change: dict[str, int]) -> None:
    """The fields the two share: the same answer, from the same clause."""
    v1, v2 = set_user_memory_region(slot(**change)), set_user_memory_region2(slot(V2, **change))
    assert (v1.errno, v1.clause) == (v2.errno, v2.clause)
