"""copy_from_user and copy_to_user for the model, on the caller's real memory.

`process_vm_readv`/`process_vm_writev` on our own pid touch exactly the bytes asked
for and fail with EFAULT where a page is unmapped, PROT_NONE or (for writes) read-only,
without faulting the process: the kernel's own copy semantics, so the sizing checks
(guard pages, canaries, read-only structs) mean the same against the model.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from harness.abi.linux import U64

_libc = ctypes.CDLL(None)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _bind(name: str) -> Any:
    fn = getattr(_libc, name)
    fn.restype = ctypes.c_ssize_t
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.c_ulong]
    return fn


_readv = _bind("process_vm_readv")
_writev = _bind("process_vm_writev")


def copy_from_user(addr: int, size: int) -> bytes | None:
    """The `size` bytes at `addr`, or None where any of them cannot be read (EFAULT)."""
    if size == 0:
        return b""
    if addr < 0 or addr + size - 1 > U64:
        return None
    buf = ctypes.create_string_buffer(size)
    local = _Iovec(ctypes.addressof(buf), size)
    remote = _Iovec(addr, size)
    n = _readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return buf.raw if n == size else None


def copy_to_user(addr: int, data: bytes) -> bool:
    """Write `data` at `addr`; False where any byte cannot be written (EFAULT)."""
    if not data:
        return True
    if addr < 0 or addr + len(data) - 1 > U64:
        return False
    buf = ctypes.create_string_buffer(data, len(data))
    local = _Iovec(ctypes.addressof(buf), len(data))
    remote = _Iovec(addr, len(data))
    return bool(_writev(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) == len(data))
