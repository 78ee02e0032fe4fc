"""The guest_memfd file itself: fstat, read and write, mmap and fallocate, and calls on
its mapping: madvise, mbind, and host accesses that fault.

Cases here go through the backend's file calls, not ioctls; the rules for them live
in `harness.rules` like every other expected answer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from harness.abi.fdkind import FdKind
from harness.abi.linux import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FIONREAD,
    MADV_DONTNEED,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MPOL_DEFAULT,
    MPOL_F_ADDR,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    SEEK_SET,
    as_s64,
)
from harness.cases.case import Case
from harness.rules import (
    Expect,
    guest_memfd_fallocate,
    guest_memfd_io,
    guest_memfd_madvise,
    guest_memfd_mbind,
    guest_memfd_mmap,
    guest_memfd_touch,
)
from harness.session.engine import GMEM_PAGES, Outcome
from harness.session.target import Target


def run_file_case(t: Target, case: Case) -> Outcome:
    """Create a guest_memfd of GMEM_PAGES pages with the case's flags and make one call."""
    t.require_vm(case.vm_type)
    t.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, case.vm_type)
    gmem_flags = int(case.knob("gmem_flags", 0) or 0)
    if gmem_flags:
        t.require_cap("KVM_CAP_GUEST_MEMFD_FLAGS", case.vm_type, bits=gmem_flags)
    values = dict(case.values)
    call = case.surface.split()[-1]
    if call in MAPPING_CALLS:
        t.require_symbol("GUEST_MEMFD_FLAG_MMAP")
    # test_collapse maps a guest_memfd of one PMD at a PMD-aligned address
    size = pmd_size(t) if call == "madvise" else GMEM_PAGES * t.page
    with ExitStack() as stack:
        vm = stack.enter_context(t.vm(case.vm_type))
        gmem = stack.enter_context(vm.create_guest_memfd(size, gmem_flags))
        if case.knob("vm") == "closed":
            vm.close()  # the file keeps its VM alive (kvm_gmem_create takes a reference)
        b = t.backend
        if case.knob("punched") is not None:  # the case's range punched first, then its own call
            r = b.fallocate(gmem.fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, values.get("offset", 0), values.get("len", t.page))
            assert r == 0, f"{case.id}: punching the range first answered {r}"
        expect: Expect
        if call == "fallocate":
            mode, offset, length = values.get("mode", 0), values.get("offset", 0), values.get("len", t.page)
            expect = guest_memfd_fallocate(mode, offset, length, size, t.page)
            result = b.fallocate(gmem.fd, mode, as_s64(offset), as_s64(length))
        elif call == "mmap":
            prot = values.get("prot", PROT_READ | PROT_WRITE)
            flags = values.get("map", MAP_SHARED)
            length, offset = values.get("length", size), values.get("offset", 0)
            t.require_symbol("GUEST_MEMFD_FLAG_MMAP")
            expect = guest_memfd_mmap(gmem_flags, flags, prot, t.facts.const("GUEST_MEMFD_FLAG_MMAP"), length)
            result = b.mmap(gmem.fd, length, prot, flags, offset)
            if result >= 0:
                b.munmap(result, length)
                result = 0
        elif call in MAPPING_CALLS:
            expect, result, trace = MAPPING_CALLS[call](t, stack, gmem.fd, values, case, size)
            full = {**values, "gmem_flags": gmem_flags}
            return Outcome(case, case.surface, case.where, full, expect, result, trace=trace)
        elif call == "FIONREAD":
            buf = stack.enter_context(b.memory.among_canaries(bytes(4)))
            expect = guest_memfd_io(call)
            result = gmem.raw(FIONREAD, buf.addr)
        else:
            offset = values.get("offset", 0)
            expect = guest_memfd_io(call, offset)
            result = _other_call(t, stack, gmem.fd, call, offset)
    full = {**values, "gmem_flags": gmem_flags}
    return Outcome(case, case.surface, case.where, full, expect, result)


FILL = 0xAA  # what a writing access stores, as the selftest's memset
NODEMASK_BITS = 64  # the selftest's maxnode: BITS_PER_TYPE(unsigned long)
Mapped = tuple[Expect, int, str | None]  # the rule, the call's answer, what else is wrong


def pmd_size(t: Target) -> int:
    """The host's THP PMD size, or 512 pages (x86's) where it has no THP."""
    return t.plan.host.pmd_size or t.page << 9


def _map(t: Target, stack: ExitStack, fd: int, length: int, align: int = 0) -> int:
    """A MAP_SHARED read-write mapping of the file from offset 0, unmapped on exit; at an
    address aligned to `align`, inside a reservation twice that size, when asked."""
    b = t.backend
    addr = 0
    if align:
        reserved = b.mmap(-1, 2 * align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, 0)
        assert reserved >= 0, f"reserving {2 * align:#x} bytes answered {reserved}"
        stack.callback(b.munmap, reserved, 2 * align)
        addr = -(-reserved // align) * align
    mem = b.mmap(fd, length, PROT_READ | PROT_WRITE, MAP_SHARED | (MAP_FIXED if align else 0), 0, addr)
    assert mem >= 0, f"mmap of the guest_memfd answered {mem}"
    if not align:
        stack.callback(b.munmap, mem, length)
    return mem


def _madvise(t: Target, stack: ExitStack, fd: int, values: dict[str, int], case: Case, size: int) -> Mapped:
    """test_collapse: read every page in, advise, then the whole mapping reads again (a
    forked child's reads: a refault that failed would be its SIGBUS, not ours)."""
    b, advice = t.backend, values["advice"]
    mem = _map(t, stack, fd, size, align=size)
    b.memory.read(mem, size)  # reads populate the page tables and leave no page dirty
    expect = guest_memfd_madvise(advice, t.plan.host.pmd_size)
    result = b.madvise(mem, size, advice)
    signal = b.touch(mem, size, -1)
    trace = None if signal == 0 else f"after madvise, reading the mapping ended by signal {signal}: it must refault"
    if advice == MADV_DONTNEED and trace is None and b.memory.read(mem, 1) != b"\0":
        trace = "after MADV_DONTNEED the first byte refaulted other than zero"
    return expect, result, trace


def _mbind(t: Target, stack: ExitStack, fd: int, values: dict[str, int], case: Case, size: int) -> Mapped:
    """test_mbind: a policy over the first two pages, read back with get_mempolicy(MPOL_F_ADDR)."""
    b, mode = t.backend, values["mode"]
    memory = t.plan.host.memory_nodes
    nodes = {"node0": 1, "none": 0, "without-memory": (memory + 1) & ~memory}[str(case.knob("nodes"))]
    mem = _map(t, stack, fd, size)
    mask = stack.enter_context(b.memory.among_canaries(nodes.to_bytes(8, "little")))
    expect = guest_memfd_mbind(mode, nodes, memory)
    result = b.mbind(mem, 2 * t.page, mode, mask.addr, NODEMASK_BITS, 0)
    if result != 0:
        return expect, result, None
    policy = stack.enter_context(b.memory.among_canaries(bytes(4)))
    got = stack.enter_context(b.memory.among_canaries(bytes(8)))
    r = b.get_mempolicy(policy.addr, got.addr, NODEMASK_BITS, mem, MPOL_F_ADDR)
    seen = (int.from_bytes(policy.read(), "little"), int.from_bytes(got.read(), "little"))
    wanted = (mode, 0 if mode == MPOL_DEFAULT else nodes & memory)
    trace = None if r == 0 and seen == wanted else (
        f"get_mempolicy(MPOL_F_ADDR) answered {r} with mode and nodes {seen}, not the {wanted} mbind set")
    return expect, result, trace


def _touch(t: Target, stack: ExitStack, fd: int, values: dict[str, int], case: Case, size: int) -> Mapped:
    """test_fault_sigbus: a forked child reads or writes a range of the mapping; the
    parent sees the signal it ended by, and reads back what it wrote before the fault."""
    b = t.backend
    start, count = values.get("start", 0), values.get("count", size)
    mem = _map(t, stack, fd, values.get("length", size))
    shared = bool(int(case.knob("gmem_flags", 0) or 0) & t.facts.const("GUEST_MEMFD_FLAG_INIT_SHARED"))
    fault = guest_memfd_touch(start, count, size, shared)
    write = case.knob("access") == "write"
    signal = b.touch(mem + start, count, FILL if write else -1)
    expect = Expect(0, "guest_memfd touch rules", fault.clause)
    if signal != fault.signal:
        return expect, signal, f"the access ended by signal {signal}, not {fault.signal}: {fault.clause}"
    written = (fault.at if fault.at is not None else start + count) - start
    if write and written > 0 and b.memory.read(mem + start, written) != bytes([FILL]) * written:
        return expect, signal, f"the {written} bytes written before the fault do not read back"
    return expect, signal, None


MAPPING_CALLS: dict[str, Callable[[Target, ExitStack, int, dict[str, int], Case, int], Mapped]] = {
    "madvise": _madvise, "mbind": _mbind, "touch": _touch}


def _other_call(t: Target, stack: ExitStack, fd: int, call: str, offset: int) -> int:
    """read, write, their positioned and vectored kinds, lseek, ftruncate, fchmod: a page
    through a buffer among canaries where the call takes one."""
    b, page = t.backend, t.page
    buf = stack.enter_context(b.memory.among_canaries(bytes(page)))
    pos = as_s64(offset)
    calls: dict[str, Callable[[], int]] = {
        "read": lambda: b.read(fd, buf.addr, page),
        "write": lambda: b.write(fd, buf.addr, page),
        "pread": lambda: b.pread(fd, buf.addr, page, pos),
        "pwrite": lambda: b.pwrite(fd, buf.addr, page, pos),
        "readv": lambda: b.readv(fd, buf.addr, page),
        "preadv": lambda: b.preadv(fd, buf.addr, page, pos),
        "lseek": lambda: b.lseek(fd, pos, SEEK_SET),
        "ftruncate": lambda: b.ftruncate(fd, page),
        "fchmod": lambda: b.fchmod(fd, 0o644),
    }
    return calls[call]()

