"""The model's KVM_PRE_FAULT_MEMORY (kvm_main.c kvm_vcpu_pre_fault_memory, mmu.c
kvm_arch_vcpu_pre_fault_memory), with the hygiene rule for padding[] kept.

A family module: `HANDLERS` maps each ioctl to a function of the model and the call.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.linux import PAGE_SIZE, U64
from harness.model.state import Handle, VmState
from harness.model.usercopy import copy_to_user

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend


def in_slot(vm: VmState, gpa: int) -> bool:
    """A gpa of address space 0 that a memslot maps."""
    return any(s.slot >> 16 == 0 and s.gpa <= gpa < s.gpa + s.size for s in vm.slots.values())


def pre_fault_memory(model: ModelBackend, handle: Handle, arg: int) -> int:
    """Validate the range, map it page by page up to a gpa outside every memslot (ENOENT
    unless a page was mapped), and write the range left back over the struct (a refused
    call's struct is written back as it came, which the model leaves as it is)."""
    name, fd = "KVM_PRE_FAULT_MEMORY", handle.kind
    struct = model.facts.structs["kvm_pre_fault_memory"]
    vm = model.vm_of(handle)
    v = model.copy_in(name, arg, fd)
    gpa, size = v["gpa"], v["size"]
    model.check(f"{name}.flags", v["flags"] != 0, fd)
    model.check(f"{name}.align", gpa % PAGE_SIZE != 0 or size % PAGE_SIZE != 0, fd)
    model.check(f"{name}.wrap", (gpa + size) & U64 <= gpa, fd)
    model.zero_words(name, struct, v, fd)
    first = size
    while size and in_slot(vm, gpa):
        if model.dev.skips(f"{name}.slot-page", fd):  # a mutant: a fresh page mapped instead of the slot's
            slot = next(s for s in vm.slots.values() if s.slot >> 16 == 0 and s.gpa <= gpa < s.gpa + s.size)
            copy_to_user(slot.uaddr + gpa - slot.gpa, bytes(PAGE_SIZE))
        gpa, size = gpa + PAGE_SIZE, size - PAGE_SIZE
    model.check(f"{name}.memslot", size == first, fd, errno.ENOENT)
    v.update(gpa=gpa, size=size)
    return 0 if copy_to_user(arg, struct.pack(v)) else -errno.EFAULT


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_PRE_FAULT_MEMORY": pre_fault_memory,
}
