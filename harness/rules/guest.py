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
class ExpectRun:
    """Every exit of a program's run, in order, the dwords the VMM then reads at GPAs of
    shared pages (what the guest loaded or stored there), and the clause that decides the
    first exit that is not a plain step."""

    exits: tuple[ExpectExit, ...]
    memory: tuple[tuple[int, int], ...]
    rule: str
    clause: str


def guest_run(steps: Sequence[Step], pages: Mapping[int, Page], page_size: int, private_flag: int,
              mmio_reply: int) -> ExpectRun:
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
    """
    exits: list[ExpectExit] = []
    memory: list[tuple[int, int]] = []
    clause = "the program's steps run in memslot memory"
    loaded = 0
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
                fields = [("mmio.phys_addr", step.gpa), ("mmio.len", step.size), ("mmio.is_write", write)]
                if write:
                    fields.append(("mmio.data", step.value or 0))
                exits.append(ExpectExit("KVM_EXIT_MMIO", 0, tuple(fields)))
                loaded = mmio_reply
                clause = "an access to a GPA in no memslot exits KVM_EXIT_MMIO with the address, length and direction"
                if page.in_slot:
                    memory.append((step.gpa, page.data))  # the store did not reach the slot's memory
                    clause = "a store to a KVM_MEM_READONLY slot exits KVM_EXIT_MMIO and leaves the memory as it was"
                continue
            loaded = (step.value or 0) if write else page.data
            if not page.private:
                memory.append((step.gpa, loaded))  # shared: the VMM sees it where it maps the slot
        elif step.op == "out":
            value = loaded if step.value is None else step.value
            exits.append(ExpectExit("KVM_EXIT_IO", 0, (("io.direction", IO_OUT), ("io.size", step.size),
                                                       ("io.port", step.port), ("io.count", 1), ("io.data", value))))
        elif step.op == "hlt":
            exits.append(ExpectExit("KVM_EXIT_HLT"))
    return ExpectRun(tuple(exits), tuple(memory), "guest_run", clause)


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
