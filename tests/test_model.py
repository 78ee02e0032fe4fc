"""The model backend against this machine's kernel, and its own promises.

Where the released rules overlap, the model answers as /dev/kvm here: every case of
the suite's tables, built from this kernel's caps, whose expected answer is the same on
both targets gets the same answer (and the same bytes written) from both, except the
cases the expectations file lists as this kernel's known findings. Cases whose expected
answers differ (the two have other VM types and caps: the model has private memory and
SMM's second address space, this kernel neither) are where they do not overlap.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator

import pytest

from harness.abi.facts import AbiFacts
from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import load_profile
from harness.cases import tables
from harness.cases.expectations import Expectations, for_release
from harness.errors import KvmconfError
from harness.host.backend import KernelBackend, describe, is_open
from harness.host.device import check_device
from harness.model.backend import ModelBackend
from harness.model.mutants import MutantError
from harness.rules import create_vm
from harness.session.backends import make_backend
from harness.session.engine import Case, Outcome, run_ioctl_case, run_null_case
from harness.session.gmemfile import run_file_case
from harness.session.target import Target, make_target

Runner = Callable[[Target, Case], Outcome]
TABLES: dict[str, Runner] = {
    **dict.fromkeys(("reserved_words", "flag_bits", "no_trace", "attribute_ranges", "guest_memfd_sizes",
                     "memslot_ranges", "sizing", "bindings", "advertised_bits", "parity_rows"), run_ioctl_case),
    **dict.fromkeys(("existence", "absent_on_fd"), run_null_case),
    **dict.fromkeys(("fallocate_ranges", "fallocate_modes", "file_calls"), run_file_case),
}


@pytest.fixture(scope="module")
def released() -> AbiFacts:
    return load_profile("released")


@pytest.fixture(scope="module")
def pair(released: AbiFacts) -> Iterator[tuple[Target, Target, Expectations]]:
    """This kernel and the model of the released revision, with this kernel's findings."""
    try:
        check_device("/dev/kvm")
    except KvmconfError as e:
        pytest.skip(str(e))
    release = os.uname().release
    exp = for_release(release)
    kernel = make_target(KernelBackend(), released, "/dev/kvm", "this machine", release, kernel_data=exp.kernel_data)
    model = make_target(ModelBackend(released), released, "/dev/kvm", "model", "model-released")
    yield kernel, model, exp
    kernel.close()
    model.close()


def _outcome(t: Target, case: Case, runner: Runner) -> Outcome | None:
    try:
        return runner(t, case)
    except pytest.skip.Exception:
        return None


def _seen(o: Outcome) -> tuple[object, ...]:
    """What a backend did: success, or which errno; and the bytes it wrote."""
    return (o.result >= 0 if o.result >= 0 else o.result, o.diff_outside, o.wrote_inside, o.trace)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_model_answers_as_this_kernel(pair: tuple[Target, Target, Expectations], table: str) -> None:
    kernel, model, exp = pair
    runner = TABLES[table]
    compared, differ = 0, []
    for case in tables.table(table)(kernel.plan):
        if exp.finding_for(case.id):
            continue
        k, m = _outcome(kernel, case, runner), _outcome(model, case, runner)
        if k is None or m is None or k.expect.errno != m.expect.errno:
            continue
        compared += 1
        if _seen(k) != _seen(m):
            differ.append(f"{case.id}: kernel {describe(k.result)}, model {describe(m.result)}")
    if not compared:
        pytest.skip(f"no case of {table} runs with the same expected answer on this kernel and on the model")
    assert not differ, f"{len(differ)} of {compared} cases differ:\n" + "\n".join(differ[:20])


def test_create_vm_as_this_kernel(pair: tuple[Target, Target, Expectations]) -> None:
    """KVM_CREATE_VM for every type 0-63 where both advertise the same."""
    kernel, model, _ = pair
    kmask, mmask = kernel.cap("KVM_CAP_VM_TYPES"), model.cap("KVM_CAP_VM_TYPES")
    for vm_type in range(64):
        if create_vm(vm_type, kmask) != create_vm(vm_type, mmask):
            continue
        answers = []
        for t in (kernel, model):
            r = t.kvm.call("KVM_CREATE_VM", vm_type)
            if r >= 0:
                t.backend.close(r)
            answers.append(r >= 0 or r)
        assert answers[0] == answers[1], f"KVM_CREATE_VM({vm_type}): kernel {answers[0]}, model {answers[1]}"


# -- the model's own promises ---------------------------------------------------------------


def test_needs_no_kvm_device(released: AbiFacts) -> None:
    """The model opens whatever the device path says, even one that does not exist."""
    model = ModelBackend(released)
    t = make_target(model, released, "/nonexistent/kvm", "model", model.release)
    assert t.caps.vm_types == (0, 1)
    assert t.kernel == "model-released"
    t.close()


def test_fds_are_real_and_unknown_ones_ebadf(released: AbiFacts) -> None:
    """Every model object holds a real fd, gone when closed; a closed number is EBADF."""
    model = ModelBackend(released)
    kvm = model.open("/dev/kvm")
    vm = model.ioctl(kvm, released.ioctls["KVM_CREATE_VM"].number, 0)
    assert vm >= 0 and is_open(kvm) and is_open(vm)
    model.close(vm)
    model.close(kvm)
    assert not is_open(kvm) and not is_open(vm)
    assert model.ioctl(vm, released.ioctls["KVM_CHECK_EXTENSION"].number, 0) == -errno.EBADF


def test_unknown_ioctls(released: AbiFacts) -> None:
    """x86's kvm_dev_ioctl answers EINVAL for an unknown ioctl; a VM and a guest_memfd ENOTTY."""
    model = ModelBackend(released)
    t = make_target(model, released, "/dev/kvm", "model", model.release)
    unknown = 0xAEFF
    with t.vm(0) as vm, vm.create_guest_memfd(PAGE_SIZE) as gmem:
        assert (t.kvm.raw(unknown), vm.raw(unknown), gmem.raw(unknown)) == (-errno.EINVAL, -errno.ENOTTY, -errno.ENOTTY)
    t.close()


def test_rejected_attributes_leave_state_alone() -> None:
    """Attributes change only when a call succeeds (state the uAPI cannot read back)."""
    facts = load_profile("rfc-v4")
    model = ModelBackend(facts)
    t = make_target(model, facts, "/dev/kvm", "model", model.release)
    struct = facts.structs["kvm_memory_attributes2"]
    private = facts.const("KVM_MEMORY_ATTRIBUTE_PRIVATE")
    with t.vm(1) as vm:
        state = model.files[vm.fd].vm
        assert state is not None

        def send(**values: int) -> int:
            data = ctypes.create_string_buffer(struct.pack({"size": PAGE_SIZE, "attributes": private, **values}), struct.size)
            return vm.call("KVM_SET_MEMORY_ATTRIBUTES2", ctypes.addressof(data))

        assert send(**{"reserved[5]": 1}) == -errno.EINVAL
        assert state.attributes.spans == []
        assert send(address=2 * PAGE_SIZE) == 0
        assert state.attributes.spans == [(2, 3, private)]
    t.close()


def test_mutants_only_on_the_model(released: AbiFacts) -> None:
    with pytest.raises(MutantError, match="needs --backend model"):
        make_backend("kernel", released, "attr1-reads-33")
    with pytest.raises(MutantError, match=r"known mutants: .*attr1-reads-33"):
        make_backend("model", released, "no-such-mutant")
    backend = make_backend("model", released, "attr1-reads-33")
    assert backend.name == "model" and getattr(backend, "release", "") == "model-released (mutant attr1-reads-33)"
