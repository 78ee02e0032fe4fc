"""User memory in the executor's address space, laid out as harness.host.usermem lays it
out locally: the same placements, the same `Diff`, other hands.

At connect time the backend reserves an arena at a fixed address (PROT_NONE, no memory
behind it) with a hole below it that stays unmapped. A placement takes a slot of the
arena, so its address is known on the host at once and its setup (map, fill with
canaries, copy the struct in, protect the guard page) is queued to travel with the call
that uses it; closing it queues the slot's re-reservation. Only `diff()` and `read()`
wait for an answer. The arena sits far below where the kernel puts mappings it chooses
(top-down from the stack), so neither the arena nor the hole is taken by an `mmap` of
a guest_memfd or a vCPU's `kvm_run`.
"""

from __future__ import annotations

import mmap as _mmap
from types import TracebackType
from typing import TYPE_CHECKING

from harness.abi.linux import PAGE_SIZE
from harness.host.usermem import CANARY, Diff, changes
from harness.remote.protocol import Op

if TYPE_CHECKING:
    from harness.remote.backend import RemoteBackend

ARENA_BASE = 0x10_0000_0000  # 64 GiB
ARENA_BYTES = 1 << 30
HOLE_BYTES = 1 << 20  # just below the arena: certainly not mapped
PROT_NONE = 0
RW = _mmap.PROT_READ | _mmap.PROT_WRITE
MAP_PRIVATE_ANON = 0x22
MAP_FIXED = 0x10
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000
_RESERVE = MAP_PRIVATE_ANON | MAP_FIXED | MAP_NORESERVE


class RemoteMemory:
    """The `memory` of a RemoteBackend: placements, raw reads and writes, allocations."""

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend
        self.page = backend.hello.page_size
        self._next = ARENA_BASE
        self._free: dict[int, list[int]] = {}
        hole = ARENA_BASE - HOLE_BYTES
        # fails at once (EEXIST) rather than silently replacing whatever is there
        backend.later(Op.MMAP, hole, HOLE_BYTES + ARENA_BYTES, PROT_NONE,
                      MAP_PRIVATE_ANON | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0,
                      what=f"reserving the placement arena at 0x{hole:x}")
        backend.later(Op.MUNMAP, hole, HOLE_BYTES, what="unmapping the hole below the arena")
        backend.flush()

    def alloc(self, length: int, prot: int) -> int:
        """`length` bytes (rounded up to pages) of private memory; mapped with the next call."""
        length = self._round(length)
        free = self._free.get(length)
        if free:
            addr = free.pop()
        else:
            addr, self._next = self._next, self._next + length
            if self._next > ARENA_BASE + ARENA_BYTES:
                raise MemoryError(f"the executor's placement arena ({ARENA_BYTES >> 20} MiB) is full")
        self.backend.later(Op.MMAP, addr, length, prot, MAP_PRIVATE_ANON | MAP_FIXED, -1, 0,
                           what=f"mapping {length} bytes at 0x{addr:x}")
        return addr

    def free(self, addr: int, length: int) -> None:
        length = self._round(length)
        self.backend.later(Op.MMAP, addr, length, PROT_NONE, _RESERVE, -1, 0, what=f"freeing 0x{addr:x}")
        self._free.setdefault(length, []).append(addr)

    def read(self, addr: int, n: int) -> bytes:
        """The executor's bytes at `addr`; OSError (EFAULT) where it cannot read them."""
        answer = self.backend.one(Op.PEEK, addr, n, what=f"reading {n} bytes at 0x{addr:x}")
        if answer.result < 0:
            raise OSError(-answer.result, f"reading {n} bytes at 0x{addr:x} in the executor failed")
        return answer.data

    def write(self, addr: int, data: bytes) -> None:
        """Queued: carried out before the next call."""
        self.backend.later(Op.POKE, addr, data=bytes(data), what=f"writing {len(data)} bytes at 0x{addr:x}")

    def protect(self, addr: int, length: int, prot: int) -> None:
        self.backend.later(Op.MPROTECT, addr, length, prot, what=f"mprotect of 0x{addr:x}")

    def fill(self, addr: int, length: int, byte: int) -> None:
        self.backend.later(Op.FILL, addr, length, byte, what=f"filling 0x{addr:x}")

    def at_guard(self, data: bytes, overhang: int = 0) -> RemotePlacement:
        """`data` ending on the last byte before a PROT_NONE page (`overhang` bytes into it)."""
        return RemotePlacement(self, data, overhang=overhang)

    def among_canaries(self, data: bytes, readonly: bool = False) -> RemotePlacement:
        """`data` with canary bytes on both sides (optionally read-only) to catch stray writes."""
        return RemotePlacement(self, data, guard=False, readonly=readonly)

    def unmapped(self, length: int = PAGE_SIZE) -> int:
        """An address range of the executor's that is certainly not mapped: in the hole."""
        if length > HOLE_BYTES:
            raise ValueError(f"an unmapped range is at most {HOLE_BYTES} bytes")
        return ARENA_BASE - HOLE_BYTES

    def _round(self, length: int) -> int:
        return max(1, -(-length // self.page)) * self.page


class RemotePlacement:
    """One struct in a slot of its own, as usermem.Placement lays it out; closes itself."""

    def __init__(self, memory: RemoteMemory, data: bytes, *, overhang: int = 0, guard: bool = True,
                 readonly: bool = False) -> None:
        if overhang < 0 or overhang > len(data):
            raise ValueError("overhang must be between 0 and the struct's size")
        page = memory.page
        self.memory = memory
        self.data = bytes(data)
        self.size = len(data)
        self.overhang = overhang
        self.data_pages = max(1, -(-(self.size + page) // page))
        self.length = (self.data_pages + 1) * page
        self.base = memory.alloc(self.length, RW)
        memory.fill(self.base, self.length, CANARY)
        guard_start = self.base + self.data_pages * page
        self.addr = guard_start - self.size + overhang if guard else self.base + page // 2
        self.visible = self.size - overhang if guard else self.size
        memory.write(self.addr, self.data[:self.visible])
        start = self.addr - self.base
        before = bytearray([CANARY]) * (self.data_pages * page)
        before[start:start + self.visible] = self.data[:self.visible]
        self._before = bytes(before)
        if guard:
            memory.protect(guard_start, page, PROT_NONE)
        if readonly:
            memory.protect(self.base, self.data_pages * page, _mmap.PROT_READ)

    def read(self) -> bytes:
        """The struct's accessible bytes as they are now."""
        return self.memory.read(self.addr, self.visible)

    def diff(self) -> Diff:
        start = self.addr - self.base
        return changes(self._before, self.memory.read(self.base, len(self._before)), start, start + self.visible)

    def close(self) -> None:
        if self.base:
            self.memory.free(self.base, self.length)
            self.base = 0

    def __enter__(self) -> RemotePlacement:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
