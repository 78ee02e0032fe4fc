"""User-memory placement: the struct ends exactly at the guard page (the kernel can
read all of it and not one byte more), overhang puts its last byte into PROT_NONE,
canaries catch writes outside it, read-only placement refuses writes. What is
readable is asked of the kernel (`process_vm_readv`, pipe reads), not of Python,
which would crash on a fault."""

from __future__ import annotations

import ctypes
import errno
import gc
import io
import mmap
import os
import sys
import tokenize
from pathlib import Path

import pytest

from harness.abi.errnos import errno_name
from harness.abi.linux import PAGE_SIZE
from harness.host.backend import KernelBackend
from harness.host.libc import last_errno, libc
from harness.host.usermem import CANARY, Placement, Unmapped, among_canaries, at_guard
from harness.paths import ROOT


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_readv = libc.process_vm_readv
_readv.restype = ctypes.c_ssize_t
_readv.argtypes = [ctypes.c_int, ctypes.POINTER(IoVec), ctypes.c_ulong, ctypes.POINTER(IoVec), ctypes.c_ulong, ctypes.c_ulong]


def readable(addr: int, length: int) -> bool:
    """Whether the kernel can copy `length` bytes from `addr` of this process."""
    buf = ctypes.create_string_buffer(length)
    local = IoVec(ctypes.addressof(buf), length)
    remote = IoVec(addr, length)
    n = _readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n == length:
        return True
    assert n >= 0 or last_errno() == errno.EFAULT, f"process_vm_readv: {errno_name(last_errno())}"
    return False


def kernel_write_into(addr: int, data: bytes) -> int:
    """Have the kernel write `data` at `addr` (read(2) from a pipe): the result or -errno."""
    r, w = os.pipe()
    try:
        os.write(w, data)
        return KernelBackend().read(r, addr, len(data))
    finally:
        os.close(r)
        os.close(w)


DATA = bytes(range(1, 33))  # a 32-byte struct, e.g. kvm_memory_attributes


def test_page_size_from_sysconf() -> None:
    """spec: page size from sysconf, never a literal."""
    assert PAGE_SIZE == os.sysconf("SC_PAGE_SIZE") == mmap.PAGESIZE


def test_at_guard_ends_at_the_guard_page() -> None:
    """The whole struct is readable and the next byte is not: a kernel that copies more faults."""
    with at_guard(DATA) as p:
        guard = p.base + p.data_pages * PAGE_SIZE
        assert p.addr + p.size == guard
        assert (p.length, p.visible, p.read()) == ((p.data_pages + 1) * PAGE_SIZE, 32, DATA)
        assert readable(p.addr, p.size)
        assert not readable(p.addr, p.size + 1)
        assert not readable(guard, 1)
        assert readable(guard - 1, 1)


def test_overhang_puts_the_last_byte_into_prot_none() -> None:
    """One byte past: a kernel that copies sizeof bytes must fail with EFAULT."""
    with at_guard(DATA, overhang=1) as p:
        guard = p.base + p.data_pages * PAGE_SIZE
        assert p.addr + p.size - 1 == guard
        assert readable(p.addr, p.size - 1) and not readable(p.addr, p.size)
        assert p.read() == DATA[:-1]


def test_struct_larger_than_a_page() -> None:
    """Placement works for structs that span pages too."""
    data = bytes([0xA5]) * (PAGE_SIZE + 100)
    with at_guard(data) as p:
        assert p.addr + p.size == p.base + p.data_pages * PAGE_SIZE
        assert p.addr >= p.base
        assert readable(p.addr, p.size) and not readable(p.addr, p.size + 1)
        assert p.read() == data


def test_canaries_around_the_struct() -> None:
    """Writes inside and outside the struct are told apart, by offset from its start."""
    with among_canaries(DATA) as p:
        assert readable(p.addr - 64, p.size + 128)  # no guard page near it
        assert ctypes.string_at(p.addr - 8, 8) == bytes([CANARY]) * 8
        assert ctypes.string_at(p.addr + p.size, 8) == bytes([CANARY]) * 8
        assert p.diff().clean and p.diff().struct_bytes == ()
        ctypes.memset(p.addr + 3, 0, 2)  # inside
        assert p.diff().struct_bytes == (3, 4) and p.diff().clean
        ctypes.memset(p.addr - 1, 0, 1)  # one byte before
        ctypes.memset(p.addr + p.size, 0, 1)  # one byte after
        d = p.diff()
        assert d.outside == (-1, p.size) and not d.clean


def test_at_guard_diff_sees_writes_before_the_struct() -> None:
    """At the guard page, canaries still cover the bytes before the struct."""
    with at_guard(DATA) as p:
        assert p.diff().clean
        assert kernel_write_into(p.addr - 4, b"\0\0\0\0") == 4
        assert p.diff().outside == (-4, -3, -2, -1)


def test_kernel_writes_are_seen() -> None:
    """A write by the kernel (copy_to_user) shows in diff like one from userspace."""
    with among_canaries(DATA) as p:
        assert kernel_write_into(p.addr + 30, b"\xee\xee\xee\xee") == 4
        d = p.diff()
        assert d.struct_bytes == (30, 31) and d.outside == (32, 33)


def test_readonly_placement() -> None:
    """A read-only struct: an _IOW ioctl that writes back would fault."""
    with among_canaries(DATA, readonly=True) as p:
        assert readable(p.addr, p.size) and p.read() == DATA
        assert kernel_write_into(p.addr, b"\0") == -errno.EFAULT
        assert p.diff().clean and p.diff().struct_bytes == ()


def _failed_placements() -> list[object]:
    """Placements refused for a bad overhang; what went to sys.unraisablehook meanwhile."""
    seen: list[object] = []
    old = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        for bad in (-1, len(DATA) + 1):
            with pytest.raises(ValueError, match="overhang"):
                Placement(DATA, overhang=bad)
        gc.collect()
    finally:
        sys.unraisablehook = old
    return seen


def test_overhang_bounds() -> None:
    """An overhang outside the struct is a harness misuse, refused."""
    _failed_placements()


def test_refused_placement_is_quiet() -> None:
    """A refused Placement must not print 'Exception ignored in __del__'."""
    assert _failed_placements() == []


def test_close_unmaps_once() -> None:
    """Placements free their mapping, and closing twice is harmless."""
    p = at_guard(DATA)
    addr = p.addr
    p.close()
    assert p.base == 0 and not readable(addr, 1)
    p.close()  # idempotent


def test_unmapped() -> None:
    """Unmapped gives an address that certainly faults, for the EFAULT cases."""
    u = Unmapped()
    assert u.length == PAGE_SIZE and not readable(u.addr, 1)
    assert Unmapped(3 * PAGE_SIZE).length == 3 * PAGE_SIZE



OTHERS = ("qemu", "model", "report")  # other engineers' parts, checked by their own tests


def _sources() -> list[Path]:
    files = [*ROOT.joinpath("harness").rglob("*.py"), *ROOT.joinpath("suites").rglob("*.py")]
    return [f for f in files if not any(part.startswith(OTHERS) for part in f.relative_to(ROOT).parts[1:])]


def test_no_page_size_literal() -> None:
    """spec: "page size from sysconf, never 4096 literal" in the harness and the suites."""
    assert PAGE_SIZE == os.sysconf("SC_PAGE_SIZE")
    found = []
    for path in _sources():
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type == tokenize.NUMBER and tok.string.lower() in ("4096", "0x1000", "4_096", "0x1_000"):
                found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}")
    assert not found, f"page size literal in {found}"
