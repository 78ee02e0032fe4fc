"""Cap semantics: answers at /dev/kvm and VM scope, stable across calls; advertised
bits accepted; VM types created exactly as KVM_CAP_VM_TYPES says; each cap that
announces an ioctl is non-zero exactly when the ioctl exists."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from harness.abi.errnos import describe
from harness.abi.fdkind import SYSTEM_LABEL, FdKind
from harness.host.fds import Vm
from harness.rules import Expect, absent_ioctl, create_vm, unknown_cap
from harness.rules.coalesced_mmio import coalesced_mmio_cap
from harness.rules.dirty_log import reset_dirty_rings
from harness.rules.vcpus import create_vcpu, set_boot_cpu_id, vcpu_mmap
from harness.session.engine import Case, Outcome, run_ioctl_case, run_null_case, verdict
from harness.session.target import Target
from harness.surfaces.create_vcpu import VCPU_MMAP
from harness.surfaces.dirty_log import RING_SIZE


def _ask(target: Target, case: Case, cap: str) -> int:
    """KVM_CHECK_EXTENSION(cap) at the case's scope, on a fresh fd."""
    number = target.facts.cap_number(cap, model=target.model)
    if number is None:
        pytest.skip(f"{cap} has no number in {target.facts.source}")
    if case.fd == FdKind.SYSTEM:
        return target.kvm.check_extension(number)
    target.require_vm(case.vm_type)
    with target.vm(case.vm_type) as vm:
        return vm.check_extension(number)



@pytest.mark.cases("cap_answers")
def test_cap_stable(target: Target, case: Case) -> None:
    """A cap answers the same on every call and on every fresh fd of a scope."""
    cap = str(case.knob("cap"))
    probed = target.caps.at(cap, None if case.fd == FdKind.SYSTEM else case.vm_type)
    answers = [_ask(target, case, cap) for _ in range(3)]
    assert answers == [probed] * 3, f"KVM_CHECK_EXTENSION({cap}) on {case.where}: answered {answers}, at the probe {probed}"


@pytest.mark.cases("bitmask_caps")
def test_vm_scope_within_system(target: Target, case: Case) -> None:
    """A VM accepts no bit that KVM as a whole does not: VM-scope bits ⊆ /dev/kvm bits."""
    cap = str(case.knob("cap"))
    system = target.cap(cap, None)
    vm = target.cap(cap, case.vm_type)
    assert vm & ~system == 0, f"{cap} is 0x{vm:x} on {case.where} but 0x{system:x} on /dev/kvm: bits 0x{vm & ~system:x} beyond KVM's"


@pytest.mark.cases("cap_mirrors")
def test_cap_mirror(target: Target, case: Case) -> None:
    """The revision's rule that one cap returns what another returns, at each scope."""
    cap, other = str(case.knob("cap")), str(case.knob("mirrors"))
    a, b = _ask(target, case, cap), _ask(target, case, other)
    assert a == b, f"{cap} is {a} on {case.where} but {other} is {b}; {target.facts.source} says they are equal"


@pytest.mark.cases("vm_type_sweep")
def test_create_vm_type(target: Target, case: Case) -> None:
    """KVM_CREATE_VM succeeds exactly for the types in KVM_CAP_VM_TYPES."""
    vm_type = dict(case.values)["type"]
    mask = target.require_cap("KVM_CAP_VM_TYPES", None)
    result = target.kvm.call("KVM_CREATE_VM", vm_type)
    if result >= 0:
        target.backend.close(result)
    expect = create_vm(vm_type, mask)
    outcome = Outcome(case, "KVM_CREATE_VM", SYSTEM_LABEL, {"type": vm_type, "KVM_CAP_VM_TYPES": mask}, expect, result)
    verdict(target, outcome)


@pytest.mark.cases("advertised_bits")
def test_advertised_bit_accepted(target: Target, case: Case) -> None:
    """Every bit a cap advertises is accepted; attributes 0 always are."""
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("existence")
def test_ioctl_exists_iff_cap(target: Target, case: Case) -> None:
    """Non-zero announcing cap on /dev/kvm ⇔ the ioctl exists on that fd (not ENOTTY)."""
    outcome: Outcome = run_null_case(target, case)
    verdict(target, outcome)


@pytest.mark.cases("wide_cap_numbers")
def test_cap_number_compared_whole(target: Target, case: Case) -> None:
    """KVM_CHECK_EXTENSION(2^32 + a cap's number) is no cap: exactly 0, at every scope."""
    cap = str(case.knob("cap"))
    number = target.facts.cap_number(cap, model=target.model)
    if number is None:
        pytest.skip(f"{cap} has no number in {target.facts.source}")
    wide = (1 << 32) + number
    if case.fd == FdKind.SYSTEM:
        result = target.kvm.check_extension(wide)
    else:
        target.require_vm(case.vm_type)
        with target.vm(case.vm_type) as vm:
            result = vm.check_extension(wide)
    expect = unknown_cap(wide)
    outcome = Outcome(case, "KVM_CHECK_EXTENSION", case.where, {"cap": wide}, expect, result)
    verdict(target, outcome, lambda o: None if o.result == 0 else f"KVM_CHECK_EXTENSION(0x{wide:x}) answered {o.result}, not 0")


@pytest.mark.cases("vcpu_ids")
def test_create_vcpu_id(target: Target, case: Case) -> None:
    """KVM_CREATE_VCPU gives a new vCPU fd for an id below KVM_CAP_MAX_VCPU_ID, once."""
    vcpu_id = dict(case.values)["id"]
    target.require_vm(case.vm_type)
    max_id = target.require_cap("KVM_CAP_MAX_VCPU_ID", case.vm_type)
    max_vcpus = target.require_cap("KVM_CAP_MAX_VCPUS", case.vm_type)
    taken = case.knob("taken") is not None
    lowered = case.knob("max_vcpu_id")
    with target.vm(case.vm_type) as vm:
        if taken:
            target.backend.close(vm.checked("KVM_CREATE_VCPU", vcpu_id))
        if lowered is not None:
            _enable(target, vm, "KVM_CAP_MAX_VCPU_ID", int(lowered))
        result = vm.call("KVM_CREATE_VCPU", vcpu_id)
        trace = None
        if result >= 0:
            try:
                target.backend.fstat(result)
            except OSError as e:
                trace = f"KVM_CREATE_VCPU returned {result}, which is not an open fd: {e.strerror}"
            else:
                target.backend.close(result)
        expect = create_vcpu(vcpu_id, max_id, max_vcpus, taken, created=int(taken),
                             lowered=None if lowered is None else int(lowered))
        outcome = Outcome(case, "KVM_CREATE_VCPU", vm.label, {"id": vcpu_id, "KVM_CAP_MAX_VCPU_ID": max_id}, expect, result, trace=trace)
    verdict(target, outcome)


@pytest.mark.cases("vcpu_caps")
def test_check_extension_on_vcpu(target: Target, case: Case) -> None:
    """KVM_CHECK_EXTENSION is a system and VM ioctl (api.rst 4.4): on a vCPU fd it answers
    the VM's value where the ABI facts give it that fd, and is absent otherwise."""
    cap = str(case.knob("cap"))
    number = target.facts.cap_number(cap, model=target.model)
    if number is None:
        pytest.skip(f"{cap} has no number in {target.facts.source}")
    target.require_vm(case.vm_type)
    io = target.facts.ioctls["KVM_CHECK_EXTENSION"]
    with target.vm(case.vm_type) as vm, vm.create_vcpu(0, target.kvm.vcpu_mmap_size()) as vcpu:
        result = vcpu.check_extension(number)
        if FdKind.VCPU in io.fds:
            value = target.caps.at(cap, case.vm_type) or 0
            expect = Expect(0, "KVM_CHECK_EXTENSION at vCPU scope", f"{cap} on a vCPU is {value}, as on its VM")
            trace = None if result == value or result < 0 else f"{cap} is {result} on {vcpu.label} but {value} on its VM"
        else:
            expect, trace = absent_ioctl(f"KVM_CHECK_EXTENSION({cap})", vcpu.label, FdKind.VCPU), None
        outcome = Outcome(case, "KVM_CHECK_EXTENSION", vcpu.label, {"cap": number}, expect, result, trace=trace)
    verdict(target, outcome)


@pytest.mark.cases("reset_rings")
def test_reset_dirty_rings(target: Target, case: Case) -> None:
    """KVM_RESET_DIRTY_RINGS resets a VM's rings (EINVAL without one); a vCPU fd has no such ioctl;
    it exists on a VM (not ENOTTY) exactly when KVM_CAP_DIRTY_LOG_RING on /dev/kvm is non-zero."""
    target.require_vm(case.vm_type)
    if case.tag == "exists-iff-cap":
        announced = target.cap("KVM_CAP_DIRTY_LOG_RING", None)
        with target.vm(case.vm_type) as vm:
            result = vm.call("KVM_RESET_DIRTY_RINGS", 0)
        found = reset_dirty_rings(0, False) if announced else absent_ioctl("KVM_RESET_DIRTY_RINGS", vm.label)
        expect = Expect(found.errno, "KVM_CAP_DIRTY_LOG_RING on /dev/kvm", f"KVM_CAP_DIRTY_LOG_RING is {announced}: {found.clause}")
        verdict(target, Outcome(case, "KVM_RESET_DIRTY_RINGS", vm.label, {"arg": 0}, expect, result))
        return
    target.require_ioctl("KVM_RESET_DIRTY_RINGS", FdKind.VM, case.vm_type)
    arg, ring = dict(case.values).get("arg", 0), case.knob("ring") is not None
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(case.vm_type))
        if ring:
            _enable(target, vm, "KVM_CAP_DIRTY_LOG_RING", RING_SIZE)
        fd = vm if case.fd == FdKind.VM else stack.enter_context(vm.create_vcpu(0, target.kvm.vcpu_mmap_size()))
        result = fd.call("KVM_RESET_DIRTY_RINGS", arg)
        expect = reset_dirty_rings(arg, ring) if case.fd == FdKind.VM else absent_ioctl("KVM_RESET_DIRTY_RINGS", fd.label, case.fd)
        outcome = Outcome(case, "KVM_RESET_DIRTY_RINGS", fd.label, {"arg": arg}, expect, result)
    verdict(target, outcome)



@pytest.mark.cases("coalesced_cap")
def test_coalesced_mmio_page(target: Target, case: Case) -> None:
    """KVM_CAP_COALESCED_MMIO is the coalesced ring's page offset in the vCPU mmap (the page
    the guest_coalesced cases read the ring at)."""
    page_offset = target.facts.const("KVM_COALESCED_MMIO_PAGE_OFFSET")
    target.require_cap("KVM_CAP_COALESCED_MMIO", None if case.fd == FdKind.SYSTEM else case.vm_type)
    result = _ask(target, case, "KVM_CAP_COALESCED_MMIO")
    expect = coalesced_mmio_cap(page_offset)
    trace = None if result == page_offset else f"KVM_CAP_COALESCED_MMIO is {result}, not KVM_COALESCED_MMIO_PAGE_OFFSET {page_offset}"
    number = target.facts.cap_number("KVM_CAP_COALESCED_MMIO", model=target.model) or 0
    verdict(target, Outcome(case, "KVM_CHECK_EXTENSION", case.where, {"cap": number}, expect, result, trace=trace))


def _enable(target: Target, vm: Vm, cap: str, arg0: int) -> None:
    number = target.facts.cap_number(cap, model=target.model) or 0
    r, _ = vm.struct_call("KVM_ENABLE_CAP", {"cap": number, "args[0]": arg0})
    assert r == 0, f"KVM_ENABLE_CAP({cap}, {arg0:#x}) on {vm.label}: {describe(r)}"


@pytest.mark.cases("boot_cpu_ids")
def test_set_boot_cpu_id(target: Target, case: Case) -> None:
    """KVM_SET_BOOT_CPU_ID takes an id no higher than the vCPU id limit, before any vCPU."""
    boot, vt = dict(case.values)["id"], case.vm_type
    target.require_vm(vt)
    target.require_ioctl("KVM_SET_BOOT_CPU_ID", FdKind.VM, vt)
    max_id = target.require_cap("KVM_CAP_MAX_VCPU_ID", vt)
    created, lowered = case.knob("vcpu") is not None, int(case.knob("max_vcpu_id", 0) or 0)
    with target.vm(vt) as vm:
        if created:
            target.backend.close(vm.checked("KVM_CREATE_VCPU", 0))
        if lowered:
            _enable(target, vm, "KVM_CAP_MAX_VCPU_ID", lowered)
        result = vm.call("KVM_SET_BOOT_CPU_ID", boot)
        outcome = Outcome(case, "KVM_SET_BOOT_CPU_ID", vm.label, {"id": boot, "KVM_CAP_MAX_VCPU_ID": max_id},
                          set_boot_cpu_id(boot, max_id, created, lowered), result)
    verdict(target, outcome)


@pytest.mark.cases("vcpu_mmaps")
def test_vcpu_mmap(target: Target, case: Case) -> None:
    """mmap of a vCPU fd over its dirty ring's pages (KVM_DIRTY_LOG_PAGE_OFFSET, the ring's
    length) is refused unless shared and not executable; other pages map any way."""
    vt, values = case.vm_type, dict(case.values)
    target.require_vm(vt)
    ring = case.knob("ring") is not None
    if ring:
        target.require_cap("KVM_CAP_DIRTY_LOG_RING", vt)
    page, ring_page = target.page, target.facts.const("KVM_DIRTY_LOG_PAGE_OFFSET")
    offset, prot, flags = values.get("offset", ring_page * page), values["prot"], values["map"]
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(vt))
        if ring:
            _enable(target, vm, "KVM_CAP_DIRTY_LOG_RING", RING_SIZE)
        vcpu = stack.enter_context(vm.create_vcpu(0, target.kvm.vcpu_mmap_size()))
        result = target.backend.mmap(vcpu.fd, RING_SIZE, prot, flags, offset)
        if result >= 0:
            target.backend.munmap(result, RING_SIZE)
            result = 0
        expect = vcpu_mmap(offset, RING_SIZE, prot, flags, RING_SIZE if ring else 0, ring_page, page)
        outcome = Outcome(case, VCPU_MMAP, vcpu.label, {**values, "offset": offset, "length": RING_SIZE}, expect, result)
    verdict(target, outcome)
