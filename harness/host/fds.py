"""Objects for `/dev/kvm`, a VM and a guest_memfd, and the two ways to issue an ioctl.

`raw()` returns the result or the negative errno (the KVM selftests' `__vm_ioctl`);
`checked()` raises an `IoctlError` that names the ioctl, the fd and the errno by name
(`vm_ioctl`). Every fd object closes itself: use them in `with` blocks.
"""

from __future__ import annotations

import ctypes
import os
from types import TracebackType

from harness.abi.facts import AbiFacts
from harness.host.backend import Backend, describe, errno_name


class IoctlError(OSError):
    """A checked ioctl failed; the message says which, on what fd, and why."""


def ioctl_label(facts: AbiFacts, number: int) -> str:
    """The ioctl's name for a number, or its decoded parts when no name has it."""
    for io in facts.ioctls.values():
        if io.number == number:
            return io.name
    direction, type_, nr, size = facts.encoding.decode(number)
    return f"ioctl 0x{number:08x} ({direction.macro}(0x{type_:x}, 0x{nr:x}, size {size}))"


class KvmFd:
    """An fd of one of KVM's kinds, closed on exit or by `close()` (idempotent)."""

    kind = "fd"

    def __init__(self, backend: Backend, facts: AbiFacts, fd: int, label: str) -> None:
        self.backend = backend
        self.facts = facts
        self.fd = fd
        self.label = label

    def raw(self, number: int, arg: int = 0) -> int:
        return self.backend.ioctl(self.fd, number, arg)

    def checked(self, name: str, arg: int = 0) -> int:
        r = self.backend.ioctl(self.fd, self.facts.ioctls[name].number, arg)
        if r < 0:
            raise IoctlError(-r, f"{name} on {self.label} failed: {errno_name(r)}")
        return r

    def call(self, name: str, arg: int = 0) -> int:
        """`raw` by name: the number comes from the ABI facts."""
        return self.backend.ioctl(self.fd, self.facts.ioctls[name].number, arg)

    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION at this fd's scope; the raw answer (a negative errno if refused)."""
        return self.raw(self.facts.ioctls["KVM_CHECK_EXTENSION"].number, cap)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.backend.close(fd)

    def __enter__(self) -> KvmFd:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            self.close()

    def __repr__(self) -> str:
        return f"<{self.label} fd={self.fd}>"


class Kvm(KvmFd):
    """/dev/kvm (or the device given with --kvm-device)."""

    kind = "system"

    @classmethod
    def open(cls, backend: Backend, facts: AbiFacts, path: str) -> Kvm:
        return cls(backend, facts, backend.open(path), path)

    def create_vm(self, vm_type: int = 0) -> Vm:
        r = self.call("KVM_CREATE_VM", vm_type)
        if r < 0:
            raise IoctlError(-r, f"KVM_CREATE_VM(type {vm_type}) on {self.label} failed: {errno_name(r)}")
        return Vm(self.backend, self.facts, r, vm_label(vm_type), vm_type)

    def __enter__(self) -> Kvm:
        return self


def vm_label(vm_type: int) -> str:
    return f"a VM of type {vm_type}"


class Vm(KvmFd):
    """A VM fd; knows its type for messages and per-type expectations."""

    kind = "vm"

    def __init__(self, backend: Backend, facts: AbiFacts, fd: int, label: str, vm_type: int) -> None:
        super().__init__(backend, facts, fd, label)
        self.vm_type = vm_type

    def adopt_guest_memfd(self, fd: int, size: int, flags: int) -> GuestMemfd:
        """Wrap an fd that KVM_CREATE_GUEST_MEMFD returned so it gets closed."""
        return GuestMemfd(self.backend, self.facts, fd, f"a guest_memfd of {self.label}", size, flags)

    def create_guest_memfd(self, size: int, flags: int = 0) -> GuestMemfd:
        struct = self.facts.structs["kvm_create_guest_memfd"]
        arg = struct.ctype()
        arg.size, arg.flags = size, flags
        r = self.checked("KVM_CREATE_GUEST_MEMFD", ctypes.addressof(arg))
        return self.adopt_guest_memfd(r, size, flags)

    def __enter__(self) -> Vm:
        return self


class GuestMemfd(KvmFd):
    """A guest_memfd: a file whose size and flags were fixed at creation."""

    kind = "guest_memfd"

    def __init__(self, backend: Backend, facts: AbiFacts, fd: int, label: str, size: int, flags: int) -> None:
        super().__init__(backend, facts, fd, label)
        self.size = size
        self.flags = flags

    def fstat(self) -> os.stat_result:
        return self.backend.fstat(self.fd)

    def __enter__(self) -> GuestMemfd:
        return self


__all__ = ["GuestMemfd", "IoctlError", "Kvm", "KvmFd", "Vm", "describe", "ioctl_label", "vm_label"]
