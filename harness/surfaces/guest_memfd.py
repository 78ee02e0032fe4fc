"""KVM_CREATE_GUEST_MEMFD, and the calls on the guest_memfd file it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.rules import Expect, create_guest_memfd
from harness.surfaces.base import Ctx, FileCall, Port, Surface


@dataclass(frozen=True)
class CreateGuestMemfd(Surface):
    def why_not(self, ctx: Ctx) -> str | None:
        assert ctx.io.flags_cap is not None
        return ctx.plan.why_not_cap(ctx.io.flags_cap, ctx.case.vm_type)

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        return {"size": ctx.plan.page, "flags": 0}

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        assert ctx.io.flags_cap is not None
        return create_guest_memfd(values, ctx.struct, ctx.plan.caps.at(ctx.io.flags_cap, ctx.case.vm_type) or 0, ctx.plan.page)

    def after(self, ctx: Ctx, port: Port, values: Mapping[str, int], result: int) -> str | None:
        """The answer is a new fd of a file of the size asked for."""
        size = port.st_size(result)
        port.close(result)
        if isinstance(size, str):
            return f"KVM_CREATE_GUEST_MEMFD returned {result}, which is not an open fd: {size}"
        if size != values.get("size", ctx.plan.page):
            return f"KVM_CREATE_GUEST_MEMFD returned a guest_memfd of st_size {size}, not the size asked for"
        return None


SURFACES = (
    CreateGuestMemfd("KVM_CREATE_GUEST_MEMFD", "guest_memfd", "create_guest_memfd",
                     "KVM_CREATE_GUEST_MEMFD: advertised flags, signed size > 0 and aligned, reserved words zero"),
)

FILE_CALLS = (
    FileCall("guest_memfd fstat", "fstat", "fstat", "fstat of a guest_memfd: st_size the size asked for, st_blksize the page size"),
    FileCall("guest_memfd fallocate", "fallocate", "guest_memfd_fallocate",
             "fallocate on a guest_memfd: modes, alignment, allocation inside the file"),
    FileCall("guest_memfd mmap", "mmap", "guest_memfd_mmap", "mmap of a guest_memfd: noexec, GUEST_MEMFD_FLAG_MMAP, MAP_SHARED only"),
    *(FileCall(f"guest_memfd {c}", c, "guest_memfd_io",
               "read/write/readv EINVAL, pread/pwrite/preadv/lseek ESPIPE (EINVAL at a negative position), ftruncate/fchmod EINVAL")
      for c in ("read", "write", "pread", "pwrite", "readv", "preadv", "lseek", "ftruncate", "fchmod")),
    FileCall("guest_memfd madvise", "madvise", "guest_memfd_madvise",
             "madvise on a guest_memfd mapping: MADV_HUGEPAGE 0, MADV_COLLAPSE EINVAL, MADV_DONTNEED 0 and a refault"),
    FileCall("guest_memfd mbind", "mbind", "guest_memfd_mbind",
             "mbind and get_mempolicy on a guest_memfd mapping: modes, nodes with memory, the policy read back"),
    FileCall("guest_memfd touch", "touch", "guest_memfd_touch",
             "host access to a guest_memfd mapping: SIGBUS past i_size and on private pages"),
    FileCall("guest_memfd FIONREAD", "FIONREAD", "guest_memfd_io", "FIONREAD on a guest_memfd: ENOTTY (an anon inode)"),
    FileCall("fd flags", "fcntl", "close_on_exec", "the VM and vCPU fds are close-on-exec, a guest_memfd is not"),
)
