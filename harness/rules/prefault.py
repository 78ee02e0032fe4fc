"""KVM_PRE_FAULT_MEMORY: map a range of guest memory before the guest touches it."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.facts import Struct
from harness.abi.linux import U64
from harness.rules import Expect, _reserved_set, aligned


@dataclass(frozen=True)
class PreFaultInput:
    """`kvm_pre_fault_memory` as sent, and the one memslot of the case's VM: [slot_start, slot_end)."""

    values: Mapping[str, int]
    struct: Struct
    page: int
    slot_start: int
    slot_end: int

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64

    def mapped(self) -> int:
        """The bytes from `gpa` on that lie in the memslot: what the kernel maps before it stops."""
        gpa, size = self.get("gpa"), self.get("size")
        if not self.slot_start <= gpa < self.slot_end:
            return 0
        return min(gpa + size, self.slot_end) - gpa


def pre_fault_memory(p: PreFaultInput) -> Expect:
    """KVM_PRE_FAULT_MEMORY (api.rst 4.143): "EINVAL: the specified gpa and size were
    invalid (e.g. not page aligned, causes an overflow, or size is zero)"; flags "in",
    must be 0 (kvm_vcpu_pre_fault_memory); by the hygiene rules padding[] must be zero;
    "ENOENT: the specified gpa is outside defined memslots"; "0 if at least one page is
    processed"."""
    rule = "KVM_PRE_FAULT_MEMORY rules"
    gpa, size = p.get("gpa"), p.get("size")
    if p.get("flags"):
        return Expect(errno.EINVAL, rule, "flags ≠ 0 → EINVAL")
    if not aligned(gpa, p.page) or not aligned(size, p.page) or (gpa + size) & U64 <= gpa:
        return Expect(errno.EINVAL, rule, "gpa or size not page aligned, size 0, or gpa + size wraps → EINVAL")
    label = _reserved_set(p.struct, p.values)
    if label is not None:
        return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (unused fields must be zero)")
    if not p.mapped():
        return Expect(errno.ENOENT, rule, "gpa outside the defined memslots → ENOENT")
    return Expect(0, rule, "at least one page of the range in a memslot → 0")


def pre_fault_left(p: PreFaultInput) -> dict[str, int]:
    """What the kernel writes back: "the input values are updated to point to the remaining
    range" (api.rst 4.143), after a success or a refusal alike; padding[] comes back as sent."""
    done = p.mapped() if pre_fault_memory(p).ok else 0
    left = {w.label: p.get(w.label) for w in p.struct.words()}
    left.update(gpa=p.get("gpa") + done, size=p.get("size") - done)
    return left
