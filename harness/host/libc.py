"""libc through ctypes: the system calls of the kernel backend and of user memory.

ioctl is the suite's hot path (`kvmconf bench` measures it against C), so it is bound
apart, each choice worth a tenth of a call or more (see `_ioctl`).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

libc = ctypes.CDLL(None)
_errno_location = libc.__errno_location
_errno_location.restype = ctypes.POINTER(ctypes.c_int)
_MAP_FAILED = ctypes.c_void_p(-1).value


def last_errno() -> int:
    """errno of the calling thread, read straight after a failed libc call.

    Functions bound without `use_errno` leave errno alone, and CPython restores
    errno around taking the GIL, so the value is the failed call's own.
    """
    return int(_errno_location().contents.value)


def _fn(name: str, restype: type, argtypes: list[type] | None) -> Any:
    fn = getattr(libc, name)
    fn.restype = restype
    if argtypes is not None:
        fn.argtypes = argtypes
    return fn


# ioctl is the suite's hot path (`kvmconf bench` measures it against C), so it is bound
# apart, each choice worth a tenth of a call or more:
# - no argtypes: ctypes' per-argument converters cost more than the call itself;
# - use_errno: ctypes saves errno in C right after the call, which is exact, and
#   `get_errno()` is cheaper than calling __errno_location from Python on a failure;
# - PyDLL: the GIL stays held through the call. Dropping and retaking it costs as much
#   as the kernel's own work for a cheap ioctl, the harness runs one thread per process,
#   and the KVM ioctls it makes return within milliseconds (none runs a vCPU).
# The request goes as an int (the kernel reads `unsigned int cmd`).
_ioctl = ctypes.PyDLL(None, use_errno=True).ioctl
_ioctl.restype = ctypes.c_int
_get_errno = ctypes.get_errno
_as_word = ctypes.c_void_p.from_param  # an int as a full 64-bit argument, no ctypes object built
_C_INT_MIN, _C_INT_MAX = -(1 << 31), (1 << 31) - 1
_read = _fn("read", ctypes.c_ssize_t, [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t])
_write = _fn("write", ctypes.c_ssize_t, [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t])
_pread = _fn("pread", ctypes.c_ssize_t, [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64])
_pwrite = _fn("pwrite", ctypes.c_ssize_t, [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64])
_mmap = _fn("mmap", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64])
_munmap = _fn("munmap", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t])
_mprotect = _fn("mprotect", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])
_fallocate = _fn("fallocate", ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64])


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_readv = _fn("readv", ctypes.c_ssize_t, [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_int])
_preadv = _fn("preadv", ctypes.c_ssize_t, [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_int, ctypes.c_int64])
_lseek = _fn("lseek", ctypes.c_int64, [ctypes.c_int, ctypes.c_int64, ctypes.c_int])
_ftruncate = _fn("ftruncate", ctypes.c_int, [ctypes.c_int, ctypes.c_int64])
_fchmod = _fn("fchmod", ctypes.c_int, [ctypes.c_int, ctypes.c_uint])
_fcntl = _fn("fcntl", ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_long])
_madvise = _fn("madvise", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])
_syscall = _fn("syscall", ctypes.c_long, None)
SYS_MBIND, SYS_GET_MEMPOLICY = 237, 239  # x86_64; glibc wraps neither (libnuma does)


def _mbind(addr: int, length: int, mode: int, nodemask: int, maxnode: int, flags: int) -> int:
    return int(_syscall(ctypes.c_long(SYS_MBIND), ctypes.c_ulong(addr), ctypes.c_ulong(length), ctypes.c_ulong(mode),
                        ctypes.c_ulong(nodemask), ctypes.c_ulong(maxnode), ctypes.c_ulong(flags)))


def _get_mempolicy(policy: int, nodemask: int, maxnode: int, addr: int, flags: int) -> int:
    return int(_syscall(ctypes.c_long(SYS_GET_MEMPOLICY), ctypes.c_ulong(policy), ctypes.c_ulong(nodemask),
                        ctypes.c_ulong(maxnode), ctypes.c_ulong(addr), ctypes.c_ulong(flags)))


def _ret(r: int) -> int:
    return r if r >= 0 else -last_errno()


def mmap_anon(length: int, prot: int) -> int:
    """Private anonymous memory for the harness's own buffers; raises on failure."""
    addr = _mmap(None, length, prot, 0x22, -1, 0)  # MAP_PRIVATE | MAP_ANONYMOUS
    if addr is None or addr == _MAP_FAILED:
        err = last_errno()
        raise OSError(err, f"mmap of {length} bytes: {os.strerror(err)}")
    return int(addr)


def mprotect(addr: int, length: int, prot: int) -> None:
    if _mprotect(addr, length, prot) != 0:
        err = last_errno()
        raise OSError(err, f"mprotect: {os.strerror(err)}")


def munmap(addr: int, length: int) -> int:
    return _ret(_munmap(addr, length))


