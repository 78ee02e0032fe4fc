"""Effects seen from inside a guest: a vCPU runs a program of
`harness.abi.guest_programs` and the exits it gives are the outcome, compared with
`harness.rules.guest`. The attribute tables' cases are here too, each followed by a guest
load that shows what the call left behind."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, replace
from typing import NoReturn

import pytest

from harness.abi.exits import Exit
from harness.abi.fdkind import FdKind
from harness.abi.guest_programs import (
    FILL_GPA,
    HOST_PATTERN,
    LOG_GPA,
    LOG_SLOT,
    MMIO_REPLY,
    PROGRAM_NAMED,
    TEST_GPA,
    TEST_PAGES,
    TEST_SLOT,
    Program,
    program_steps,
)
from harness.host import guest
from harness.host.fds import Vcpu
from harness.rules.enable_cap import dirty_ring_min_bytes
from harness.rules.guest import (
    ExpectRun,
    coalesced_max,
    dirty_log,
    dirty_logs,
    dirty_ring,
    dirty_ring_fill,
    dirty_ring_soft_limit,
    guest_run,
    mismatch,
    run_without_memslots,
    slot_pages,
    written_pages,
)
from harness.rules.prefault import PreFaultInput, pre_fault_left, pre_fault_memory
from harness.session.engine import Case, run_ioctl_case, verdict
from harness.session.target import Target
from harness.surfaces.dirty_log import RING_SIZE
from harness.surfaces.guest import (
    COALESCED_LOOP_REGS,
    DIRTY_LOGS,
    DIRTY_RING,
    LOAD_LOOP_REGS,
    RING_FILL_MORE,
    TWO_SLOT_LOGS,
    TWO_SLOT_REGS,
    loop_count,
    pre_fault_range,
    ring_index,
    zones,
)


def require_memory(target: Target, memory: str, vm_type: int) -> None:
    """What a test slot of this kind needs: guest_memfd, and PRIVATE in the VM's attributes."""
    if memory.startswith("gmem-"):
        target.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, vm_type)
    if memory.startswith("gmem-mmap"):
        shared = target.facts.const("GUEST_MEMFD_FLAG_MMAP") | target.facts.const("GUEST_MEMFD_FLAG_INIT_SHARED")
        target.require_cap("KVM_CAP_GUEST_MEMFD_FLAGS", vm_type, bits=shared)
    if memory.endswith(("private", "reshared", "private-deleted", "alternate")):
        target.require_ioctl("KVM_SET_MEMORY_ATTRIBUTES", FdKind.VM, vm_type)
        target.require_cap("KVM_CAP_MEMORY_ATTRIBUTES", vm_type, bits=target.facts.const("KVM_MEMORY_ATTRIBUTE_PRIVATE"))


@pytest.mark.cases("guest_runs")
def test_guest_run(target: Target, case: Case) -> None:
    """The program's exits, in order, are the rule's; what it stored is in the slot's memory."""
    target.require_vm(case.vm_type)
    facts = target.facts
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(case.vm_type))
        if case.knob("memslots") == "none":
            vm.checked("KVM_SET_NR_MMU_PAGES", 64)  # as the selftest: a shadow MMU has no pages without memslots
            vcpu = stack.enter_context(vm.create_vcpu(0, target.kvm.vcpu_mmap_size()))
            expected = run_without_memslots(facts.const("KVM_INTERNAL_ERROR_EMULATION"))
            what, uaddr = "its reset state", 0
        else:
            program, memory = PROGRAM_NAMED[str(case.knob("program"))], str(case.knob("memory"))
            require_memory(target, memory, case.vm_type)
            uaddr = guest.set_test_slot(stack, vm, memory, HOST_PATTERN)
            gprs = LOAD_LOOP_REGS if program.loop else {}
            vcpu = guest.boot(stack, target.kvm, vm, program, gprs)
            expected = expect_run(target, program, memory, (), gprs)
            what = f"program {program.name} ({program.asm}) with a {memory} test slot"
        seen = guest.run(vcpu)
        problem = mismatch(expected, seen) or memory_problem(target, expected, uaddr)
    if problem:
        fail(vcpu, what, problem, expected, seen)


def expect_run(target: Target, program: Program, memory: str, registered: tuple[tuple[int, int, int], ...] = (),
               gprs: dict[str, int] | None = None) -> ExpectRun:
    """The rule's run of `program` (with `gprs`) over a test slot of kind `memory` holding
    HOST_PATTERN, with the coalesced zones `registered`."""
    pages = slot_pages(memory, HOST_PATTERN, TEST_GPA, TEST_PAGES, target.page)
    return guest_run(program_steps(program, gprs or {}), pages, target.page, target.facts.const("KVM_MEMORY_EXIT_FLAG_PRIVATE"),
                     MMIO_REPLY, registered, coalesced_room(target))


def coalesced_room(target: Target) -> int:
    """KVM_COALESCED_MMIO_MAX, from the ring's structs."""
    structs = target.facts.structs
    return coalesced_max(target.page, structs["kvm_coalesced_mmio_ring"].size, structs["kvm_coalesced_mmio"].size)


def memory_problem(target: Target, expected: ExpectRun, uaddr: int) -> str | None:
    """The first dword the VMM's mapping of the test slot holds other than the guest saw."""
    for gpa, value in expected.memory:
        got = int.from_bytes(target.backend.memory.read(uaddr + gpa - TEST_GPA, 4), "little")
        if got != value:
            return f"the guest saw 0x{value:x} at GPA 0x{gpa:x}; the VMM's mapping of the slot holds 0x{got:x}"
    return None


def fail(vcpu: Vcpu, what: str, problem: str, expected: ExpectRun, seen: list[Exit]) -> NoReturn:
    pytest.fail(f"KVM_RUN on {vcpu.label} running {what}: {problem}\n"
                f"  rule:   {expected.rule}: {expected.clause}\n"
                f"  exits:  {'; '.join(map(str, seen))}", pytrace=False)


@pytest.mark.cases("guest_dirty_logs")
def test_guest_dirty_log(target: Target, case: Case) -> None:
    """A program's stores into a slot with KVM_MEM_LOG_DIRTY_PAGES mark exactly their pages:
    each KVM_GET_DIRTY_LOG of the mode's steps returns the rule's bitmap, or the vCPU's dirty
    ring holds the rule's entries."""
    vt, facts = case.vm_type, target.facts
    target.require_vm(vt)
    program, mode = PROGRAM_NAMED[str(case.knob("program"))], str(case.knob("dirty"))
    if mode in TWO_SLOT_LOGS:
        two_slot_dirty_log(target, case, program, mode)
        return
    if mode == "ring-full":
        ring_full(target, case, program)
        return
    protect, ops = DIRTY_LOGS.get(mode, ((), ("run",)))
    bits = sum(facts.const(c) for c in protect)
    if mode == DIRTY_RING:
        target.require_cap("KVM_CAP_DIRTY_LOG_RING", vt)
    else:
        target.require_ioctl("KVM_GET_DIRTY_LOG", FdKind.VM, vt)
        target.require_ioctl("KVM_CLEAR_DIRTY_LOG", FdKind.VM, vt)
    if bits:
        target.require_cap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", vt, bits=bits)
    memory = str(case.knob("memory", "shared"))
    written = written_pages(program.steps, TEST_GPA, TEST_PAGES, target.page, memory == "readonly")
    expected_run = replace(expect_run(target, program, memory), rule="guest_dirty_log")
    what = f"program {program.name} ({program.asm}) with a {memory} logging test slot ({mode})"
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(vt))
        if mode == DIRTY_RING:
            guest.enable_cap(vm, "KVM_CAP_DIRTY_LOG_RING", RING_SIZE)
        if bits:
            guest.enable_cap(vm, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", bits)
        guest.set_test_slot(stack, vm, memory, HOST_PATTERN, facts.const("KVM_MEM_LOG_DIRTY_PAGES"))
        vcpu = guest.boot(stack, target.kvm, vm, program)
        ring = guest.map_dirty_ring(stack, vcpu, RING_SIZE) if mode == DIRTY_RING else 0
        seen: list[Exit] = []
        got: list[int] = []
        for op in ops:
            if op == "run":
                if seen:
                    guest.rerun(vcpu)
                seen = guest.run(vcpu)
                problem = mismatch(expected_run, seen)
                if problem:
                    fail(vcpu, what, problem, expected_run, seen)
            elif op == "get":
                got.append(guest.get_dirty_log(vm, TEST_SLOT, TEST_PAGES))
            else:
                guest.clear_dirty_log(vm, TEST_SLOT, TEST_PAGES, int(op.split()[1], 0))
        entries = guest.dirty_ring_entries(vcpu, ring, RING_SIZE) if ring else []
    if mode == DIRTY_RING:
        want = list(dirty_ring(written, TEST_SLOT, facts.const("KVM_DIRTY_GFN_F_DIRTY")))
        if entries != want:
            pytest.fail(f"the dirty ring of {vcpu.label} after {what} holds (flags, slot, offset) {entries}, not {want}\n"
                        f"  rule:   guest_dirty_log: one KVM_DIRTY_GFN_F_DIRTY entry per page written, naming its slot "
                        f"and offset", pytrace=False)
        return
    expected = dirty_log(ops, written, TEST_PAGES, bool(bits), len(protect) > 1)
    if got != list(expected.bitmaps):
        shown = ", ".join(f"{b:#06b}" for b in got)
        want_shown = ", ".join(f"{b:#06b}" for b in expected.bitmaps)
        pytest.fail(f"KVM_GET_DIRTY_LOG of slot {TEST_SLOT} on {vm.label} through {' / '.join(ops)} after {what} "
                    f"returned {shown}, not {want_shown}\n  rule:   {expected.rule}: {expected.clause}", pytrace=False)


def two_slot_dirty_log(target: Target, case: Case, program: Program, mode: str) -> None:
    """A loop storing into two logging slots: each KVM_GET_DIRTY_LOG of one slot returns
    that slot's bits only, through GETs and CLEARs of the other."""
    vt, facts, page = case.vm_type, target.facts, target.page
    target.require_ioctl("KVM_GET_DIRTY_LOG", FdKind.VM, vt)
    target.require_ioctl("KVM_CLEAR_DIRTY_LOG", FdKind.VM, vt)
    protect, ops = TWO_SLOT_LOGS[mode]
    bits = sum(facts.const(c) for c in protect)
    if bits:
        target.require_cap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", vt, bits=bits)
    steps = program_steps(program, TWO_SLOT_REGS)
    pages = {**slot_pages("shared", HOST_PATTERN, TEST_GPA, TEST_PAGES, page), **slot_pages("shared", 0, LOG_GPA, TEST_PAGES, page)}
    expected_run = replace(guest_run(steps, pages, page, facts.const("KVM_MEMORY_EXIT_FLAG_PRIVATE"), MMIO_REPLY, (),
                                     coalesced_room(target)), rule="guest_dirty_log")
    written = {s: written_pages(steps, gpa, TEST_PAGES, page) for s, gpa in ((TEST_SLOT, TEST_GPA), (LOG_SLOT, LOG_GPA))}
    expected = dirty_logs(ops, written, TEST_PAGES, bool(bits))
    what = f"program {program.name} ({program.asm}, {TWO_SLOT_REGS}) over logging slots {TEST_SLOT} and {LOG_SLOT} ({mode})"
    log = facts.const("KVM_MEM_LOG_DIRTY_PAGES")
    got: list[int] = []
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(vt))
        if bits:
            guest.enable_cap(vm, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", bits)
        guest.set_test_slot(stack, vm, "shared", HOST_PATTERN, log)
        guest.set_slot(vm, LOG_SLOT, LOG_GPA, TEST_PAGES * page, guest.guest_memory(stack, vm, TEST_PAGES * page), log)
        vcpu = guest.boot(stack, target.kvm, vm, program, TWO_SLOT_REGS)
        ran = False
        for op in ops:
            word, *rest = op.split()
            if word == "run":
                if ran:
                    guest.rerun(vcpu, TWO_SLOT_REGS)
                seen = guest.run(vcpu)
                ran = True
                problem = mismatch(expected_run, seen)
                if problem:
                    fail(vcpu, what, problem, expected_run, seen)
            elif word == "get":
                got.append(guest.get_dirty_log(vm, int(rest[0]), TEST_PAGES))
            else:
                guest.clear_dirty_log(vm, int(rest[0]), TEST_PAGES, int(rest[1], 0))
    if got != list(expected.bitmaps):
        shown = ", ".join(f"{b:#06b}" for b in got)
        want_shown = ", ".join(f"{b:#06b}" for b in expected.bitmaps)
        pytest.fail(f"KVM_GET_DIRTY_LOG on {vm.label} through {' / '.join(ops)} after {what} returned {shown}, "
                    f"not {want_shown}\n  rule:   {expected.rule}: {expected.clause}", pytrace=False)


def ring_full(target: Target, case: Case, program: Program) -> None:
    """A loop storing page after page of a logging slot past the dirty ring's soft limit:
    KVM_RUN exits KVM_EXIT_DIRTY_RING_FULL with the ring holding the rule's entries,
    KVM_RESET_DIRTY_RINGS after the VMM harvested them returns their number, and the vCPU
    then runs on to hlt, pushing the rest after them."""
    vt, facts, page = case.vm_type, target.facts, target.page
    target.require_cap("KVM_CAP_DIRTY_LOG_RING", vt)
    gfn, pml = facts.structs["kvm_dirty_gfn"].size, target.plan.host.cpu_dirty_log_size
    ring_bytes = dirty_ring_min_bytes(gfn, pml, page)
    soft_limit = dirty_ring_soft_limit(ring_bytes, gfn, pml)
    npages = soft_limit + RING_FILL_MORE
    gprs = {"rcx": npages, "rdi": FILL_GPA, "rsi": page}
    steps = program_steps(program, gprs)
    expected = dirty_ring_fill(written_pages(steps, FILL_GPA, npages, page), LOG_SLOT, facts.const("KVM_DIRTY_GFN_F_DIRTY"),
                               soft_limit)
    what = (f"program {program.name} ({program.asm}) over {npages} pages of logging slot {LOG_SLOT}, a dirty ring of "
            f"{ring_bytes} bytes (soft limit {soft_limit}: cpu_dirty_log_size {pml})")
    rule = f"guest_dirty_log: {expected.clause}"
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(vt))
        guest.enable_cap(vm, "KVM_CAP_DIRTY_LOG_RING", ring_bytes)
        guest.set_slot(vm, LOG_SLOT, FILL_GPA, npages * page, guest.guest_memory(stack, vm, npages * page),
                       facts.const("KVM_MEM_LOG_DIRTY_PAGES"))
        vcpu = guest.boot(stack, target.kvm, vm, program, gprs)
        ring = guest.map_dirty_ring(stack, vcpu, ring_bytes)
        seen = guest.run(vcpu)
        full = guest.dirty_ring_entries(vcpu, ring, ring_bytes)
        problem = None
        if [e.reason for e in seen] != ["KVM_EXIT_DIRTY_RING_FULL"] or seen[0].result != 0:
            problem = (f"KVM_RUN gave {'; '.join(map(str, seen))} with {len(full)} entries in the ring, not 0 with "
                       f"KVM_EXIT_DIRTY_RING_FULL")
        elif full != list(expected.full):
            problem = f"the ring at KVM_EXIT_DIRTY_RING_FULL holds {len(full)} entries {full[:2]}...{full[-2:]}, not {len(expected.full)}"
        else:
            guest.harvest_dirty_ring(vcpu, ring, len(full))
            reset = guest.reset_dirty_rings(vm)
            seen = guest.run(vcpu)
            rest = guest.dirty_ring_entries(vcpu, ring, ring_bytes, len(full))
            if reset != expected.reset:
                problem = f"KVM_RESET_DIRTY_RINGS after harvesting {len(full)} entries returned {reset}, not {expected.reset}"
            elif [e.reason for e in seen] != ["KVM_EXIT_HLT"]:
                problem = f"KVM_RUN after the reset gave {'; '.join(map(str, seen))}, not KVM_EXIT_HLT"
            elif tuple(rest) not in expected.rests:
                problem = f"after the reset the run pushed {rest}, not {' or '.join(map(str, map(list, expected.rests)))}"
    if problem:
        pytest.fail(f"{what} on {vcpu.label}: {problem}\n  rule:   {rule}", pytrace=False)


@pytest.mark.cases("guest_coalesced")
def test_guest_coalesced_mmio(target: Target, case: Case) -> None:
    """A program's exits with coalesced zones registered are the rule's, and the coalesced
    ring at KVM_COALESCED_MMIO_PAGE_OFFSET of kvm_run's mapping holds exactly the entries
    its writes into the zones left, from where the VMM set first == last, wrapping."""
    vt = case.vm_type
    target.require_vm(vt)
    program, name = PROGRAM_NAMED[str(case.knob("program"))], str(case.knob("zone"))
    registered = zones(name, target.page)
    target.require_ioctl("KVM_REGISTER_COALESCED_MMIO", FdKind.VM, vt)
    if any(z[2] for z in registered):
        target.require_cap("KVM_CAP_COALESCED_PIO", vt)
    room = coalesced_room(target)
    start = ring_index(str(case.knob("first", "0")), room)
    gprs = {**COALESCED_LOOP_REGS, "rcx": loop_count(str(case.knob("count")), room)} if program.loop else {}
    expected = expect_run(target, program, "shared", registered, gprs)
    shown = ", ".join(f"addr 0x{a:x} size {n} pio {p}" for a, n, p in registered)
    what = f"program {program.name} ({program.asm}, {gprs}) with coalesced zones {name} ({shown}), ring from {start}"
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(vt))
        for z in registered:
            guest.register_zone(vm, z)
        guest.set_test_slot(stack, vm, "shared", HOST_PATTERN)
        vcpu = guest.boot(stack, target.kvm, vm, program, gprs)
        if start:
            guest.set_coalesced_ring(vcpu, start)
        seen = guest.run(vcpu)
        problem = mismatch(expected, seen)
        first, last, entries = guest.coalesced_ring(vcpu)
    want = [asdict(c) for c in expected.coalesced]
    end = (start + len(want)) % room
    if problem is None and (first, last, entries) != (start, end, want):
        problem = (f"the coalesced ring holds first={first} last={last} {len(entries)} entries {entries[:3]}..., "
                   f"not first={start} last={end} {len(want)} entries {want[:3]}...")
    if problem:
        fail(vcpu, what, problem, expected, seen)


@pytest.mark.cases("guest_pre_faults")
def test_guest_pre_fault(target: Target, case: Case) -> None:
    """KVM_PRE_FAULT_MEMORY over what a program touches answers as its rule says, leaves the
    range the rule leaves, and the program then runs as it would without it."""
    vt, facts, page = case.vm_type, target.facts, target.page
    target.require_vm(vt)
    target.require_ioctl("KVM_PRE_FAULT_MEMORY", FdKind.VCPU, vt)
    program, memory = PROGRAM_NAMED[str(case.knob("program"))], str(case.knob("memory"))
    require_memory(target, memory, vt)
    gpa, size = pre_fault_range(program, page)
    p = PreFaultInput({"gpa": gpa, "size": size, "flags": 0}, facts.structs["kvm_pre_fault_memory"], page,
                      TEST_GPA, TEST_GPA + TEST_PAGES * page)
    answer, want_left = pre_fault_memory(p), pre_fault_left(p)
    expected = replace(expect_run(target, program, memory), rule="guest_pre_fault")
    what = f"program {program.name} ({program.asm}) with a {memory} test slot, [0x{gpa:x}, +0x{size:x}) pre-faulted"
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(vt))
        uaddr = guest.set_test_slot(stack, vm, memory, HOST_PATTERN)
        vcpu = guest.boot(stack, target.kvm, vm, program)
        r, left = guest.pre_fault(vcpu, gpa, size)
        if not answer.matches(r) or (left["gpa"], left["size"]) != (want_left["gpa"], want_left["size"]):
            pytest.fail(f"KVM_PRE_FAULT_MEMORY of [0x{gpa:x}, +0x{size:x}) on {vcpu.label} answered {r} leaving "
                        f"gpa=0x{left['gpa']:x} size=0x{left['size']:x}, not {answer} leaving gpa=0x{want_left['gpa']:x} "
                        f"size=0x{want_left['size']:x}\n  rule:   {answer.rule}: {answer.clause}", pytrace=False)
        seen = guest.run(vcpu)
        problem = mismatch(expected, seen) or memory_problem(target, expected, uaddr)
    if problem:
        fail(vcpu, what, problem, expected, seen)


@pytest.mark.cases("attribute_no_trace")
def test_attributes_seen_by_guest(target: Target, case: Case) -> None:
    """The call answers as its rule says, and a guest load then sees the attributes the
    rule leaves (a rejected call leaves no trace)."""
    verdict(target, run_ioctl_case(target, case))
