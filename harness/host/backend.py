"""Backends: what answers the harness's system calls.

The kernel backend issues real system calls on this machine's `/dev/kvm`. Every
backend has the same surface, so the suites run unchanged against any of them. Calls
return a non-negative result or a negative errno, as the kernel's own handlers do:
nothing is raised on the fast path, and errno is exact.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Sequence
from typing import Protocol

from harness.abi.errnos import describe, errno_name
from harness.abi.linux import U64
from harness.host.libc import (
    _C_INT_MAX,
    _C_INT_MIN,
    _MAP_FAILED,
    Iovec,
    _as_word,
    _fallocate,
    _fchmod,
    _fcntl,
    _ftruncate,
    _get_errno,
    _get_mempolicy,
    _ioctl,
    _lseek,
    _madvise,
    _mbind,
    _mmap,
    _pread,
    _preadv,
    _pwrite,
    _read,
    _readv,
    _ret,
    _write,
    last_errno,
    munmap,
)
from harness.host.limits import host_limits
from harness.host.usermem import LocalMemory, UserMemory
from harness.rules import HostLimits


class Backend(Protocol):
    """The system calls the harness makes on KVM fds."""

    name: str
    is_model: bool  # the model answers: it knows the profiles' model-only cap numbers

    def open(self, path: str) -> int: ...
    def ioctl(self, fd: int, request: int, arg: int) -> int: ...
    def ioctls(self, calls: Sequence[tuple[int, int, int]]) -> list[int]:
        """Many ioctls (fd, request, argument) in order, each answered as `ioctl`: one
        round trip for a remote backend, so a case of thousands of calls fits a guest."""
    def close(self, fd: int) -> None: ...
    def fstat(self, fd: int) -> os.stat_result: ...
    def read(self, fd: int, addr: int, length: int) -> int: ...
    def write(self, fd: int, addr: int, length: int) -> int: ...
    def pread(self, fd: int, addr: int, length: int, offset: int) -> int: ...
    def pwrite(self, fd: int, addr: int, length: int, offset: int) -> int: ...
    def mmap(self, fd: int, length: int, prot: int, flags: int, offset: int, addr: int = 0) -> int: ...
    def munmap(self, addr: int, length: int) -> int: ...
    def madvise(self, addr: int, length: int, advice: int) -> int: ...
    def mbind(self, addr: int, length: int, mode: int, nodemask: int, maxnode: int, flags: int) -> int: ...
    def get_mempolicy(self, policy: int, nodemask: int, maxnode: int, addr: int, flags: int) -> int: ...
    def touch(self, addr: int, length: int, fill: int) -> int:
        """In a forked child, write the byte `fill` over [addr, addr + length) (read it
        when `fill` < 0): the signal that ended the child, 0 when it got through. A fault
        the mapping answers with SIGBUS kills the child, not the caller."""
    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> int: ...
    def readv(self, fd: int, addr: int, length: int) -> int: ...
    def preadv(self, fd: int, addr: int, length: int, offset: int) -> int: ...
    def lseek(self, fd: int, offset: int, whence: int) -> int: ...
    def ftruncate(self, fd: int, length: int) -> int: ...
    def fchmod(self, fd: int, mode: int) -> int: ...
    def fcntl(self, fd: int, cmd: int, arg: int) -> int: ...
    def eventfd(self) -> int:
        """A new eventfd (counter 0, close-on-exec), for the ioctls that take one."""
    def open_fds(self) -> set[int]:
        """The fds open where the calls run, to see what a call left behind."""
    @property
    def memory(self) -> UserMemory:
        """Where structs and buffers for this backend's calls are placed."""
    def limits(self) -> HostLimits:
        """The machine's own bounds for memslot rules, read where the calls run."""


class KernelBackend:
    """The running kernel, through libc."""

    name = "kernel"
    is_model = False
    memory: UserMemory = LocalMemory()

    def open(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        # An argument that fits a C int (caps, types, flags) goes as a bare int: libffi
        # sign-extends it to the full register, the 64 bits c_ulong(arg) would give. A wider
        # one (a pointer) goes as a pointer-sized word, since ctypes cuts a bare int to 32
        # bits without a word; masked to 64 bits as c_ulong would (from_param turns a
        # wider int into NULL).
        r: int = _ioctl(fd, request, arg if _C_INT_MIN <= arg <= _C_INT_MAX else _as_word(arg & U64))
        return r if r >= 0 else -_get_errno()

    def ioctls(self, calls: Sequence[tuple[int, int, int]]) -> list[int]:
        return [self.ioctl(fd, request, arg) for fd, request, arg in calls]

    def close(self, fd: int) -> None:
        os.close(fd)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def read(self, fd: int, addr: int, length: int) -> int:
        return _ret(_read(fd, addr, length))

    def write(self, fd: int, addr: int, length: int) -> int:
        return _ret(_write(fd, addr, length))

    def pread(self, fd: int, addr: int, length: int, offset: int) -> int:
        return _ret(_pread(fd, addr, length, offset))

    def pwrite(self, fd: int, addr: int, length: int, offset: int) -> int:
        return _ret(_pwrite(fd, addr, length, offset))

    def mmap(self, fd: int, length: int, prot: int, flags: int, offset: int, addr: int = 0) -> int:
        at = _mmap(addr or None, length, prot, flags, fd, offset)
        if at is None or at == _MAP_FAILED:
            return -last_errno()
        return int(at)

    def munmap(self, addr: int, length: int) -> int:
        return munmap(addr, length)

    def madvise(self, addr: int, length: int, advice: int) -> int:
        return _ret(_madvise(addr, length, advice))

    def mbind(self, addr: int, length: int, mode: int, nodemask: int, maxnode: int, flags: int) -> int:
        return _ret(_mbind(addr, length, mode, nodemask, maxnode, flags))

    def get_mempolicy(self, policy: int, nodemask: int, maxnode: int, addr: int, flags: int) -> int:
        return _ret(_get_mempolicy(policy, nodemask, maxnode, addr, flags))

    def touch(self, addr: int, length: int, fill: int) -> int:
        return touch_in_child(addr, length, fill)

    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> int:
        return _ret(_fallocate(fd, mode, offset, length))

    def limits(self) -> HostLimits:
        return host_limits()

    def readv(self, fd: int, addr: int, length: int) -> int:
        return _ret(_readv(fd, Iovec(addr, length), 1))

    def preadv(self, fd: int, addr: int, length: int, offset: int) -> int:
        return _ret(_preadv(fd, Iovec(addr, length), 1, offset))

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        return _ret(_lseek(fd, offset, whence))

    def ftruncate(self, fd: int, length: int) -> int:
        return _ret(_ftruncate(fd, length))

    def fchmod(self, fd: int, mode: int) -> int:
        return _ret(_fchmod(fd, mode))

    def fcntl(self, fd: int, cmd: int, arg: int) -> int:
        return _ret(_fcntl(fd, cmd, arg))

    def eventfd(self) -> int:
        return os.eventfd(0, os.EFD_CLOEXEC)

    def open_fds(self) -> set[int]:
        listed = {int(n) for n in os.listdir("/proc/self/fd")}
        return {fd for fd in listed if is_open(fd)}  # not the listing's own fd, closed by now


def touch_in_child(addr: int, length: int, fill: int) -> int:
    """Backend.touch in this process: the child does nothing but the access and _exit."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGBUS, signal.SIG_DFL)
        if fill < 0:
            ctypes.string_at(addr, length)
        else:
            ctypes.memset(addr, fill, length)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0


def is_open(fd: int) -> bool:
    """Whether `fd` is an open fd of this process."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


__all__ = ["Backend", "KernelBackend", "describe", "errno_name"]
