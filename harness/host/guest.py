"""A minimal guest: vCPU 0 of a VM in 64-bit long mode (CPL0) running one program of
`harness.abi.guest_programs` from slot 0, and the exits it gives.

The setup follows the selftests' `vm_arch_vcpu_add()`: KVM_SET_CPUID2 with what
KVM_GET_SUPPORTED_CPUID gives (7.3 refuses EFER.LME without guest CPUID LM), then
KVM_SET_SREGS and KVM_SET_REGS. Every pointer and every mapping goes through the
backend (`backend.mmap`, `backend.memory`), so the model answers the same calls.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager

from harness.abi.errnos import errno_name
from harness.abi.exits import Exit, decode, run_fields
from harness.abi.guest_programs import (
    BASE_GPA,
    BASE_SIZE,
    BASE_SLOT,
    CODE_GPA,
    MMIO_REPLY,
    TEST_GPA,
    TEST_PAGES,
    TEST_SLOT,
    Program,
    memory_image,
    regs,
    sregs,
)
from harness.abi.linux import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
)
from harness.host.fds import IoctlError, Kvm, KvmFd, Vcpu, Vm

CPUID_ENTRIES = 256  # room for KVM_GET_SUPPORTED_CPUID (75 entries here; E2BIG if too few)
CONTINUES = frozenset({"KVM_EXIT_IO", "KVM_EXIT_MMIO"})  # exits after which the program goes on
# the attribute changes a test slot goes through (1: PRIVATE, 0: shared)
CONVERSIONS = {"private": (1,), "private-deleted": (1,), "gmem-private": (1,), "gmem-reshared": (1, 0), "gmem-alternate": (1,)}
RUN_LIMIT_S = 2.0  # a program that never exits is stopped by SIGALRM (KVM_RUN: EINTR)


def guest_memory(stack: ExitStack, vm: Vm, size: int) -> int:
    """Anonymous memory for a memslot, unmapped when `stack` closes."""
    addr = vm.backend.mmap(-1, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    if addr < 0:
        raise OSError(-addr, f"mmap of {size} bytes of guest memory for {vm.label} failed: {errno_name(addr)}")
    stack.callback(vm.backend.munmap, addr, size)
    return addr


def set_slot(vm: Vm, slot: int, gpa: int, size: int, uaddr: int, flags: int = 0, gmem_fd: int = 0) -> None:
    """KVM_SET_USER_MEMORY_REGION2, checked (memory_size 0 deletes the slot)."""
    values = {"slot": slot, "flags": flags, "guest_phys_addr": gpa, "memory_size": size, "userspace_addr": uaddr,
              "guest_memfd": gmem_fd}
    r, _ = vm.struct_call("KVM_SET_USER_MEMORY_REGION2", values)
    if r < 0:
        raise IoctlError(-r, f"KVM_SET_USER_MEMORY_REGION2 on {vm.label} (slot {slot}, gpa 0x{gpa:x}, size 0x{size:x}, "
                             f"flags 0x{flags:x}) failed: {errno_name(r)}")


def set_test_slot(stack: ExitStack, vm: Vm, memory: str, host_data: int, log_flags: int = 0) -> int:
    """The test slot as a case names it (`harness.rules.guest.slot_page`), holding
    `host_data` at TEST_GPA where the VMM can write: plain memory, or a guest_memfd
    bound to the slot ("gmem-*"); "gmem-mmap*" is a shared guest_memfd written through its
    mmap (which is also the slot's userspace_addr), "-punched" then punches the first page
    out; "*private" makes the pages PRIVATE, "*reshared" PRIVATE and then shared again;
    "*deleted" deletes the slot afterwards, "recreated" then adds it again over fresh memory;
    "readonly" is a KVM_MEM_READONLY slot; "gmem-alternate" holds `host_data` at every page and
    has its even pages PRIVATE; `log_flags` (KVM_MEM_LOG_DIRTY_PAGES) are added to
    the slot's flags. The user address of the slot's memory (0 when there is none)."""
    size = TEST_PAGES * PAGE_SIZE
    if memory == "none":
        return 0
    c = vm.facts.constants
    flags = gmem_fd = 0
    if memory.startswith("gmem-mmap"):
        gmem = stack.enter_context(vm.create_guest_memfd(size, c["GUEST_MEMFD_FLAG_MMAP"] | c["GUEST_MEMFD_FLAG_INIT_SHARED"]))
        uaddr = vm.backend.mmap(gmem.fd, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0)
        if uaddr < 0:
            raise OSError(-uaddr, f"mmap of {gmem.label} failed: {errno_name(uaddr)}")
        stack.callback(vm.backend.munmap, uaddr, size)
    else:
        uaddr = guest_memory(stack, vm, size)
        if memory.startswith("gmem-"):
            gmem = stack.enter_context(vm.create_guest_memfd(size))
    for page in range(TEST_PAGES if memory == "gmem-alternate" else 1):  # every page's start, or the first's
        vm.backend.memory.write(uaddr + page * PAGE_SIZE, host_data.to_bytes(4, "little"))
    if memory.startswith("gmem-"):
        flags, gmem_fd = c["KVM_MEM_GUEST_MEMFD"], gmem.fd
    if memory == "readonly":
        flags = c["KVM_MEM_READONLY"]
    if memory.endswith("-punched"):
        r = vm.backend.fallocate(gmem.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE_SIZE)
        if r < 0:
            raise OSError(-r, f"fallocate(PUNCH_HOLE|KEEP_SIZE, 0, {PAGE_SIZE}) of {gmem.label} failed: {errno_name(r)}")
    set_slot(vm, TEST_SLOT, TEST_GPA, size, uaddr, flags | log_flags, gmem_fd)
    if memory.endswith("deleted") or memory == "recreated":
        set_slot(vm, TEST_SLOT, TEST_GPA, 0, uaddr)
    if memory == "recreated":
        uaddr = guest_memory(stack, vm, size)  # fresh memory: what the VMM wrote was in the old
        set_slot(vm, TEST_SLOT, TEST_GPA, size, uaddr)
    for attributes in CONVERSIONS.get(memory, ()):
        values = {"address": TEST_GPA, "size": size, "attributes": c["KVM_MEMORY_ATTRIBUTE_PRIVATE"] * attributes}
        _checked_struct(vm, "KVM_SET_MEMORY_ATTRIBUTES", values)
    if memory == "gmem-alternate":  # the odd pages shared again, one call each
        for page in range(1, TEST_PAGES, 2):
            _checked_struct(vm, "KVM_SET_MEMORY_ATTRIBUTES", {"address": TEST_GPA + page * PAGE_SIZE, "size": PAGE_SIZE,
                                                              "attributes": 0})
    return uaddr


def _checked_struct(fd: KvmFd, name: str, values: dict[str, int]) -> dict[str, int]:
    r, out = fd.struct_call(name, values)
    if r < 0:
        raise IoctlError(-r, f"{name} on {fd.label} failed: {errno_name(r)}")
    return out


def _set_cpuid(kvm: Kvm, vcpu: Vcpu) -> None:
    """KVM_SET_CPUID2 with every entry KVM_GET_SUPPORTED_CPUID gives."""
    facts, memory = kvm.facts, kvm.backend.memory
    header, entry = facts.structs["kvm_cpuid2"], facts.structs["kvm_cpuid_entry2"]
    with memory.at_guard(header.pack({"nent": CPUID_ENTRIES}) + bytes(entry.size * CPUID_ENTRIES)) as buf:
        r = kvm.call("KVM_GET_SUPPORTED_CPUID", buf.addr)
        if r < 0:
            raise IoctlError(-r, f"KVM_GET_SUPPORTED_CPUID on {kvm.label} failed: {errno_name(r)}")
        data = buf.read()
    nent = header.unpack(data[: header.size])["nent"]
    with memory.at_guard(data[: header.size + entry.size * nent]) as buf:
        r = vcpu.call("KVM_SET_CPUID2", buf.addr)
        if r < 0:
            raise IoctlError(-r, f"KVM_SET_CPUID2 ({nent} entries) on {vcpu.label} failed: {errno_name(r)}")


def boot(stack: ExitStack, kvm: Kvm, vm: Vm, program: Program, gprs: Mapping[str, int] | None = None) -> Vcpu:
    """Slot 0 with the page tables, GDT and the program; vCPU 0 in long mode at its entry,
    with `gprs` (a loop program's count, address, stride and port)."""
    memory = vm.backend.memory
    base = guest_memory(stack, vm, BASE_SIZE)
    for gpa, data in memory_image().items():
        memory.write(base + gpa - BASE_GPA, data)
    memory.write(base + CODE_GPA - BASE_GPA, program.code)
    set_slot(vm, BASE_SLOT, BASE_GPA, BASE_SIZE, base)
    vcpu = stack.enter_context(vm.create_vcpu(0, kvm.vcpu_mmap_size()))
    _set_cpuid(kvm, vcpu)
    now = _checked_struct(vcpu, "KVM_GET_SREGS", {})
    _checked_struct(vcpu, "KVM_SET_SREGS", {**now, **sregs()})
    _checked_struct(vcpu, "KVM_SET_REGS", regs(gprs))
    return vcpu


def _on_alarm(signum: int, frame: object) -> None:
    """Nothing: SIGALRM is there only to make a KVM_RUN that never returns give EINTR."""


@contextmanager
def _run_limit() -> Iterator[None]:
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, RUN_LIMIT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run(vcpu: Vcpu, limit: int = 8, mmio_reply: int = MMIO_REPLY) -> list[Exit]:
    """KVM_RUN until an exit after which the program cannot go on (or `limit` exits);
    an MMIO read is answered with `mmio_reply` before the next KVM_RUN."""
    facts, memory = vcpu.facts, vcpu.backend.memory
    fields = run_fields(facts)
    size = facts.structs["kvm_run"].size

    def field(raw: bytes, label: str) -> int:
        offset, n = fields[label]
        return int.from_bytes(raw[offset : offset + n], "little")

    exits: list[Exit] = []
    with _run_limit():
        while len(exits) < limit:
            result = vcpu.call("KVM_RUN")
            raw = memory.read(vcpu.run_addr, size)
            io_data = b""
            if field(raw, "exit_reason") == facts.constants["KVM_EXIT_IO"]:
                io_data = memory.read(vcpu.run_addr + field(raw, "io.data_offset"), field(raw, "io.size") * field(raw, "io.count"))
            seen = decode(facts, raw, result, io_data)
            exits.append(seen)
            if result < 0 or seen.reason not in CONTINUES:
                break
            if seen.reason == "KVM_EXIT_MMIO" and not field(raw, "mmio.is_write"):
                memory.write(vcpu.run_addr + fields["mmio.data[0]"][0], mmio_reply.to_bytes(8, "little"))
    return exits


def rerun(vcpu: Vcpu, gprs: Mapping[str, int] | None = None) -> None:
    """The vCPU back at the program's entry (KVM_SET_REGS) with `gprs`, to run it again after its hlt."""
    _checked_struct(vcpu, "KVM_SET_REGS", regs(gprs))


def enable_cap(vm: Vm, cap: str, arg0: int) -> None:
    """KVM_ENABLE_CAP on the VM, checked."""
    _checked_struct(vm, "KVM_ENABLE_CAP", {"cap": vm.facts.caps[cap], "args[0]": arg0})


def get_dirty_log(vm: Vm, slot: int, npages: int) -> int:
    """KVM_GET_DIRTY_LOG of a slot: its bitmap as a number (bit n: page n), from the
    ALIGN(npages, 64) / 8 bytes the kernel writes, as little-endian longs."""
    nbytes = (npages + 63) // 64 * 8
    with vm.backend.memory.at_guard(bytes(nbytes)) as bitmap:
        _checked_struct(vm, "KVM_GET_DIRTY_LOG", {"slot": slot, "dirty_bitmap": bitmap.addr})
        return int.from_bytes(bitmap.read(), "little")


def clear_dirty_log(vm: Vm, slot: int, npages: int, mask: int) -> None:
    """KVM_CLEAR_DIRTY_LOG of the whole slot with the bits of `mask`."""
    with vm.backend.memory.at_guard(mask.to_bytes((npages + 63) // 64 * 8, "little")) as bitmap:
        values = {"slot": slot, "first_page": 0, "num_pages": npages, "dirty_bitmap": bitmap.addr}
        _checked_struct(vm, "KVM_CLEAR_DIRTY_LOG", values)


def map_dirty_ring(stack: ExitStack, vcpu: Vcpu, ring_bytes: int) -> int:
    """The vCPU's dirty ring mapped shared at KVM_DIRTY_LOG_PAGE_OFFSET of its fd."""
    offset = vcpu.facts.constants["KVM_DIRTY_LOG_PAGE_OFFSET"] * PAGE_SIZE
    addr = vcpu.backend.mmap(vcpu.fd, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, offset)
    if addr < 0:
        raise OSError(-addr, f"mmap of the dirty ring ({ring_bytes} bytes at 0x{offset:x}) of {vcpu.label} failed: "
                             f"{errno_name(addr)}")
    stack.callback(vcpu.backend.munmap, addr, ring_bytes)
    return addr


def dirty_ring_entries(vcpu: Vcpu, ring: int, ring_bytes: int, first: int = 0) -> list[tuple[int, int, int]]:
    """The ring's entries (flags, slot, offset) from index `first`, up to the first whose
    flags are 0 (never pushed, or reset) or the ring's end."""
    gfn = vcpu.facts.structs["kvm_dirty_gfn"]
    data = vcpu.backend.memory.read(ring, ring_bytes)
    out = []
    for at in range(first * gfn.size, ring_bytes, gfn.size):
        e = gfn.unpack(data[at : at + gfn.size])
        if not e["flags"]:
            break
        out.append((e["flags"], e["slot"], e["offset"]))
    return out


def harvest_dirty_ring(vcpu: Vcpu, ring: int, count: int) -> None:
    """The first `count` entries of the ring marked KVM_DIRTY_GFN_F_RESET, as a VMM does
    once it has read them (their slot and offset kept)."""
    gfn, memory = vcpu.facts.structs["kvm_dirty_gfn"], vcpu.backend.memory
    reset = vcpu.facts.constants["KVM_DIRTY_GFN_F_RESET"]
    for at in range(ring, ring + count * gfn.size, gfn.size):
        e = gfn.unpack(memory.read(at, gfn.size))
        memory.write(at, gfn.pack({**e, "flags": reset}))


def reset_dirty_rings(vm: Vm) -> int:
    """KVM_RESET_DIRTY_RINGS: the number of entries it reset, checked."""
    return vm.checked("KVM_RESET_DIRTY_RINGS")


def set_coalesced_ring(vcpu: Vcpu, index: int) -> None:
    """first and last of the coalesced ring both set to `index` (an empty ring starting
    there), as the VMM may: KVM reads them from the shared page on every write."""
    facts = vcpu.facts
    at = vcpu.run_addr + facts.constants["KVM_COALESCED_MMIO_PAGE_OFFSET"] * PAGE_SIZE
    vcpu.backend.memory.write(at, facts.structs["kvm_coalesced_mmio_ring"].pack({"first": index, "last": index}))


def coalesced_ring(vcpu: Vcpu) -> tuple[int, int, list[dict[str, int]]]:
    """The coalesced MMIO ring at KVM_COALESCED_MMIO_PAGE_OFFSET of the vCPU's mapping:
    first, last and the entries from first up to last (each with `data` as one number)."""
    facts = vcpu.facts
    head, entry = facts.structs["kvm_coalesced_mmio_ring"], facts.structs["kvm_coalesced_mmio"]
    page = vcpu.backend.memory.read(vcpu.run_addr + facts.constants["KVM_COALESCED_MMIO_PAGE_OFFSET"] * PAGE_SIZE, PAGE_SIZE)
    ring = head.unpack(page[: head.size])
    room = (PAGE_SIZE - head.size) // entry.size  # KVM_COALESCED_MMIO_MAX
    entries: list[dict[str, int]] = []
    i = ring["first"]
    while i != ring["last"] and i < room and len(entries) < room:
        at = head.size + i * entry.size
        e = entry.unpack(page[at : at + entry.size])
        data = sum(e[f"data[{b}]"] << 8 * b for b in range(8))
        entries.append({"phys_addr": e["phys_addr"], "len": e["len"], "pio": e["pio"], "data": data})
        i = (i + 1) % room
    return ring["first"], ring["last"], entries


def register_zone(vm: Vm, zone: tuple[int, int, int]) -> None:
    """KVM_REGISTER_COALESCED_MMIO of (addr, size, pio), checked."""
    addr, size, pio = zone
    _checked_struct(vm, "KVM_REGISTER_COALESCED_MMIO", {"addr": addr, "size": size, "pio": pio})


def pre_fault(vcpu: Vcpu, gpa: int, size: int) -> tuple[int, dict[str, int]]:
    """KVM_PRE_FAULT_MEMORY of [gpa, gpa + size), repeated while it makes progress (as the
    selftest does): the last result and the range left."""
    left = {"gpa": gpa, "size": size, "flags": 0}
    while True:
        before = left["size"]
        r, left = vcpu.struct_call("KVM_PRE_FAULT_MEMORY", left)
        if r < 0 or not left["size"] or left["size"] == before:
            return r, left
