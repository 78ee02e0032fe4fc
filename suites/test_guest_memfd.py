"""The guest_memfd file and its binding: fstat, read and write refused, mmap rules,
and KVM_MEM_GUEST_MEMFD with each kind of fd."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from harness.abi.fdkind import FdKind
from harness.abi.linux import F_GETFD, FD_CLOEXEC
from harness.host.fds import open_kind
from harness.rules import Expect, close_on_exec, guest_memfd_fstat
from harness.session.engine import GMEM_PAGES, Case, Outcome, run_ioctl_case, verdict
from harness.session.gmemfile import run_file_case
from harness.session.target import Target


@pytest.mark.cases("guest_memfd_files")
def test_fstat(target: Target, case: Case) -> None:
    """fstat answers as the rule says: st_size the size asked for, st_blksize the page size;
    a second guest_memfd of the VM (twice the size) is an inode of its own."""
    target.require_vm(case.vm_type)
    target.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, case.vm_type)
    sizes = [n * GMEM_PAGES * target.page for n in range(1, int(case.knob("files", 1) or 1) + 1)]
    inodes: dict[int, str] = {}
    with target.vm(case.vm_type) as vm, ExitStack() as stack:
        for size in sizes:
            gmem = stack.enter_context(vm.create_guest_memfd(size))
            st = gmem.fstat()
            expected = guest_memfd_fstat(size, target.page)
            actual = {field: getattr(st, field) for field in expected}
            assert actual == expected, f"fstat of {gmem.label} (size {size}): {actual}; guest_memfd fstat rules: {expected}"
            assert st.st_ino not in inodes, (f"{gmem.label} (size {size}) has st_ino {st.st_ino}, as {inodes.get(st.st_ino)} "
                                             "of the same VM; guest_memfd fstat rules: each guest_memfd is an inode of its own")
            inodes[st.st_ino] = gmem.label


@pytest.mark.cases("file_calls")
def test_file_call(target: Target, case: Case) -> None:
    verdict(target, run_file_case(target, case))


@pytest.mark.cases("bindings")
def test_binding(target: Target, case: Case) -> None:
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("fd_flags")
def test_close_on_exec(target: Target, case: Case) -> None:
    """Each fd KVM hands out is close-on-exec, or not, as the rule says (F_GETFD)."""
    target.require_vm(case.vm_type)
    if case.fd == FdKind.GUEST_MEMFD:
        target.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, case.vm_type)
    with ExitStack() as stack:
        _, fd = open_kind(stack, target.kvm, case.fd, case.vm_type, GMEM_PAGES * target.page)
        flags = target.backend.fcntl(fd.fd, F_GETFD, 0)
    wanted = close_on_exec(case.fd)
    expect = Expect(0, "fd flags rules", f"{case.where} is {'' if wanted else 'not '}close-on-exec")
    outcome = Outcome(case, "fcntl(F_GETFD)", case.where, {}, expect, flags)
    verdict(target, outcome, lambda o: None if bool(o.result & FD_CLOEXEC) == wanted
            else f"{case.where}: FD_CLOEXEC is {'clear' if wanted else 'set'}; {expect.clause}")
