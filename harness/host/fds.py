"""Objects for `/dev/kvm`, a VM, a vCPU and a guest_memfd, and the one way to issue an ioctl.

`raw()` returns the result or the negative errno (the KVM selftests' `__vm_ioctl`);
`checked()` raises an `IoctlError` that names the ioctl, the fd and the errno by name
(`vm_ioctl`); `struct_call()` sends a struct built from the ABI facts through the
backend's user memory. Every fd object closes itself: use them in `with` blocks.
`open_kind` is the one place that opens an fd of each `FdKind` for a case.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import ExitStack
from types import TracebackType

from harness.abi.errnos import errno_name
from harness.abi.facts import AbiFacts
from harness.abi.fdkind import FdKind, vm_label
from harness.abi.linux import MAP_SHARED, PROT_READ, PROT_WRITE
from harness.host.backend import Backend


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

    kind = FdKind.SYSTEM

    def __init__(self, backend: Backend, facts: AbiFacts, fd: int, label: str) -> None:
        self.backend = backend
        self.facts = facts
        self.fd = fd
        self.label = label

    def raw(self, number: int, arg: int = 0) -> int:
        return self.backend.ioctl(self.fd, number, arg)

    def call(self, name: str, arg: int = 0) -> int:
        """`raw` by name: the number comes from the ABI facts."""
        return self.backend.ioctl(self.fd, self.facts.ioctls[name].number, arg)

    def checked(self, name: str, arg: int = 0) -> int:
        r = self.call(name, arg)
        if r < 0:
            raise IoctlError(-r, f"{name} on {self.label} failed: {errno_name(r)}")
        return r

    def struct_call(self, name: str, values: Mapping[str, int]) -> tuple[int, dict[str, int]]:
        """`name` with its struct built from `values` (the rest zero) in the backend's
        user memory; the result and the struct as the kernel left it."""
        io = self.facts.ioctls[name]
        assert io.struct is not None, name
        struct = self.facts.structs[io.struct]
        with self.backend.memory.among_canaries(struct.pack(values)) as buf:
            r = self.raw(io.number, buf.addr)
            return r, struct.unpack(buf.read())

    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION at this fd's scope; the raw answer (a negative errno if refused)."""
        return self.call("KVM_CHECK_EXTENSION", cap)

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

    @classmethod
    def open(cls, backend: Backend, facts: AbiFacts, path: str) -> Kvm:
        return cls(backend, facts, backend.open(path), path)

    def create_vm(self, vm_type: int = 0) -> Vm:
        r = self.call("KVM_CREATE_VM", vm_type)
        if r < 0:
            raise IoctlError(-r, f"KVM_CREATE_VM(type {vm_type}) on {self.label} failed: {errno_name(r)}")
        return Vm(self.backend, self.facts, r, vm_label(vm_type), vm_type)

    def vcpu_mmap_size(self) -> int:
        """KVM_GET_VCPU_MMAP_SIZE: the length of a vCPU's `kvm_run` mapping."""
        return self.checked("KVM_GET_VCPU_MMAP_SIZE")

    def __enter__(self) -> Kvm:
        return self


class Vm(KvmFd):
    """A VM fd; knows its type for messages and per-type expectations."""

    kind = FdKind.VM

    def __init__(self, backend: Backend, facts: AbiFacts, fd: int, label: str, vm_type: int) -> None:
        super().__init__(backend, facts, fd, label)
        self.vm_type = vm_type

    def adopt_guest_memfd(self, fd: int, size: int, flags: int) -> GuestMemfd:
        """Wrap an fd that KVM_CREATE_GUEST_MEMFD returned so it gets closed."""
        return GuestMemfd(self.backend, self.facts, fd, FdKind.GUEST_MEMFD.label(self.vm_type), size, flags)

    def create_guest_memfd(self, size: int, flags: int = 0) -> GuestMemfd:
        r, _ = self.struct_call("KVM_CREATE_GUEST_MEMFD", {"size": size, "flags": flags})
        if r < 0:
            raise IoctlError(-r, f"KVM_CREATE_GUEST_MEMFD on {self.label} failed: {errno_name(r)} (size {size}, flags 0x{flags:x})")
        return self.adopt_guest_memfd(r, size, flags)

    def create_vcpu(self, vcpu_id: int, mmap_size: int) -> Vcpu:
        """KVM_CREATE_VCPU, and its `kvm_run` mapped shared (`mmap_size` from /dev/kvm)."""
        r = self.call("KVM_CREATE_VCPU", vcpu_id)
        if r < 0:
            raise IoctlError(-r, f"KVM_CREATE_VCPU(id {vcpu_id}) on {self.label} failed: {errno_name(r)}")
        vcpu = Vcpu(self.backend, self.facts, r, f"vCPU {vcpu_id} of {self.label}", vcpu_id)
        addr = self.backend.mmap(r, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, 0)
        if addr < 0:
            vcpu.close()
            raise IoctlError(-addr, f"mmap of kvm_run ({mmap_size} bytes) of {vcpu.label} failed: {errno_name(addr)}")
        vcpu.run_addr, vcpu.run_size = addr, mmap_size
        return vcpu

    def __enter__(self) -> Vm:
        return self


class Vcpu(KvmFd):
    """A vCPU fd with its `kvm_run` mapping, unmapped when it closes."""

    kind = FdKind.VCPU

    def __init__(self, backend: Backend, facts: AbiFacts, fd: int, label: str, vcpu_id: int) -> None:
        super().__init__(backend, facts, fd, label)
        self.vcpu_id = vcpu_id
        self.run_addr = 0
        self.run_size = 0

    def close(self) -> None:
        if self.run_addr:
            addr, self.run_addr = self.run_addr, 0
            self.backend.munmap(addr, self.run_size)
        super().close()

    def __enter__(self) -> Vcpu:
        return self


class GuestMemfd(KvmFd):
    """A guest_memfd: a file whose size and flags were fixed at creation."""

    kind = FdKind.GUEST_MEMFD

    def __init__(self, backend: Backend, facts: AbiFacts, fd: int, label: str, size: int, flags: int) -> None:
        super().__init__(backend, facts, fd, label)
        self.size = size
        self.flags = flags

    def fstat(self) -> os.stat_result:
        return self.backend.fstat(self.fd)

    def __enter__(self) -> GuestMemfd:
        return self


def open_kind(stack: ExitStack, kvm: Kvm, kind: FdKind, vm_type: int, gmem_size: int, gmem_flags: int = 0) -> tuple[Vm, KvmFd]:
    """A fresh VM and the fd of `kind` a case calls (closed with `stack`): the VM itself,
    its vCPU 0, a guest_memfd of `gmem_size` bytes, or /dev/kvm."""
    vm = stack.enter_context(kvm.create_vm(vm_type))
    fd: KvmFd
    match kind:
        case FdKind.SYSTEM:
            fd = kvm
        case FdKind.VM:
            fd = vm
        case FdKind.VCPU:
            fd = stack.enter_context(vm.create_vcpu(0, kvm.vcpu_mmap_size()))
        case FdKind.GUEST_MEMFD:
            fd = stack.enter_context(vm.create_guest_memfd(gmem_size, gmem_flags))
    return vm, fd


__all__ = ["GuestMemfd", "IoctlError", "Kvm", "KvmFd", "Vcpu", "Vm", "ioctl_label", "open_kind"]
