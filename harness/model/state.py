"""The model's kernel state: VMs, guest_memfd files, memslots and attributes.

State is what makes "a rejected call leaves no trace" checkable against the model:
slots and fds exist only when a call succeeded, and the suite reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.abi.fdkind import FdKind


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


@dataclass(eq=False)
class VmState:
    """A VM: its type, whether it has private memory, its slots and its attributes."""

    type: int
    private: bool
    slots: dict[int, Slot] = field(default_factory=dict)  # by slot number (as_id << 16 | id)
    attributes: Ranges = field(default_factory=Ranges)
    vcpus: set[int] = field(default_factory=set)  # vCPU ids created
    dirty_ring: int = 0  # KVM_CAP_DIRTY_LOG_RING's size in bytes, once enabled
    ioeventfds: list[tuple[bool, int, int, int | None, int | None]] = field(default_factory=list)  # (pio, addr, len, match, eventfd)
    irqchip: bool = False  # KVM_CREATE_IRQCHIP made one
    irqfds: set[int] = field(default_factory=set)  # the eventfds (inodes) that are irqfds
    zones: list[tuple[int, int, int]] = field(default_factory=list)  # coalesced zones: (addr, size, pio)


@dataclass(eq=False)
class GmemState:
    """A guest_memfd file: size and flags fixed at creation, owned by one VM."""

    vm: VmState
    size: int
    flags: int
    ino: int
    attributes: Ranges = field(default_factory=Ranges)


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

    def overlaps_gpa(self, gpa: int, size: int) -> bool:
        return self.gpa < gpa + size and gpa < self.gpa + self.size

    def overlaps_file(self, gmem: GmemState, offset: int, size: int) -> bool:
        return self.gmem is gmem and self.offset < offset + size and offset < self.offset + self.size


@dataclass(eq=False)
class Handle:
    """What an fd the model handed out refers to."""

    kind: FdKind
    vm: VmState | None = None
    gmem: GmemState | None = None
