"""Limits the caps announce, reached: every memslot KVM_CAP_NR_MEMSLOTS and
KVM_CAP_MULTI_ADDRESS_SPACE give, every vCPU KVM_CAP_MAX_VCPUS gives, and one more of
each refused. Tens of thousands of calls per case: the mutation run takes this module
last, so a mutant another case kills never gets here."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from harness.abi.fdkind import FdKind
from harness.rules.vcpus import create_vcpu
from harness.session.engine import Case, Outcome, verdict
from harness.session.target import Target
from harness.surfaces.memslots import every_slot

VCPU_BATCH = 256  # vCPUs created before their fds are closed


@pytest.mark.cases("memslot_fill")
def test_every_memslot(target: Target, case: Case) -> None:
    """KVM_CAP_NR_MEMSLOTS 1-page slots fit in each of the KVM_CAP_MULTI_ADDRESS_SPACE address
    spaces, side by side; one more id, or one more address space, is refused. The calls go
    in batches (one round trip each to a guest's executor); the first answer that differs
    from the rule is the case's."""
    target.require_vm(case.vm_type)
    target.require_cap("KVM_CAP_NR_MEMSLOTS", case.vm_type)
    io = target.require_ioctl(case.surface, FdKind.VM, case.vm_type)
    assert io.struct is not None
    struct = target.facts.structs[io.struct]
    with ExitStack() as stack:
        vm = stack.enter_context(target.vm(case.vm_type))
        page = stack.enter_context(target.backend.memory.at_guard(bytes(target.page)))
        calls = every_slot(target.plan, case, page.addr)
        packed = stack.enter_context(target.backend.memory.at_guard(b"".join(struct.pack(v) for v, _ in calls)))
        results = target.backend.ioctls([(vm.fd, io.number, packed.addr + i * struct.size) for i in range(len(calls))])
    i = next((i for i, ((_, e), r) in enumerate(zip(calls, results, strict=True)) if not e.matches(r)), len(calls) - 1)
    values, expect = calls[i]
    verdict(target, Outcome(case, case.surface, vm.label, {"call": i, **values}, expect, results[i]))


@pytest.mark.cases("vcpu_fill")
def test_every_vcpu(target: Target, case: Case) -> None:
    """KVM_CAP_MAX_VCPUS vCPUs, ids 0 up, on one VM; one more is refused. The fds of each
    batch are closed before the next (a vCPU is its VM's until the VM goes, so the count
    stays), so the open-file limit (1024 by default) never decides."""
    target.require_vm(case.vm_type)
    max_id = target.require_cap("KVM_CAP_MAX_VCPU_ID", case.vm_type)
    count = target.require_cap("KVM_CAP_MAX_VCPUS", case.vm_type)
    number = target.facts.ioctls["KVM_CREATE_VCPU"].number
    with target.vm(case.vm_type) as vm:
        results: list[int] = []
        for start in range(0, count + 1, VCPU_BATCH):
            results += target.backend.ioctls([(vm.fd, number, i) for i in range(start, min(start + VCPU_BATCH, count + 1))])
            for r in results[start:]:
                if r >= 0:
                    target.backend.close(r)
    expects = [create_vcpu(i, max_id, count, created=i) for i in range(count + 1)]
    i = next((i for i, (e, r) in enumerate(zip(expects, results, strict=True)) if not e.matches(r)), count)
    values = {"id": i, "KVM_CAP_MAX_VCPUS": count, "KVM_CAP_MAX_VCPU_ID": max_id}
    verdict(target, Outcome(case, case.surface, vm.label, values, expects[i], results[i]))
