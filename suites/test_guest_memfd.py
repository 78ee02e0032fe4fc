"""The guest_memfd file and its binding: fstat, read and write refused, mmap rules,
and KVM_MEM_GUEST_MEMFD with each kind of fd."""

from __future__ import annotations

import pytest

from harness.gmemfile import run_file_case
from harness.surfaces import GMEM_PAGES, Case, run_ioctl_case, verdict
from harness.target import Target


@pytest.mark.parametrize("vm_type", [0])
def test_fstat(target: Target, vm_type: int) -> None:
    """st_size is the size asked for, st_blksize the page size."""
    target.require_ioctl("KVM_CREATE_GUEST_MEMFD", "vm", vm_type)
    with target.vm(vm_type) as vm, vm.create_guest_memfd(GMEM_PAGES * target.page) as gmem:
        st = gmem.fstat()
    assert (st.st_size, st.st_blksize) == (GMEM_PAGES * target.page, target.page), (
        f"fstat of {gmem.label}: st_size {st.st_size}, st_blksize {st.st_blksize}; "
        f"expected {GMEM_PAGES * target.page} and the page size {target.page}"
    )


@pytest.mark.cases("file_calls")
def test_file_call(target: Target, case: Case) -> None:
    verdict(target, run_file_case(target, case))


@pytest.mark.cases("bindings")
def test_binding(target: Target, case: Case) -> None:
    verdict(target, run_ioctl_case(target, case))
