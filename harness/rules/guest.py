"""Effects seen from inside a guest: which exits a guest program's accesses give, from
the 7.3 source and Documentation/virt/kvm/api.rst.

A program is a list of steps (`harness.surfaces.guest_programs`); what a step sees
depends only on the page it touches: in a memslot or not, PRIVATE by the VM's memory
attributes or not, backed by a guest_memfd or not. The rule walks the steps and says
each exit KVM_RUN gives, with the kvm_run fields api.rst defines for it.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.abi.exits import Exit, show_field
from harness.abi.guest_programs import Step
from harness.rules.enable_cap import DIRTY_RING_RSVD_ENTRIES

IO_OUT = 1  # KVM_EXIT_IO_OUT


@dataclass(frozen=True)
class Page:
    """What the guest finds at a GPA: a memslot, private by attributes, a guest_memfd
    behind it, and the dword a load reads there."""

    in_slot: bool
    private: bool = False
    gmem: bool = False
    data: int = 0
    readonly: bool = False  # the slot has KVM_MEM_READONLY


@dataclass(frozen=True)
class ExpectExit:
    """One exit a rule predicts: the reason, KVM_RUN's errno (0: it returned 0) and the
    payload fields it fixes."""

    reason: str
    errno: int = 0
    fields: tuple[tuple[str, int], ...] = ()
    flag_names: str = ""  # memory_fault.flags by name

    def matches(self, seen: Exit) -> bool:
        if seen.reason != self.reason or (seen.result < 0) != bool(self.errno):
            return False
        if self.errno and seen.result != -self.errno:
            return False
        return all(seen.field(k) == v for k, v in self.fields)

    def __str__(self) -> str:
        rc = f"-{errno.errorcode[self.errno]} with " if self.errno else ""
        shown = " ".join(f"{k.split('.', 1)[-1]}={show_field(k, v)}" for k, v in self.fields)
        shown += f" ({self.flag_names})" if self.flag_names else ""
        return f"{rc}{self.reason}" + (f" {shown}" if shown else "")


@dataclass(frozen=True)
class Coalesced:
    """One entry of the coalesced MMIO ring (struct kvm_coalesced_mmio): the address or
    port written, the length, the zone's bus (pio 1: PIO) and the bytes, as a number."""

    phys_addr: int
    len: int
    pio: int
    data: int

    def __str__(self) -> str:
        return f"{'port' if self.pio else 'phys_addr'}=0x{self.phys_addr:x} len={self.len} pio={self.pio} data=0x{self.data:x}"


@dataclass(frozen=True)
class ExpectRun:
    """Every exit of a program's run, in order, the dwords the VMM then reads at GPAs of
    shared pages (what the guest loaded or stored there), the entries its writes left in
    the coalesced MMIO ring, and the clause that decides the first exit that is not a
    plain step."""

    exits: tuple[ExpectExit, ...]
    memory: tuple[tuple[int, int], ...]
    rule: str
    clause: str
    coalesced: tuple[Coalesced, ...] = ()


Zone = tuple[int, int, int]  # a coalesced zone as registered: (addr, size, pio)


def coalesced_zone(zones: Sequence[Zone], addr: int, size: int, pio: int) -> bool:
    """Whether a write of `size` bytes at `addr` on the bus `pio` names lies wholly in a
    registered zone: coalesced_mmio_in_range() takes [addr, addr + len) "fully included in
    (zone->addr, zone->size)" (coalesced_mmio.c:25-40), and kvm_io_bus_write() looks the
    device up on the bus of the access (MMIO for a store, PIO for `out`)."""
    return any(p == pio and a <= addr and addr + size <= a + n for a, n, p in zones)


def coalesced_max(page_size: int, ring_header: int, entry: int) -> int:
    """KVM_COALESCED_MMIO_MAX: the entries of the ring page after its header (kvm.h:549)."""
    return (page_size - ring_header) // entry


def guest_run(steps: Sequence[Step], pages: Mapping[int, Page], page_size: int, private_flag: int,
              mmio_reply: int, zones: Sequence[Zone] = (), room: int = 0) -> ExpectRun:
    """The exits of a program whose accesses see `pages` (by page-aligned GPA).

    - A load or store to a GPA in no memslot exits KVM_EXIT_MMIO with phys_addr, len and
      is_write (api.rst "KVM_EXIT_MMIO"); a load takes the data the VMM writes into
      mmio.data before the next KVM_RUN, a store carries its data.
    - An access to a page whose attributes are PRIVATE in a slot without a guest_memfd, or
      in no slot: KVM_RUN fails with EFAULT and exit_reason KVM_EXIT_MEMORY_FAULT, flags
      KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa the page, size PAGE_SIZE (a SW-protected VM's fault
      is private by the attributes, mmu.c:6597; kvm_mmu_faultin_pfn_gmem(), mmu.c:4631, and
      kvm_handle_noslot_fault(), mmu.c:3588; kvm_mmu_prepare_memory_fault_exit(),
      mmu_internal.h:333: gfn << PAGE_SHIFT, PAGE_SIZE); the vCPU does not go on.
    - A store to a KVM_MEM_READONLY slot is posted to userspace as KVM_EXIT_MMIO (api.rst
      "KVM_SET_USER_MEMORY_REGION": "writes to this memory will be posted to userspace as
      KVM_EXIT_MMIO exits"); a load reads the slot.
    - `out` exits KVM_EXIT_IO, direction OUT, with port, size, count 1 and the data;
      `hlt` without an in-kernel irqchip exits KVM_EXIT_HLT (x86.c kvm_emulate_halt()).
    - A store or `out` that lies wholly in a coalesced zone of its bus (`zones`) gives no
      exit: coalesced_mmio_write() puts phys_addr, len, the bytes and the zone's pio into
      the ring's entry `last` and advances `last` modulo KVM_COALESCED_MMIO_MAX
      (coalesced_mmio.c:71-76; `room`: that many entries), from wherever the VMM left
      first == last; a load is no write and exits as without the zone
      (the device has no read op).
    - The ring keeps one entry free: when `(last + 1) % KVM_COALESCED_MMIO_MAX == first`
      the write is not coalesced (coalesced_mmio.c:59-68) and exits KVM_EXIT_MMIO (or
      KVM_EXIT_IO) as without the zone.
    """
    exits: list[ExpectExit] = []
    memory: list[tuple[int, int]] = []
    coalesced: list[Coalesced] = []
    clause = "the program's steps run in memslot memory"
    loaded = 0

    full = "the coalesced ring keeps one entry free: a write into a zone of a full ring exits as without the zone"

    def coalesce(addr: int, size: int, pio: int, value: int) -> bool:
        nonlocal clause
        if not coalesced_zone(zones, addr, size, pio):
            return False
        if len(coalesced) + 1 >= room:  # (last + 1) % room == first
            clause = full
            return False
        coalesced.append(Coalesced(addr, size, pio, value))
        clause = f"a write wholly inside a coalesced {'PIO ' if pio else ''}zone is recorded in the ring, without an exit"
        return True

    for step in steps:
        if step.op in ("load", "store"):
            page = pages.get(step.gpa - step.gpa % page_size, Page(False))
            write = int(step.op == "store")
            if page.private and not page.gmem:
                exits.append(ExpectExit("KVM_EXIT_MEMORY_FAULT", errno.EFAULT, (
                    ("memory_fault.flags", private_flag), ("memory_fault.gpa", step.gpa - step.gpa % page_size),
                    ("memory_fault.size", page_size)), "KVM_MEMORY_EXIT_FLAG_PRIVATE"))
                clause = ("a private access with no guest_memfd behind it (a slot without one, or no slot): EFAULT with "
                          "KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_EXIT_FLAG_PRIVATE, the page's gpa and PAGE_SIZE")
                return ExpectRun(tuple(exits), tuple(memory), "guest_run", clause)
            if not page.in_slot or (write and page.readonly):
                if write and coalesce(step.gpa, step.size, 0, step.value or 0):
                    continue
                fields = [("mmio.phys_addr", step.gpa), ("mmio.len", step.size), ("mmio.is_write", write)]
                if write:
                    fields.append(("mmio.data", step.value or 0))
                exits.append(ExpectExit("KVM_EXIT_MMIO", 0, tuple(fields)))
                loaded = mmio_reply
                no_slot = "an access to a GPA in no memslot exits KVM_EXIT_MMIO with the address, length and direction"
                clause = full if clause == full else no_slot
                if page.in_slot:
                    memory.append((step.gpa, page.data))  # the store did not reach the slot's memory
                    clause = "a store to a KVM_MEM_READONLY slot exits KVM_EXIT_MMIO and leaves the memory as it was"
                continue
            loaded = (step.value or 0) if write else page.data
            if not page.private:
                memory.append((step.gpa, loaded))  # shared: the VMM sees it where it maps the slot
        elif step.op == "out":
            value = loaded if step.value is None else step.value
            if coalesce(step.port, step.size, 1, value):
                continue
            exits.append(ExpectExit("KVM_EXIT_IO", 0, (("io.direction", IO_OUT), ("io.size", step.size),
                                                       ("io.port", step.port), ("io.count", 1), ("io.data", value))))
        elif step.op == "hlt":
            exits.append(ExpectExit("KVM_EXIT_HLT"))
    return ExpectRun(tuple(exits), tuple(memory), "guest_coalesced_mmio" if zones else "guest_run", clause, tuple(coalesced))


def run_without_memslots(emulation: int) -> ExpectRun:
    """KVM_RUN of a vCPU at its reset state in a VM with no memslots: the first
    instruction fetch (0xfffffff0) has no memory behind it and cannot be emulated, so
    KVM_RUN exits KVM_EXIT_INTERNAL_ERROR with suberror KVM_INTERNAL_ERROR_EMULATION
    (set_memory_region_test.c test_zero_memory_regions(); x86.c handle_emulation_failure()
    → prepare_emulation_failure_exit())."""
    return ExpectRun((ExpectExit("KVM_EXIT_INTERNAL_ERROR", 0, (("internal.suberror", emulation),)),), (),
                     "run_without_memslots", "KVM_RUN with no memslots: KVM_EXIT_INTERNAL_ERROR, emulation failure")


def slot_page(memory: str, host_data: int) -> Page:
    """What the guest finds in the test slot, per setup: no slot ("none", or "deleted"
    after KVM_SET_USER_MEMORY_REGION2 with memory_size 0 removed it); plain memory
    holding what the VMM wrote ("shared"); PRIVATE by attributes without a guest_memfd
    ("private"), and then deleted ("private-deleted": attributes are the VM's, not the
    slot's); a guest_memfd-bound slot, PRIVATE ("gmem-private": a page the guest never
    wrote reads zero, kvm_gmem_prepare_folio() clears it, virt/kvm/guest_memfd.c) or
    shared (its shared accesses go through userspace_addr, mmu.c __kvm_mmu_faultin_pfn()); a
    guest_memfd with GUEST_MEMFD_FLAG_MMAP makes the slot guest_memfd-only (kvm_gmem_bind():
    KVM_MEMSLOT_GMEM_ONLY), so the guest reads what the VMM wrote through the file's mmap
    ("gmem-mmap"), and zero after FALLOC_FL_PUNCH_HOLE ("gmem-mmap-punched": the folio is
    truncated, a new one is cleared), in the mapping too. Converted PRIVATE and back to shared
    ("gmem-reshared"), the guest reads userspace_addr again (the attributes are all that
    decide, kvm_mem_is_private()). A KVM_MEM_READONLY slot ("readonly") holds what the VMM
    wrote. A slot deleted and added again over fresh anonymous memory ("recreated") reads
    that memory's zeros, not the old pages (set_memory_region_test.c test_delete_memory_region())."""
    pages = {
        "none": Page(False), "deleted": Page(False), "shared": Page(True, data=host_data),
        "private": Page(True, private=True), "private-deleted": Page(False, private=True),
        "gmem-private": Page(True, private=True, gmem=True, data=0), "gmem-shared": Page(True, gmem=True, data=host_data),
        "gmem-mmap": Page(True, gmem=True, data=host_data), "gmem-mmap-punched": Page(True, gmem=True, data=0),
        "gmem-reshared": Page(True, gmem=True, data=host_data), "readonly": Page(True, data=host_data, readonly=True),
        "recreated": Page(True, data=0),
    }
    return pages[memory]


def slot_pages(memory: str, host_data: int, gpa: int, npages: int, page_size: int) -> dict[int, Page]:
    """Every page of the test slot as `slot_page` says, by GPA: the VMM wrote `host_data`
    at the first page's start only, so a load elsewhere reads what the memory held. In
    "gmem-alternate" the VMM wrote it at every page's start, made the slot PRIVATE and
    then its odd pages shared again, each by its own call: each page follows its own
    attribute (kvm_mem_is_private() per gfn; private_mem_conversions_test.c:179-192), so
    the even pages read the guest_memfd's zeros and the odd ones the VMM's data."""
    if memory == "gmem-alternate":
        return {gpa + i * page_size: Page(True, private=not i % 2, gmem=True, data=host_data if i % 2 else 0)
                for i in range(npages)}
    return {gpa + i * page_size: slot_page(memory, host_data if i == 0 else 0) for i in range(npages)}


def attributes_after(accepted: bool, address: int, size: int, attributes: int, page_gpa: int, private_flag: int) -> bool:
    """Whether the page at `page_gpa` is PRIVATE after KVM_SET_MEMORY_ATTRIBUTES{,2} on a
    VM whose pages were all shared: only an accepted call changes attributes, and only
    over [address, address + size) (api.rst: "a rejected call leaves no trace")."""
    return accepted and address <= page_gpa < address + size and bool(attributes & private_flag)


def mismatch(expected: ExpectRun, seen: Sequence[Exit]) -> str | None:
    """The first exit that differs from the rule's, by position and name, or None."""
    for i, want in enumerate(expected.exits):
        got = seen[i] if i < len(seen) else None
        if got is None or not want.matches(got):
            return f"exit {i + 1} of {len(expected.exits)}: expected {want}, got {got if got else 'no further exit'}"
    if len(seen) > len(expected.exits):
        return f"exit {len(expected.exits) + 1}: expected none, got {seen[len(expected.exits)]}"
    return None


# -- dirty logging ---------------------------------------------------------------------------


def written_pages(steps: Sequence[Step], slot_gpa: int, npages: int, page_size: int, readonly: bool = False) -> tuple[int, ...]:
    """The pages of a slot a program stores to, as offsets in the slot, in program order;
    none in a KVM_MEM_READONLY slot: its stores exit KVM_EXIT_MMIO and never reach
    memory, so no SPTE becomes writable and nothing is marked (mmu.c kvm_handle_error_pfn():
    KVM_PFN_ERR_RO_FAULT is emulated as MMIO; arm64/page_fault_test.c:1046-1070)."""
    out: list[int] = []
    if readonly:
        return ()
    for step in steps:
        index = (step.gpa - slot_gpa) // page_size
        if step.op == "store" and 0 <= index < npages and index not in out:
            out.append(index)
    return tuple(out)


@dataclass(frozen=True)
class ExpectLog:
    """What each KVM_GET_DIRTY_LOG of a sequence returns (bit n: page n of the slot), and
    the clause that decides the last one."""

    bitmaps: tuple[int, ...]
    rule: str
    clause: str


def dirty_log(ops: Sequence[str], written: Sequence[int], npages: int, manual: bool, initially_set: bool) -> ExpectLog:
    """The dirty bitmap of a slot with KVM_MEM_LOG_DIRTY_PAGES through `ops` ("run": the
    program runs once; "get": KVM_GET_DIRTY_LOG; "clear <mask>": KVM_CLEAR_DIRTY_LOG of the
    whole slot with the bits of `mask`).

    - A guest write marks its page (mark_page_dirty_in_slot(), kvm_main.c:3594-3596, from
      make_spte() when the SPTE is writable, spte.c:293-296, or an emulated write), no
      other page of the slot.
    - Without manual protection GET returns the bits and clears them, write-protecting the
      pages, so the next write marks its page again (kvm_main.c:2305-2318); with
      KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, GET copies the bitmap and leaves it
      (kvm_main.c:2287-2297).
    - CLEAR clears exactly the bits set in its bitmap within [first_page, first_page +
      num_pages): `mask &= atomic_long_fetch_andnot(mask, p)` (kvm_main.c:2421).
    - With KVM_DIRTY_LOG_INITIALLY_SET too, a slot's new bitmap starts with every page set
      (kvm_main.c:1699-1700).
    """
    every = (1 << npages) - 1
    bits = every if manual and initially_set else 0
    marked = sum(1 << p for p in written)
    bitmaps: list[int] = []
    clause = "the pages the guest wrote, and no other"
    for op in ops:
        if op == "run":
            bits |= marked
        elif op == "get":
            bitmaps.append(bits)
            if not manual:
                bits = 0
                clause = "GET without manual protection clears what it returned: a later GET shows only later writes"
        else:
            mask = int(op.split()[1], 0)
            bits &= ~mask & every
            clause = "CLEAR clears exactly the bits of its bitmap; GET with manual protection leaves the rest"
    if manual and initially_set:
        clause = "with KVM_DIRTY_LOG_INITIALLY_SET every page starts dirty; " + clause
    return ExpectLog(tuple(bitmaps), "guest_dirty_log", clause)


def slot_ops(ops: Sequence[str], slot: int) -> tuple[str, ...]:
    """The steps of a sequence over several slots ("get <slot>", "clear <slot> <mask>",
    "run") that concern `slot`, as `dirty_log` takes them."""
    out: list[str] = []
    for op in ops:
        word, *rest = op.split()
        if word == "run":
            out.append(op)
        elif int(rest[0]) == slot:
            out.append(" ".join((word, *rest[1:])))
    return tuple(out)


def dirty_logs(ops: Sequence[str], written: Mapping[int, Sequence[int]], npages: int, manual: bool) -> ExpectLog:
    """The bitmaps of several logging slots through `ops`, in the order of their GETs: each
    slot's bitmap is its own, so a write marks only its slot, GET returns (and without
    manual protection resets) only the slot asked and CLEAR clears only that slot's bits
    (kvm_get_dirty_log_protect() and kvm_clear_dirty_log_protect() take
    id_to_memslot(slots, id)->dirty_bitmap, kvm_main.c:2277-2281, 2392-2396)."""
    per_slot = {slot: iter(dirty_log(slot_ops(ops, slot), pages, npages, manual, False).bitmaps)
                for slot, pages in written.items()}
    bitmaps = tuple(next(per_slot[int(op.split()[1])]) for op in ops if op.startswith("get"))
    clause = "each slot's bitmap is its own: a write marks its slot, GET and CLEAR of one slot leave the others"
    return ExpectLog(bitmaps, "guest_dirty_log", clause)


def dirty_ring(written: Sequence[int], slot: int, dirty_flag: int) -> tuple[tuple[int, int, int], ...]:
    """The entries (flags, slot, offset) a run leaves in the vCPU's dirty ring, in order:
    one per page the guest wrote, flagged KVM_DIRTY_GFN_F_DIRTY, naming the slot as
    as_id << 16 | id and the page's offset in it (kvm_main.c:3590-3594,
    kvm_dirty_ring_push(), dirty_ring.c:229-236); with a ring there is no bitmap."""
    return tuple((dirty_flag, slot, p) for p in written)


def dirty_ring_soft_limit(ring_bytes: int, gfn_size: int, cpu_dirty_log_size: int) -> int:
    """The entries a vCPU's dirty ring takes before the vCPU exits: its entries less the
    reserved ones, KVM_DIRTY_RING_RSVD_ENTRIES and what the CPU's own log (PML) may still
    push (kvm_dirty_ring_alloc(), dirty_ring.c:83; kvm_dirty_ring_get_rsvd_entries(), 19-21)."""
    return ring_bytes // gfn_size - DIRTY_RING_RSVD_ENTRIES - cpu_dirty_log_size


@dataclass(frozen=True)
class ExpectFill:
    """A run that fills a vCPU's dirty ring: the entries (flags, slot, offset) it holds at
    KVM_EXIT_DIRTY_RING_FULL, what KVM_RESET_DIRTY_RINGS returns once the VMM harvested them,
    and the entries the rest of the run may push after it (either)."""

    full: tuple[tuple[int, int, int], ...]
    reset: int
    rests: tuple[tuple[tuple[int, int, int], ...], ...]
    clause: str


def dirty_ring_fill(written: Sequence[int], slot: int, dirty_flag: int, soft_limit: int) -> ExpectFill:
    """The push that brings the ring's used entries to its soft limit requests
    KVM_REQ_DIRTY_RING_SOFT_FULL (dirty_ring.c:240-241); it is checked before the next
    guest entry, so KVM_RUN returns 0 with KVM_EXIT_DIRTY_RING_FULL (dirty_ring.c:253-258,
    x86.c:8076-8079) holding exactly soft_limit entries. KVM_RESET_DIRTY_RINGS resets the
    harvested (KVM_DIRTY_GFN_F_RESET) entries from reset_index on and returns their number
    (dirty_ring.c:138-150, kvm_main.c:5049-5059) and write-protects their pages again
    (dirty_ring.c:71); the vCPU then goes on, pushing the rest. The write that filled the ring
    may not have retired (its fault was fixed, the exit came before re-entry): it runs again
    and, its page protected again, pushes that page once more (dirty_log_test.c:531-538
    allows the last entry exactly this)."""
    entries = dirty_ring(written, slot, dirty_flag)
    clause = ("at the soft limit (entries less the reserved ones) KVM_RUN exits KVM_EXIT_DIRTY_RING_FULL; "
              "KVM_RESET_DIRTY_RINGS returns the harvested count and the vCPU resumes, pushing the rest "
              "(from the last harvested page, if its write had not retired)")
    full = entries[:soft_limit]
    return ExpectFill(full, len(full), (entries[soft_limit:], entries[len(full) - 1 :]), clause)
