"""The model's guest: KVM_RUN for the programs of `harness.abi.guest_programs`, and the
vCPU-state ioctls they are set up with (x86.c, kvm_main.c).

The model decodes no x86: it reads the bytes at the vCPU's entry point through the
memslot that holds them, recognises the program, and carries out its steps against the
VM's memslots, attributes and guest_memfds, writing each exit into the vCPU's kvm_run
mapping as KVM would. Code it does not recognise, or no memory at the entry point,
exits KVM_EXIT_INTERNAL_ERROR (emulation), as an instruction KVM cannot emulate does.
A write to a logging slot marks its page (`dirty_log.mark_page_dirty`); a write into a
coalesced zone lands in the ring page of the vCPU's mapping (the VM's one ring: the
model's vCPUs each map their own, and only one runs a program).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.exits import run_fields
from harness.abi.guest_programs import Step, program_at, program_steps
from harness.abi.linux import PAGE_SIZE
from harness.model.dirty_log import mark_page_dirty, ring_soft_full
from harness.model.state import Handle, Slot, VcpuState, VmState
from harness.model.usercopy import copy_from_user, copy_to_user

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend

MIN_MMU_PAGES = 64  # KVM_MIN_ALLOC_MMU_PAGES (arch/x86/include/asm/kvm_host.h)
# KVM_GET_SUPPORTED_CPUID: the leaves a 64-bit guest needs (0x80000001 edx: NX bit 20, LM bit 29)
SUPPORTED_CPUID = ({"function": 0, "eax": 0xD}, {"function": 0x80000000, "eax": 0x80000008},
                   {"function": 0x80000001, "edx": 1 << 20 | 1 << 29})
IO_PAGE = PAGE_SIZE  # io.data_offset: the port data is in the mapping's second page


def _vcpu(handle: Handle) -> VcpuState:
    assert handle.vcpu is not None, handle.kind
    return handle.vcpu


def get_supported_cpuid(model: ModelBackend, handle: Handle, arg: int) -> int:
    """kvm_dev_ioctl_get_cpuid(): E2BIG when nent is below the entries there are; else
    the entries, and nent set to their number."""
    header, entry = model.facts.structs["kvm_cpuid2"], model.facts.structs["kvm_cpuid_entry2"]
    v = model.copy_in("KVM_GET_SUPPORTED_CPUID", arg, handle.kind)
    model.check("KVM_GET_SUPPORTED_CPUID.nent", v["nent"] < len(SUPPORTED_CPUID), handle.kind, errno.E2BIG)
    data = header.pack({"nent": len(SUPPORTED_CPUID)}) + b"".join(entry.pack(e) for e in SUPPORTED_CPUID)
    model.check("KVM_GET_SUPPORTED_CPUID.copy-out", not copy_to_user(arg, data), handle.kind, errno.EFAULT)
    return 0


def set_cpuid2(model: ModelBackend, handle: Handle, arg: int) -> int:
    """KVM_SET_CPUID2: the entries are copied in (EFAULT where unreadable) and kept."""
    v = model.copy_in("KVM_SET_CPUID2", arg, handle.kind)
    size = v["nent"] * model.facts.structs["kvm_cpuid_entry2"].size
    model.check("KVM_SET_CPUID2.entries", copy_from_user(arg + 8, size) is None, handle.kind, errno.EFAULT)
    _vcpu(handle).cpuid_entries = v["nent"]
    return 0


def _get(model: ModelBackend, name: str, state: dict[str, int], arg: int, fd: str) -> int:
    io = model.facts.ioctls[name]
    assert io.struct is not None
    data = model.facts.structs[io.struct].pack(state)
    model.check(f"{name}.copy-out", not copy_to_user(arg, data), fd, errno.EFAULT)
    return 0


def get_regs(model: ModelBackend, handle: Handle, arg: int) -> int:
    return _get(model, "KVM_GET_REGS", _vcpu(handle).regs, arg, handle.kind)


def set_regs(model: ModelBackend, handle: Handle, arg: int) -> int:
    cpu = _vcpu(handle)
    cpu.regs, cpu.step = model.copy_in("KVM_SET_REGS", arg, handle.kind), 0
    return 0


def get_sregs(model: ModelBackend, handle: Handle, arg: int) -> int:
    return _get(model, "KVM_GET_SREGS", _vcpu(handle).sregs, arg, handle.kind)


def set_sregs(model: ModelBackend, handle: Handle, arg: int) -> int:
    _vcpu(handle).sregs = model.copy_in("KVM_SET_SREGS", arg, handle.kind)
    return 0


def set_nr_mmu_pages(model: ModelBackend, handle: Handle, arg: int) -> int:
    """kvm_vm_ioctl_set_nr_mmu_pages(): at least KVM_MIN_ALLOC_MMU_PAGES."""
    model.check("KVM_SET_NR_MMU_PAGES.min", arg < MIN_MMU_PAGES, handle.kind)
    return 0


def _slot(vm: VmState, gpa: int) -> Slot | None:
    return next((s for n, s in vm.slots.items() if n >> 16 == 0 and s.gpa <= gpa < s.gpa + s.size), None)


class _Exit(Exception):
    """KVM_RUN stops: the exit's kvm_run fields, and its result (0 or -errno)."""

    def __init__(self, reason: str, fields: Mapping[str, int], result: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.fields, self.result = reason, fields, result


def run(model: ModelBackend, handle: Handle, arg: int) -> int:
    """KVM_RUN: immediate_exit gives EINTR at once; otherwise the program goes on from
    its next step until an exit."""
    cpu, vm = _vcpu(handle), model.vm_of(handle)
    head = copy_from_user(cpu.run_addr, 8) if cpu.run_addr else bytes(8)
    if head is not None and head[1]:
        return -errno.EINTR
    try:
        _go(model, vm, cpu)
    except _Exit as e:
        _report(model, cpu, e)
        return e.result
    raise AssertionError("a program ends with an exit")


def _go(model: ModelBackend, vm: VmState, cpu: VcpuState) -> None:
    c = model.facts.constants
    long_mode = cpu.sregs.get("efer", 0) & 0x400  # EFER.LMA: the code segment's base is ignored
    entry = cpu.regs["rip"] + (0 if long_mode else cpu.sregs.get("cs.base", 0))
    code = _read(model, vm, entry, 64)  # longer than any program
    program = program_at(code) if code is not None else None
    if program is None:
        raise _Exit("KVM_EXIT_INTERNAL_ERROR", {"internal.suberror": c["KVM_INTERNAL_ERROR_EMULATION"], "internal.ndata": 0})
    if cpu.mmio_load:
        data = copy_from_user(cpu.run_addr + run_fields(model.facts)["mmio.data[0]"][0], 8) or bytes(8)
        cpu.loaded, cpu.mmio_load = int.from_bytes(data[:4], "little"), False
    steps = program_steps(program, cpu.regs)  # the model keeps the registers as KVM_SET_REGS left them
    while cpu.step < len(steps):
        if ring_soft_full(model, vm, cpu):
            raise _Exit("KVM_EXIT_DIRTY_RING_FULL", {})
        step, pushed = steps[cpu.step], cpu.dirty_index
        cpu.step += 1
        _do(model, vm, cpu, step)
        if cpu.dirty_index != pushed and ring_soft_full(model, vm, cpu):
            cpu.step -= 1  # as x86: the store that filled the ring has not retired, it runs again after the reset
            raise _Exit("KVM_EXIT_DIRTY_RING_FULL", {})
    raise AssertionError(f"program {program.name} ran past its last step")


def _do(model: ModelBackend, vm: VmState, cpu: VcpuState, step: Step) -> None:
    c = model.facts.constants
    if step.op == "hlt":
        raise _Exit("KVM_EXIT_HLT", {})
    if step.op == "out":
        value = cpu.loaded if step.value is None else step.value
        if _coalesce(model, vm, cpu, step.port, step.size, 1, value):
            return
        copy_to_user(cpu.run_addr + IO_PAGE, value.to_bytes(step.size, "little"))
        raise _Exit("KVM_EXIT_IO", {"io.direction": c["KVM_EXIT_IO_OUT"], "io.size": step.size, "io.port": step.port,
                                    "io.count": 1, "io.data_offset": IO_PAGE})
    write = step.op == "store"
    slot = _slot(vm, step.gpa)
    gfn = step.gpa // PAGE_SIZE
    per_slot = slot is not None and model.dev.skips("KVM_RUN.attributes-per-page", "vcpu")  # a mutant: the slot's first page decides
    private = bool(vm.attributes.at(slot.gpa // PAGE_SIZE if per_slot and slot else gfn) & c["KVM_MEMORY_ATTRIBUTE_PRIVATE"])
    if private and (slot is None or slot.gmem is None):
        cpu.step -= 1  # the access faults: the vCPU stays at it
        raise _Exit("KVM_EXIT_MEMORY_FAULT", {"memory_fault.flags": c["KVM_MEMORY_EXIT_FLAG_PRIVATE"],
                                              "memory_fault.gpa": gfn * PAGE_SIZE, "memory_fault.size": PAGE_SIZE},
                    -errno.EFAULT)
    if slot is None or (write and slot.flags & c["KVM_MEM_READONLY"]):
        if slot is not None and model.dev.skips("KVM_RUN.readonly-no-dirty", "vcpu"):
            mark_page_dirty(model, vm, cpu, slot, gfn)  # a mutant marks the page the store never reached
        if write and _coalesce(model, vm, cpu, step.gpa, step.size, 0, step.value or 0):
            return
        fields = {"mmio.phys_addr": step.gpa, "mmio.len": step.size, "mmio.is_write": int(write)}
        if write:
            fields.update({f"mmio.data[{i}]": b for i, b in enumerate((step.value or 0).to_bytes(8, "little"))})
        cpu.mmio_load = not write
        raise _Exit("KVM_EXIT_MMIO", fields)
    if private and slot.gmem is not None:
        index = (slot.offset + step.gpa - slot.gpa) // PAGE_SIZE
        page = slot.gmem.pages.setdefault(index, bytearray(PAGE_SIZE))
        at = step.gpa % PAGE_SIZE
        if write:
            page[at:at + step.size] = (step.value or 0).to_bytes(step.size, "little")
            mark_page_dirty(model, vm, cpu, slot, gfn)
        cpu.loaded = int.from_bytes(page[at:at + step.size], "little")
        return
    if slot.gmem is not None and slot.gmem.flags & model.facts.constants.get("GUEST_MEMFD_FLAG_MMAP", 0):
        # a guest_memfd that can be mapped makes the slot guest_memfd-only (kvm_gmem_bind(),
        # KVM_MEMSLOT_GMEM_ONLY): shared accesses go to the file's pages too
        offset = slot.offset + step.gpa - slot.gpa
        if write:
            slot.gmem.write(offset, (step.value or 0).to_bytes(step.size, "little"))
            mark_page_dirty(model, vm, cpu, slot, gfn)
        cpu.loaded = int.from_bytes(slot.gmem.read(offset, step.size), "little")
        return
    hva = slot.uaddr + step.gpa - slot.gpa
    if write:
        copy_to_user(hva, (step.value or 0).to_bytes(step.size, "little"))
        mark_page_dirty(model, vm, cpu, slot, gfn)
    cpu.loaded = int.from_bytes(copy_from_user(hva, step.size) or bytes(step.size), "little")


def _coalesce(model: ModelBackend, vm: VmState, cpu: VcpuState, addr: int, size: int, pio: int, value: int) -> bool:
    """coalesced_mmio_write() (coalesced_mmio.c:47-78): a write wholly inside a zone of its
    bus, with room in the ring (one entry stays free), goes into the entry `last`, and
    `last` moves on modulo KVM_COALESCED_MMIO_MAX; the vCPU does not exit."""
    end = addr + 1 if model.dev.skips("KVM_RUN.coalesced-range", "vcpu") else addr + size  # a mutant checks the start only
    if model.dev.skips("KVM_RUN.coalesced", "vcpu") or not any(p == pio and a <= addr and end <= a + n for a, n, p in vm.zones):
        return False
    head, entry = model.facts.structs["kvm_coalesced_mmio_ring"], model.facts.structs["kvm_coalesced_mmio"]
    page = cpu.run_addr + model.facts.constants["KVM_COALESCED_MMIO_PAGE_OFFSET"] * PAGE_SIZE
    ring = head.unpack(copy_from_user(page, head.size) or bytes(head.size))
    room = (PAGE_SIZE - head.size) // entry.size  # KVM_COALESCED_MMIO_MAX
    last = ring["last"]
    fills = model.dev.skips("KVM_RUN.coalesced-free-entry", "vcpu")  # a mutant fills the last free entry too
    if last >= room or ((last + 1) % room == ring["first"] and not fills):
        return False
    data = {f"data[{b}]": x for b, x in enumerate(value.to_bytes(8, "little")[:size])}
    phys_addr = addr + model.dev.exit_skew.get("coalesced.phys_addr", 0)
    copy_to_user(page + head.size + last * entry.size, entry.pack({"phys_addr": phys_addr, "len": size, "pio": pio, **data}))
    wraps = not model.dev.skips("KVM_RUN.coalesced-wrap", "vcpu")  # a mutant runs `last` past the ring's end
    copy_to_user(page, head.pack({**ring, "last": (last + 1) % room if wraps else last + 1}))
    return True


def _read(model: ModelBackend, vm: VmState, gpa: int, size: int) -> bytes | None:
    """Shared guest memory at `gpa` through its memslot's userspace_addr."""
    slot = _slot(vm, gpa)
    if slot is None:
        return None
    return copy_from_user(slot.uaddr + gpa - slot.gpa, min(size, slot.gpa + slot.size - gpa))


def _report(model: ModelBackend, cpu: VcpuState, e: _Exit) -> None:
    """The exit into kvm_run: exit_reason and the payload's fields (a mutant may skew one)."""
    where = run_fields(model.facts)
    fields = {"exit_reason": model.facts.constants[e.reason], **e.fields}
    for label, value in fields.items():
        offset, size = where[label]
        value += model.dev.exit_skew.get(label, 0)
        copy_to_user(cpu.run_addr + offset, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_GET_SUPPORTED_CPUID": get_supported_cpuid,
    "KVM_SET_CPUID2": set_cpuid2,
    "KVM_GET_REGS": get_regs,
    "KVM_SET_REGS": set_regs,
    "KVM_GET_SREGS": get_sregs,
    "KVM_SET_SREGS": set_sregs,
    "KVM_SET_NR_MMU_PAGES": set_nr_mmu_pages,
    "KVM_RUN": run,
}
