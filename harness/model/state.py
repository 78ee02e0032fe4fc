"""The model's kernel state: VMs, guest_memfd files, memslots and attributes.

State is what makes "a rejected call leaves no trace" checkable against the model:
slots and fds exist only when a call succeeded, and the suite reads them back.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

from harness.abi.fdkind import FdKind
from harness.abi.linux import PAGE_SIZE


class Ranges:
    """Attributes per page index as disjoint [start, end) spans; 0 (the default) is not
    stored, so a range as large as 2^52 pages costs one span, not one entry per gfn."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int, int]] = []

    def set(self, start: int, end: int, value: int) -> None:
        kept: list[tuple[int, int, int]] = []
        for s, e, v in self.spans:
            if e <= start or s >= end:
                kept.append((s, e, v))
                continue
            if s < start:
                kept.append((s, start, v))
            if e > end:
                kept.append((end, e, v))
        if value and end > start:
            kept.append((start, end, value))
        self.spans = sorted(kept)

    def at(self, index: int) -> int:
        """The attributes of one page."""
        return next((v for s, e, v in self.spans if s <= index < e), 0)


@dataclass(eq=False)
class VmState:
    """A VM: its type, whether it has private memory, its slots and its attributes."""

    type: int
    private: bool
    slots: dict[int, Slot] = field(default_factory=dict)  # by slot number (as_id << 16 | id)
    by_gpa: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # per address space: (gpa, slot number), sorted
    attributes: Ranges = field(default_factory=Ranges)
    vcpus: set[int] = field(default_factory=set)  # vCPU ids created
    dirty_ring: int = 0  # KVM_CAP_DIRTY_LOG_RING's size in bytes, once enabled
    ring_vcpus: list[VcpuState] = field(default_factory=list)  # the vCPUs whose dirty ring the VMM mapped
    manual_protect: int = 0  # KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's args[0], once enabled
    ioeventfds: list[tuple[bool, int, int, int | None, int | None]] = field(default_factory=list)  # (pio, addr, len, match, eventfd)
    irqchip: bool = False  # KVM_CREATE_IRQCHIP made one
    irqfds: set[int] = field(default_factory=set)  # the eventfds (inodes) that are irqfds
    zones: list[tuple[int, int, int]] = field(default_factory=list)  # coalesced zones: (addr, size, pio)
    max_vcpu_ids: int = 0  # kvm->arch.max_vcpu_ids: KVM_CAP_MAX_VCPU_ID enabled, or set by the first vCPU
    bsp_vcpu_id: int = 0  # kvm->arch.bsp_vcpu_id: KVM_SET_BOOT_CPU_ID's id
    disabled_quirks: int = 0  # kvm->arch.disabled_quirks: KVM_CAP_DISABLE_QUIRKS2's bits

    def add_slot(self, s: Slot, space: int) -> None:
        """A slot in `space`'s map (the slot's own address space, unless a mutant merges them)."""
        self.drop_slot(s.slot, space)
        self.slots[s.slot] = s
        bisect.insort(self.by_gpa.setdefault(space, []), (s.gpa, s.slot))

    def drop_slot(self, number: int, space: int) -> None:
        old = self.slots.pop(number, None)
        if old is not None:
            starts = self.by_gpa[space]
            del starts[bisect.bisect_left(starts, (old.gpa, number))]

    def overlapping(self, space: int, gpa: int, size: int, skip: int | None = None) -> bool:
        """kvm_check_memslot_overlap(): another slot of the space over [gpa, gpa + size),
        by bisection: the slots of a space never overlap, so only the last one starting
        before the range's end can reach into it (32764 slots per space stay cheap)."""
        starts = self.by_gpa.get(space, [])
        i = bisect.bisect_left(starts, (gpa + size, -1))
        for _, number in reversed(starts[max(i - 2, 0):i]):
            if number != skip:
                other = self.slots[number]
                return other.gpa + other.size > gpa
        return False


@dataclass(eq=False)
class GmemState:
    """A guest_memfd file: size and flags fixed at creation, owned by one VM."""

    vm: VmState
    size: int
    flags: int
    ino: int
    attributes: Ranges = field(default_factory=Ranges)
    pages: dict[int, bytearray] = field(default_factory=dict)  # contents of pages a guest wrote privately (others read zero)
    backing_fd: int = -1  # a memfd with the file's shared contents, made when first mapped or written
    policy: dict[int, tuple[int, int]] = field(default_factory=dict)  # page index → (mode, nodes) mbind set (the shared policy)

    def backing(self) -> int:
        if self.backing_fd < 0:
            self.backing_fd = os.memfd_create(f"model-guest_memfd-{self.ino}", os.MFD_CLOEXEC)
            os.ftruncate(self.backing_fd, self.size)
        return self.backing_fd

    def read(self, offset: int, size: int) -> bytes:
        """Shared contents at a file offset (zero where never written)."""
        return os.pread(self.backing_fd, size, offset) if self.backing_fd >= 0 else bytes(size)

    def write(self, offset: int, data: bytes) -> None:
        os.pwrite(self.backing(), data, offset)

    def punch(self, offset: int, length: int) -> None:
        """FALLOC_FL_PUNCH_HOLE: the range's pages are gone, shared and private; they read zero."""
        first, end = offset // PAGE_SIZE, (offset + length) // PAGE_SIZE
        for index in [i for i in self.pages if first <= i < end]:
            del self.pages[index]
        if self.backing_fd >= 0:
            stop = min(offset + length, self.size)
            if stop > offset:
                os.pwrite(self.backing_fd, bytes(stop - offset), offset)

    def close(self) -> None:
        if self.backing_fd >= 0:
            os.close(self.backing_fd)
            self.backing_fd = -1


@dataclass(eq=False)
class Slot:
    """A memslot, bound to a guest_memfd range when `gmem` is set."""

    slot: int
    flags: int
    gpa: int
    size: int
    uaddr: int
    gmem: GmemState | None = None
    offset: int = 0
    dirty: int = 0  # the dirty bitmap (bit n: page n) of a slot with KVM_MEM_LOG_DIRTY_PAGES

    def overlaps_file(self, gmem: GmemState, offset: int, size: int) -> bool:
        return self.gmem is gmem and self.offset < offset + size and offset < self.offset + self.size


@dataclass(eq=False)
class VcpuState:
    """A vCPU: the registers a program starts from, its kvm_run mapping, and how far its
    program has got (the step to run next, the value last loaded, an MMIO load waiting
    for the VMM's data), and its dirty ring."""

    id: int
    regs: dict[str, int] = field(default_factory=lambda: {"rip": 0xFFF0, "rflags": 0x2})
    sregs: dict[str, int] = field(default_factory=lambda: {"cs.base": 0xFFFF0000, "cs.selector": 0xF000,
                                                           "cs.limit": 0xFFFF, "cs.type": 0xB, "cs.present": 1,
                                                           "cs.s": 1, "cr0": 0x60000010})
    cpuid_entries: int = 0
    run_addr: int = 0
    step: int = 0
    loaded: int = 0
    mmio_load: bool = False
    dirty_ring_addr: int = 0  # where the VMM mapped the vCPU's dirty ring (0: not mapped)
    dirty_index: int = 0  # the entries pushed into it
    reset_index: int = 0  # the entries KVM_RESET_DIRTY_RINGS reset


@dataclass(eq=False)
class Handle:
    """What an fd the model handed out refers to."""

    kind: FdKind
    vm: VmState | None = None
    gmem: GmemState | None = None
    vcpu: VcpuState | None = None
