"""The guest_memfd file itself: fstat, read and write, mmap and fallocate.

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
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    SEEK_SET,
    as_s64,
)
from harness.cases.case import Case
from harness.rules import Expect, guest_memfd_fallocate, guest_memfd_io, guest_memfd_mmap
from harness.session.engine import GMEM_PAGES, Outcome
from harness.session.target import Target


def run_file_case(t: Target, case: Case) -> Outcome:
    """Create a guest_memfd of GMEM_PAGES pages with the case's flags and make one call."""
    t.require_vm(case.vm_type)
    t.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, case.vm_type)
    gmem_flags = int(case.knob("gmem_flags", 0) or 0)
    if gmem_flags:
        t.require_cap("KVM_CAP_GUEST_MEMFD_FLAGS", case.vm_type, bits=gmem_flags)
    size = GMEM_PAGES * t.page
    values = dict(case.values)
    call = case.surface.split()[-1]
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

