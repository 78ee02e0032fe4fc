"""KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG and KVM_RESET_DIRTY_RINGS: a memslot's dirty
bitmap read and cleared, and the dirty rings reset."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.facts import Struct
from harness.abi.linux import U64
from harness.rules import USER_MEM_SLOTS, Expect, _reserved_set


@dataclass(frozen=True)
class DirtyLogInput:
    """A dirty-log struct as sent, and the VM it goes to: its one memslot (slot 0 of
    `npages` pages, with or without KVM_MEM_LOG_DIRTY_PAGES), whether a dirty ring is
    enabled, its address spaces, and the bitmap buffer the case owns."""

    values: Mapping[str, int]
    struct: Struct
    npages: int
    logging: bool
    ring: bool
    address_spaces: int
    bitmap: int  # the address of the case's bitmap buffer; any other pointer faults

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64

    def slot_check(self, rule: str) -> Expect | None:
        """What every dirty-log call checks first: the ring, the slot id, the slot's bitmap."""
        slot = self.get("slot")
        if self.ring:
            return Expect(errno.ENXIO, rule, "a dirty ring is enabled (without a bitmap) → ENXIO")
        if slot & 0xFFFF >= USER_MEM_SLOTS or slot >> 16 >= max(self.address_spaces, 1):
            return Expect(errno.EINVAL, rule, "slot id ≥ KVM_USER_MEM_SLOTS, or an address space the VM lacks → EINVAL")
        return None

    def no_bitmap(self) -> bool:
        return self.get("slot") != 0 or not self.logging


def get_dirty_log(d: DirtyLogInput) -> Expect:
    """KVM_GET_DIRTY_LOG (api.rst 4.8): "Given a memory slot, return a bitmap containing any
    pages dirtied since the last call"; a dirty ring without a bitmap → ENXIO; a slot id
    out of range → EINVAL; a slot that is not there or does not log dirty pages → ENOENT
    (kvm_main.c:2257-2326); by the hygiene rules padding1 must be zero; the bitmap is
    written to dirty_bitmap (EFAULT where it cannot be)."""
    rule = "KVM_GET_DIRTY_LOG rules"
    first = d.slot_check(rule)
    if first is not None:
        return first
    label = _reserved_set(d.struct, d.values)
    if label is not None:
        return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (padding must be zero)")
    if d.no_bitmap():
        return Expect(errno.ENOENT, rule, "no such slot, or one without KVM_MEM_LOG_DIRTY_PAGES → ENOENT")
    if d.get("dirty_bitmap") != d.bitmap:
        return Expect(errno.EFAULT, rule, "dirty_bitmap not writable for ALIGN(npages, 64) / 8 bytes → EFAULT")
    return Expect(0, rule, "the slot's bitmap written to dirty_bitmap → 0")


def clear_dirty_log(d: DirtyLogInput) -> Expect:
    """KVM_CLEAR_DIRTY_LOG (api.rst 4.117): "The log is cleared for pages first_page to
    first_page + num_pages - 1; first_page must be a multiple of 64, and num_pages too
    unless first_page + num_pages is the size of the memory slot" (EINVAL), inside the
    slot (EINVAL); then as KVM_GET_DIRTY_LOG: ring ENXIO, slot id EINVAL, ENOENT; the bits
    are read from dirty_bitmap, ALIGN(num_pages, 64) / 8 bytes (EFAULT)."""
    rule = "KVM_CLEAR_DIRTY_LOG rules"
    first = d.slot_check(rule)
    if first is not None:
        return first
    start, count = d.get("first_page"), d.get("num_pages")
    if start % 64:
        return Expect(errno.EINVAL, rule, "first_page not a multiple of 64 → EINVAL")
    if d.no_bitmap():
        return Expect(errno.ENOENT, rule, "no such slot, or one without KVM_MEM_LOG_DIRTY_PAGES → ENOENT")
    if start > d.npages or count > d.npages - start:
        return Expect(errno.EINVAL, rule, "first_page + num_pages past the slot's end → EINVAL")
    if start + count < d.npages and count % 64:
        return Expect(errno.EINVAL, rule, "num_pages not a multiple of 64, except to the slot's end → EINVAL")
    if count and d.get("dirty_bitmap") != d.bitmap:
        return Expect(errno.EFAULT, rule, "dirty_bitmap not readable for ALIGN(num_pages, 64) / 8 bytes → EFAULT")
    return Expect(0, rule, "the range's bits cleared → 0")


def reset_dirty_rings(arg: int, ring: bool) -> Expect:
    """KVM_RESET_DIRTY_RINGS (api.rst 4.125): "Parameters: none", so by the hygiene rules
    the argument must be 0; without a dirty ring → EINVAL (kvm_main.c:5043-5044); else
    the number of entries reset (≥ 0)."""
    rule = "KVM_RESET_DIRTY_RINGS rules"
    if not ring:
        return Expect(errno.EINVAL, rule, "no dirty ring enabled → EINVAL")
    if arg:
        return Expect(errno.EINVAL, rule, "an argument other than 0 (it takes none) → EINVAL")
    return Expect(0, rule, "the rings reset → the number of entries reset")
