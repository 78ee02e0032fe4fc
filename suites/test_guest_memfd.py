"""The guest_memfd file and its binding: fstat, read and write refused, mmap rules,
and KVM_MEM_GUEST_MEMFD with each kind of fd."""

from __future__ import annotations

import pytest

from harness.abi.fdkind import FdKind
from harness.rules import guest_memfd_fstat
from harness.session.engine import GMEM_PAGES, Case, run_ioctl_case, verdict
from harness.session.gmemfile import run_file_case
from harness.session.target import Target


@pytest.mark.cases("guest_memfd_files")
def test_fstat(target: Target, case: Case) -> None:
    """fstat answers as the rule says: st_size the size asked for, st_blksize the page size."""
    target.require_vm(case.vm_type)
    target.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, case.vm_type)
    size = GMEM_PAGES * target.page
    with target.vm(case.vm_type) as vm, vm.create_guest_memfd(size) as gmem:
        st = gmem.fstat()
    expected = guest_memfd_fstat(size, target.page)
    actual = {field: getattr(st, field) for field in expected}
    assert actual == expected, f"fstat of {gmem.label} (size {size}): {actual}; guest_memfd fstat rules: {expected}"


@pytest.mark.cases("file_calls")
def test_file_call(target: Target, case: Case) -> None:
    verdict(target, run_file_case(target, case))


@pytest.mark.cases("bindings")
def test_binding(target: Target, case: Case) -> None:
    verdict(target, run_ioctl_case(target, case))
