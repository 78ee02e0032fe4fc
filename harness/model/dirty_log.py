"""The model's dirty log: KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG (kvm_main.c
kvm_get_dirty_log_protect, kvm_clear_dirty_log_protect) and KVM_RESET_DIRTY_RINGS, with
the hygiene rules kept (padding1, the ring reset's argument); and what a guest write
does to them (mark_page_dirty_in_slot: a bit of the slot's bitmap, or an entry of the
vCPU's dirty ring).

A family module: `HANDLERS` maps each ioctl to a function of the model and the call.
"""

from __future__ import annotations

import errno
import functools
import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.linux import PAGE_SIZE
from harness.model.state import Handle, Slot, VcpuState, VmState
from harness.model.usercopy import copy_from_user, copy_to_user
from harness.rules import USER_MEM_SLOTS
from harness.rules.enable_cap import DIRTY_RING_RSVD_ENTRIES

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend


def valid_slot(model: ModelBackend, name: str, fd: str, vm: VmState, slot: int) -> None:
    """The ring (ENXIO), then the slot id (EINVAL)."""
    model.check(f"{name}.ring", vm.dirty_ring != 0, fd, errno.ENXIO)
    model.check(f"{name}.slot", slot & 0xFFFF >= USER_MEM_SLOTS or slot >> 16 >= model.address_spaces(vm), fd)


def logging_slot(model: ModelBackend, name: str, fd: str, vm: VmState, slot: int) -> Slot:
    """The slot, which must log dirty pages (ENOENT)."""
    found = vm.slots.get(slot)
    log = model.facts.constants["KVM_MEM_LOG_DIRTY_PAGES"]
    model.check(f"{name}.no-log", found is None or not found.flags & log, fd, errno.ENOENT)
    assert found is not None
    return found


def new_bitmap(model: ModelBackend, vm: VmState, npages: int) -> int:
    """A logging slot's first bitmap: every page set under manual protection with
    KVM_DIRTY_LOG_INITIALLY_SET (kvm_main.c:1699-1700), else clear; a VM with a dirty ring has
    none (kvm_use_dirty_bitmap())."""
    init_set = model.facts.constants["KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE"] | model.facts.constants["KVM_DIRTY_LOG_INITIALLY_SET"]
    every = vm.manual_protect & init_set == init_set and not vm.dirty_ring
    return (1 << npages) - 1 if every and not model.dev.skips("KVM_SET_USER_MEMORY_REGION2.initially-set", "vm") else 0


def mark_page_dirty(model: ModelBackend, vm: VmState, cpu: VcpuState, slot: Slot, gfn: int) -> None:
    """A guest write to `gfn` of a logging slot (kvm_main.c:3575-3597): an entry (slot,
    offset) pushed into the vCPU's ring when the VM has one (dirty_ring.c:229-236), else
    the page's bit in the slot's bitmap."""
    if not slot.flags & model.facts.constants["KVM_MEM_LOG_DIRTY_PAGES"]:
        return
    offset = gfn - slot.gpa // PAGE_SIZE + model.dev.exit_skew.get("dirty.offset", 0)
    if not vm.dirty_ring:
        slot.dirty |= 1 << offset
        return
    gfn_struct = model.facts.structs["kvm_dirty_gfn"]
    if cpu.dirty_ring_addr:
        at = cpu.dirty_ring_addr + cpu.dirty_index % (vm.dirty_ring // gfn_struct.size) * gfn_struct.size
        entry = {"flags": model.facts.constants["KVM_DIRTY_GFN_F_DIRTY"], "slot": slot.slot, "offset": offset}
        copy_to_user(at, gfn_struct.pack(entry))
    cpu.dirty_index += 1


def ring_soft_full(model: ModelBackend, vm: VmState, cpu: VcpuState) -> bool:
    """kvm_dirty_ring_soft_full(): the vCPU's used entries reach the ring's entries less the
    reserved ones (dirty_ring.c:19-21, 43-46, 83); KVM_RUN then exits KVM_EXIT_DIRTY_RING_FULL
    before the guest goes on (dirty_ring.c:253-258)."""
    if not vm.dirty_ring or model.dev.skips("KVM_RUN.ring-soft-full", "vcpu"):  # a mutant: the ring never fills
        return False
    entries = vm.dirty_ring // model.facts.structs["kvm_dirty_gfn"].size
    reserved = 0 if model.dev.skips("KVM_RUN.ring-reserved", "vcpu") else dirty_ring_rsvd(model)  # a mutant: none reserved
    return cpu.dirty_index - cpu.reset_index >= entries - reserved


def dirty_ring_rsvd(model: ModelBackend) -> int:
    """kvm_dirty_ring_get_rsvd_entries(): KVM_DIRTY_RING_RSVD_ENTRIES and the CPU's own log."""
    return DIRTY_RING_RSVD_ENTRIES + model.limits().cpu_dirty_log_size


def get_dirty_log(model: ModelBackend, handle: Handle, arg: int) -> int:
    """The slot's bitmap, ALIGN(npages, 64) / 8 bytes, written to dirty_bitmap; cleared
    unless manual protection is enabled (kvm_main.c:2287-2318)."""
    name, fd = "KVM_GET_DIRTY_LOG", handle.kind
    vm = model.vm_of(handle)
    v = model.copy_in(name, arg, fd)
    slot = v["slot"]
    valid_slot(model, name, fd, vm, slot)
    model.zero_words(name, model.facts.structs["kvm_dirty_log"], v, fd)
    found = logging_slot(model, name, fd, vm, slot)
    npages = found.size // PAGE_SIZE
    bits = found.dirty
    if model.dev.skips(f"{name}.per-slot", fd):  # a mutant: every slot's bits (all slots share the number of pages)
        bits = functools.reduce(operator.or_, (s.dirty for s in vm.slots.values()), 0)
    bitmap = bits.to_bytes((npages + 63) // 64 * 8, "little")
    manual = vm.manual_protect & model.facts.constants["KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE"]
    keeps = (manual and not model.dev.skips(f"{name}.manual", fd)) or model.dev.skips(f"{name}.reset", fd)
    if not keeps:
        found.dirty = 0
    model.check(f"{name}.copy-out", not copy_to_user(v["dirty_bitmap"], bitmap), fd, errno.EFAULT)
    return 0


def clear_dirty_log(model: ModelBackend, handle: Handle, arg: int) -> int:
    """first_page 64-aligned; the range inside the slot, num_pages 64-aligned unless it
    reaches the slot's end; the bits read from dirty_bitmap."""
    name, fd = "KVM_CLEAR_DIRTY_LOG", handle.kind
    vm = model.vm_of(handle)
    v = model.copy_in(name, arg, fd)
    first, count = v["first_page"], v["num_pages"]
    slot = v["slot"]
    valid_slot(model, name, fd, vm, slot)
    model.check(f"{name}.first-align", first % 64 != 0, fd)
    npages = logging_slot(model, name, fd, vm, slot).size // PAGE_SIZE
    model.check(f"{name}.range", first > npages or count > npages - first, fd)
    model.check(f"{name}.count-align", first + count < npages and count % 64 != 0, fd)
    data = copy_from_user(v["dirty_bitmap"], (count + 63) // 64 * 8)
    model.check(f"{name}.copy-in", data is None, fd, errno.EFAULT)
    assert data is not None
    # exactly the bits asked, within [first, first + count) (kvm_main.c:2411-2421)
    mask = ((1 << count) - 1 if model.dev.skips(f"{name}.mask", fd) else int.from_bytes(data, "little")) & ((1 << count) - 1)
    for found in vm.slots.values() if model.dev.skips(f"{name}.per-slot", fd) else (vm.slots[slot],):  # a mutant: every slot
        found.dirty &= ~(mask << first)
    return 0


def reset_dirty_rings(model: ModelBackend, handle: Handle, arg: int) -> int:
    """EINVAL without a ring; it takes no argument; each vCPU's entries from its reset index
    on that the VMM marked KVM_DIRTY_GFN_F_RESET are made invalid (flags 0), and their number
    is returned (dirty_ring.c:138-150, kvm_main.c:5049-5059)."""
    name, fd = "KVM_RESET_DIRTY_RINGS", handle.kind
    vm = model.vm_of(handle)
    model.check(f"{name}.ring", vm.dirty_ring == 0, fd)
    model.check(f"{name}.arg", arg != 0, fd)
    gfn = model.facts.structs["kvm_dirty_gfn"]
    harvested, entries, cleared = model.facts.constants["KVM_DIRTY_GFN_F_RESET"], vm.dirty_ring // gfn.size, 0
    for cpu in vm.ring_vcpus:
        while cpu.reset_index < cpu.dirty_index:
            at = cpu.dirty_ring_addr + cpu.reset_index % entries * gfn.size
            data = copy_from_user(at, gfn.size)
            e = gfn.unpack(data) if data is not None else {"flags": 0}
            if not e["flags"] & harvested:
                break
            copy_to_user(at, gfn.pack({**e, "flags": 0}))
            cpu.reset_index += 1
            cleared += 1
    return 0 if model.dev.skips(f"{name}.count", fd) else cleared  # a mutant: the count is lost


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_GET_DIRTY_LOG": get_dirty_log,
    "KVM_CLEAR_DIRTY_LOG": clear_dirty_log,
    "KVM_RESET_DIRTY_RINGS": reset_dirty_rings,
}
