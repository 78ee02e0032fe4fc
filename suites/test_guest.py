"""Effects seen from inside a guest: a vCPU runs a program of
`harness.abi.guest_programs` and the exits it gives are the outcome, compared with
`harness.rules.guest`. The attribute tables' cases are here too, each followed by a guest
load that shows what the call left behind."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from harness.abi.fdkind import FdKind
from harness.abi.guest_programs import HOST_PATTERN, MMIO_REPLY, PROGRAMS, TEST_GPA
from harness.host import guest
from harness.rules.guest import guest_run, mismatch, run_without_memslots, slot_page
from harness.session.engine import Case, run_ioctl_case, verdict
from harness.session.target import Target


def require_memory(target: Target, memory: str, vm_type: int) -> None:
    """What a test slot of this kind needs: guest_memfd, and PRIVATE in the VM's attributes."""
    if memory.startswith("gmem-"):
        target.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, vm_type)
    if memory.startswith("gmem-mmap"):
        shared = target.facts.const("GUEST_MEMFD_FLAG_MMAP") | target.facts.const("GUEST_MEMFD_FLAG_INIT_SHARED")
        target.require_cap("KVM_CAP_GUEST_MEMFD_FLAGS", vm_type, bits=shared)
    if memory.endswith(("private", "reshared", "private-deleted")):
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
            program, memory = PROGRAMS[str(case.knob("program"))], str(case.knob("memory"))
            require_memory(target, memory, case.vm_type)
            uaddr = guest.set_test_slot(stack, vm, memory, HOST_PATTERN)
            vcpu = guest.boot(stack, target.kvm, vm, program)
            expected = guest_run(program.steps, {TEST_GPA: slot_page(memory, HOST_PATTERN)}, target.page,
                                 facts.const("KVM_MEMORY_EXIT_FLAG_PRIVATE"), MMIO_REPLY)
            what = f"program {program.name} ({program.asm}) with a {memory} test slot"
        seen = guest.run(vcpu)
        problem = mismatch(expected, seen)
        for gpa, value in expected.memory if problem is None else ():
            got = int.from_bytes(target.backend.memory.read(uaddr + gpa - TEST_GPA, 4), "little")
            if got != value:
                problem = f"the guest saw 0x{value:x} at GPA 0x{gpa:x}; the VMM's mapping of the slot holds 0x{got:x}"
    if problem:
        pytest.fail(f"KVM_RUN on {vcpu.label} running {what}: {problem}\n"
                    f"  rule:   {expected.rule}: {expected.clause}\n"
                    f"  exits:  {'; '.join(map(str, seen))}", pytrace=False)


@pytest.mark.cases("attribute_no_trace")
def test_attributes_seen_by_guest(target: Target, case: Case) -> None:
    """The call answers as its rule says, and a guest load then sees the attributes the
    rule leaves (a rejected call leaves no trace)."""
    verdict(target, run_ioctl_case(target, case))
