"""The guest family: the vCPU-state ioctls a guest program needs (x86 registers,
segments, CPUID), and the tables of effect cases, whose outcome is the exits a guest
program gives (`harness.rules.guest`).

The vCPU-state ioctls take part in no generic table: they set up the guest, and what
they did is checked by every exit of the effect cases.
"""

from __future__ import annotations

from dataclasses import replace

from harness.abi.fdkind import FdKind
from harness.abi.guest_programs import LOG_SLOT, MMIO_GPA, OUT_PORT, PROGRAMS, TEST_GPA, TEST_PAGES, TEST_SLOT, Program
from harness.abi.linux import PAGE_SIZE
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.rules.guest import Zone
from harness.surfaces.base import Surface
from harness.surfaces.memory_attributes import NO_TRACE_TAG

SETUP_DOC = "vCPU state a guest program runs on: checked through the exits of the guest cases"
SURFACES = tuple(Surface(name, "guest", "guest_run", SETUP_DOC, tables=())
                 for name in ("KVM_GET_SUPPORTED_CPUID", "KVM_SET_CPUID2", "KVM_GET_REGS", "KVM_SET_REGS",
                              "KVM_GET_SREGS", "KVM_SET_SREGS"))
RULES = {
    "guest_run": "the exits of a guest program: MMIO outside memslots, memory faults on private pages, I/O, hlt",
    "run_without_memslots": "KVM_RUN with no memslots: KVM_EXIT_INTERNAL_ERROR",
    "guest_dirty_log": "a guest write marks exactly its page: in the bitmap (GET clears it unless manual protect, CLEAR "
                       "exactly the bits asked) or as a dirty-ring entry naming slot and offset",
    "guest_coalesced_mmio": "a guest write wholly inside a coalesced zone of its bus lands in the ring, without an exit",
    "guest_pre_fault": "after KVM_PRE_FAULT_MEMORY the guest's accesses see the slot's memory as without it",
}

# What the test slot is, for the programs that touch it; the others run with plain memory.
MEMORIES = ("shared", "none", "deleted", "private", "private-deleted", "gmem-shared", "gmem-private", "gmem-mmap", "gmem-mmap-punched",
            "gmem-reshared", "readonly", "recreated", "gmem-alternate")
LOAD_LOOP_REGS = {"rcx": TEST_PAGES, "rdi": TEST_GPA, "rsi": PAGE_SIZE}  # load-loop: the first dword of each test page


def guest_runs(t: Plan) -> list[Case]:
    """Every program with every kind of test slot it can touch, per VM type; a load of
    every test page with alternate pages PRIVATE; and KVM_RUN in a VM without memslots."""
    cases = []
    for vt in t.vm_types:
        for program in PROGRAMS.values():
            touches_test = any(s.op in ("load", "store") and s.gpa < 1 << 20 for s in program.steps)
            for memory in MEMORIES if touches_test else ("shared",):
                cases.append(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", program.name), ("memory", memory))))
        cases.append(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", "load-loop"), ("memory", "gmem-alternate"))))
        cases.append(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("memslots", "none"),)))
    return cases


def attribute_no_trace(t: Plan) -> list[Case]:
    """Every case of the memory-attribute tables on a VM fd (reserved words, flag bits,
    ranges), each followed by a guest load of the page the baseline names: after a
    rejected call the guest's access faults exactly as before it."""
    from harness.cases import tables  # the generic tables import the registry, which imports this module

    source = tables.reserved_words(t) + tables.flag_bits(t) + tables.attribute_ranges(t)
    return [replace(c, area="guest", tag=NO_TRACE_TAG) for c in source
            if c.surface in tables.ATTRIBUTE_IOCTLS and c.fd == FdKind.VM]


# Dirty logging: the programs that store into the test slot, and what the VMM does around
# them (`harness.rules.guest.dirty_log`): the KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 bits it enables
# (by constant name) and its steps; "ring" enables KVM_CAP_DIRTY_LOG_RING instead.
DIRTY_PROGRAMS = ("store-test", "store-page2", "store-pages-1-3")
EVERY_PAGE = (1 << TEST_PAGES) - 1
CLEAR_ALL = f"clear {EVERY_PAGE:#x}"
DIRTY_LOGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "get": ((), ("run", "get", "get", "run", "get")),
    "manual": (("KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE",),
               ("run", "get", "get", "clear 0x6", "get", CLEAR_ALL, "get", "run", "get")),
    "manual-init-set": (("KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE", "KVM_DIRTY_LOG_INITIALLY_SET"),
                        ("get", CLEAR_ALL, "get", "run", "get")),
}
DIRTY_RING = "ring"
# Two logging slots (TEST_SLOT and LOG_SLOT, side by side): store-loop writes page 2 of the
# first and page 1 of the second, and each step names its slot (`harness.rules.guest.dirty_logs`)
TWO_SLOT_REGS = {"rcx": 2, "rdi": TEST_GPA + 2 * PAGE_SIZE, "rsi": 3 * PAGE_SIZE}
T, L = TEST_SLOT, LOG_SLOT
TWO_SLOT_LOGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "two-slots-get": ((), ("run", f"get {T}", f"get {L}", f"get {T}", f"get {L}", "run", f"get {L}", f"get {T}")),
    "two-slots-manual": (("KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE",),
                         ("run", f"get {T}", f"get {L}", f"clear {T} {EVERY_PAGE:#x}", f"get {T}", f"get {L}",
                          f"clear {L} {EVERY_PAGE:#x}", f"get {L}", f"get {T}")),
}


RING_FILL_MORE = 8  # pages ring-full's loop writes past the soft limit: they go in after the reset


def guest_dirty_logs(t: Plan) -> list[Case]:
    """Each storing program under each way of collecting the dirty log, a store into a
    read-only logging slot, a loop storing into two logging slots, and one filling the dirty
    ring past its soft limit, per VM type."""
    return [*(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", p), ("dirty", mode)))
              for vt in t.vm_types for p in DIRTY_PROGRAMS for mode in (*DIRTY_LOGS, DIRTY_RING)),
            *(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", "store-test"), ("dirty", "get"), ("memory", "readonly")))
              for vt in t.vm_types),  # KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES: the store exits, nothing is marked
            *(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", "store-loop"), ("dirty", mode)))
              for vt in t.vm_types for mode in TWO_SLOT_LOGS),
            *(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", "store-loop"), ("dirty", "ring-full")))
              for vt in t.vm_types)]


def zone(name: str, page: int) -> Zone:
    """A coalesced zone by name, as registered: (addr, size, pio)."""
    return {
        "mmio-at": (MMIO_GPA, 8, 0),  # holds store-mmio's 4 bytes
        "mmio-short": (MMIO_GPA, 2, 0),  # holds only half of them
        "mmio-next-page": (MMIO_GPA + page, 8, 0),
        "pio-at": (OUT_PORT, 1, 1),  # holds out's byte
        "pio-dword": (OUT_PORT, 4, 1),  # holds an `out %eax`
        "mmio-at-port": (OUT_PORT, 1, 0),  # the port's number, on the MMIO bus
    }[name]


# each case pairs a program with a zone
COALESCED_RUNS = (("store-mmio", "mmio-at"), ("store-mmio", "mmio-short"), ("store-mmio", "mmio-next-page"),
                  ("load-mmio", "mmio-at"), ("out", "pio-at"), ("out", "mmio-at-port"))


ZONE_SETS = {"mmio-and-pio": ("mmio-at", "pio-dword")}  # zones registered together: one ring for both buses


def zones(name: str, page: int) -> tuple[Zone, ...]:
    """The zones a case registers: one, or a set of ZONE_SETS."""
    return tuple(zone(n, page) for n in ZONE_SETS.get(name, (name,)))


# loops writing into zones: (program, zones, count, first); a count "full" is KVM_COALESCED_MMIO_MAX
# passes (the ring fills, the last write exits), first is where the VMM sets first == last before
COALESCED_LOOPS = (("store-loop", "mmio-at", "full", "0"), ("store-loop", "mmio-at", "full", "1"),
                   ("store-loop", "mmio-at", "full", "middle"), ("store-loop", "mmio-at", "full", "last"),
                   ("out-loop", "pio-dword", "full", "0"), ("mixed-loop", "mmio-and-pio", "8", "0"),
                   ("mixed-loop", "mmio-and-pio", "8", "last"))
COALESCED_LOOP_REGS = {"rdi": MMIO_GPA, "rsi": 0, "rdx": OUT_PORT}  # every pass writes the zone's start


def ring_index(name: str, room: int) -> int:
    """A ring index by name: a number, "middle" or "last" of KVM_COALESCED_MMIO_MAX entries."""
    return {"middle": room // 2, "last": room - 1}.get(name) or int(name)


def loop_count(count: str, room: int) -> int:
    """A loop's rcx: a number, or "full": one pass per ring entry."""
    return room if count == "full" else int(count)


def guest_coalesced(t: Plan) -> list[Case]:
    """Programs writing (or reading) inside, across and beside a coalesced zone, and loops
    filling the ring from where the VMM set its indices, per VM type."""
    return [*(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", p), ("zone", z)))
              for vt in t.vm_types for p, z in COALESCED_RUNS),
            *(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", p), ("zone", z), ("count", n), ("first", f)))
              for vt in t.vm_types for p, z, n, f in COALESCED_LOOPS)]


PRE_FAULT_RUNS = (("load-test", "shared"), ("store-test", "shared"), ("load-test", "gmem-shared"),
                  ("load-test", "gmem-private"), ("load-mmio", "shared"))


def pre_fault_range(program: Program, page: int) -> tuple[int, int]:
    """What a case pre-faults before the program runs: the whole test slot when the program
    touches it, else the page of its first access (MMIO: in no memslot)."""
    gpa = next(s.gpa for s in program.steps if s.op in ("load", "store"))
    if TEST_GPA <= gpa < TEST_GPA + TEST_PAGES * page:
        return TEST_GPA, TEST_PAGES * page
    return gpa - gpa % page, page


def guest_pre_faults(t: Plan) -> list[Case]:
    """KVM_PRE_FAULT_MEMORY over what a program then touches, per VM type."""
    return [Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", p), ("memory", m), ("prefault", "touched")))
            for vt in t.vm_types for p, m in PRE_FAULT_RUNS]


TABLES = {"guest_runs": guest_runs, "attribute_no_trace": attribute_no_trace, "guest_dirty_logs": guest_dirty_logs,
          "guest_coalesced": guest_coalesced, "guest_pre_faults": guest_pre_faults}
