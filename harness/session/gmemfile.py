"""The guest_memfd file itself: fstat, read and write, mmap and fallocate.

Cases here go through the backend's file calls, not ioctls; the rules for them live
in `harness.rules` like every other expected answer.
"""

from __future__ import annotations

from contextlib import ExitStack

from harness.abi.fdkind import FdKind
from harness.abi.linux import MAP_SHARED, PROT_READ, PROT_WRITE, as_s64
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
        b = t.backend
        expect: Expect
        if call == "fallocate":
            mode, offset, length = values.get("mode", 0), values.get("offset", 0), values.get("len", t.page)
            expect = guest_memfd_fallocate(mode, offset, length, size, t.page)
            result = b.fallocate(gmem.fd, mode, as_s64(offset), as_s64(length))
        elif call == "mmap":
            prot = values.get("prot", PROT_READ | PROT_WRITE)
            flags = values.get("map", MAP_SHARED)
            t.require_symbol("GUEST_MEMFD_FLAG_MMAP")
            expect = guest_memfd_mmap(gmem_flags, flags, prot, t.facts.const("GUEST_MEMFD_FLAG_MMAP"))
            result = b.mmap(gmem.fd, size, prot, flags, 0)
            if result >= 0:
                b.munmap(result, size)
                result = 0
        else:
            buf = stack.enter_context(b.memory.among_canaries(bytes(t.page)))
            offset = values.get("offset", 0)
            expect = guest_memfd_io(call, offset)
            if call == "read":
                result = b.read(gmem.fd, buf.addr, t.page)
            elif call == "write":
                result = b.write(gmem.fd, buf.addr, t.page)
            elif call == "pread":
                result = b.pread(gmem.fd, buf.addr, t.page, as_s64(offset))
            else:
                result = b.pwrite(gmem.fd, buf.addr, t.page, as_s64(offset))
    full = {**values, "gmem_flags": gmem_flags}
    return Outcome(case, case.surface, case.where, full, expect, result)

