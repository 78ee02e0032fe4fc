"""User memory laid out to show exactly which bytes the kernel reads and writes.

A struct placed so that it ends on the last byte before a PROT_NONE page can be read
in full, and not one byte more: a kernel that copies more than `sizeof` gets EFAULT.
Placed one byte further, its last byte is unreadable, so a kernel that copies all of
it must fail with EFAULT. Every other byte of the region holds a canary, so a write
outside the struct shows up afterwards. Page size comes from sysconf.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from harness.abi.linux import PAGE_SIZE, PROT_NONE, PROT_READ, PROT_WRITE
from harness.host.libc import mmap_anon, mprotect, munmap

CANARY = 0x5A


@dataclass(frozen=True)
class Diff:
    """What changed in a region after a call."""

    struct_bytes: tuple[int, ...]  # offsets inside the struct that the kernel wrote
    outside: tuple[int, ...]  # offsets relative to the struct's start, outside it

    @property
    def clean(self) -> bool:
        return not self.outside


def changes(before: bytes, after: bytes, start: int, end: int) -> Diff:
    """What differs between two copies of a region whose struct spans [start, end)."""
    if after == before:  # the common case, without a byte-by-byte walk
        return Diff((), ())
    inside: list[int] = []
    outside: list[int] = []
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        if a != b:
            (inside if start <= i < end else outside).append(i - start)
    return Diff(tuple(inside), tuple(outside))


class Placement:
    """One struct in a mapping of its own; closes (unmaps) itself."""

    base = 0  # set once mapped; close() and __del__ rely on it

    def __init__(self, data: bytes, *, overhang: int = 0, guard: bool = True, readonly: bool = False) -> None:
        if overhang < 0 or overhang > len(data):
            raise ValueError("overhang must be between 0 and the struct's size")
        self.data = bytes(data)
        self.size = len(data)
        self.overhang = overhang
        self.data_pages = max(1, -(-(self.size + PAGE_SIZE) // PAGE_SIZE))
        self.length = (self.data_pages + 1) * PAGE_SIZE
        self.base = mmap_anon(self.length, PROT_READ | PROT_WRITE)
        ctypes.memset(self.base, CANARY, self.length)
        guard_start = self.base + self.data_pages * PAGE_SIZE
        if guard:
            # the struct ends `overhang` bytes into the PROT_NONE page
            self.addr = guard_start - self.size + overhang
        else:
            # the struct sits mid-region, canaries on both sides, nothing unmapped near it
            self.addr = self.base + PAGE_SIZE // 2
        self.visible = self.size - overhang if guard else self.size
        ctypes.memmove(self.addr, self.data, self.visible)
        self._before = ctypes.string_at(self.base, self.data_pages * PAGE_SIZE)
        if guard:
            mprotect(guard_start, PAGE_SIZE, PROT_NONE)
        if readonly:
            mprotect(self.base, self.data_pages * PAGE_SIZE, PROT_READ)

    def read(self) -> bytes:
        """The struct's accessible bytes as they are now."""
        return ctypes.string_at(self.addr, self.visible)

    def diff(self) -> Diff:
        start = self.addr - self.base
        return changes(self._before, ctypes.string_at(self.base, self.data_pages * PAGE_SIZE), start, start + self.visible)

    def close(self) -> None:
        if self.base:
            munmap(self.base, self.length)
            self.base = 0

    def __enter__(self) -> Placement:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def at_guard(data: bytes, overhang: int = 0) -> Placement:
    """`data` ending on the last byte before a PROT_NONE page (`overhang` bytes into it)."""
    return Placement(data, overhang=overhang)


def among_canaries(data: bytes, *, readonly: bool = False) -> Placement:
    """`data` with canary bytes on both sides (optionally read-only) to catch stray writes."""
    return Placement(data, guard=False, readonly=readonly)


class Unmapped:
    """An address range that is certainly not mapped: reserved, then unmapped."""

    def __init__(self, length: int = PAGE_SIZE) -> None:
        self.length = length
        self.addr = mmap_anon(length, PROT_NONE)
        munmap(self.addr, length)


class Region(Protocol):
    """Placed user memory: its address, the struct's bytes now, what the kernel wrote."""

    addr: int

    def read(self) -> bytes: ...
    def diff(self) -> Diff: ...
    def close(self) -> None: ...
    def __enter__(self) -> Region: ...
    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None: ...


class UserMemory(Protocol):
    """User memory in the address space that makes the system calls: this process for
    the kernel and model backends, a guest's executor for a remote one."""

    def at_guard(self, data: bytes, overhang: int = 0) -> Region: ...
    def among_canaries(self, data: bytes, readonly: bool = False) -> Region: ...
    def unmapped(self, length: int = PAGE_SIZE) -> int: ...
    def read(self, addr: int, length: int) -> bytes:
        """Bytes at an address of memory the harness mapped (guest memory, kvm_run)."""
    def write(self, addr: int, data: bytes) -> None: ...


class LocalMemory:
    """User memory in this process."""

    def at_guard(self, data: bytes, overhang: int = 0) -> Placement:
        return at_guard(data, overhang)

    def among_canaries(self, data: bytes, readonly: bool = False) -> Placement:
        return among_canaries(data, readonly=readonly)

    def unmapped(self, length: int = PAGE_SIZE) -> int:
        return Unmapped(length).addr

    def read(self, addr: int, length: int) -> bytes:
        return ctypes.string_at(addr, length)

    def write(self, addr: int, data: bytes) -> None:
        ctypes.memmove(addr, data, len(data))
