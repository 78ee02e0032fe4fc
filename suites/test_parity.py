"""VM fd versus guest_memfd fd: one validation matrix through both gives the same
answers, except the documented differences (offset for address, the file's bounds),
which are clauses of the rules, not special cases here."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.rules import GUEST_MEMFD_ONLY_CLAUSES
from harness.surfaces import Case, run_ioctl_case, run_null_case, verdict
from harness.target import Target


@pytest.mark.cases("parity_rows")
def test_same_answer_on_both_fds(target: Target, case: Case) -> None:
    on_vm = run_ioctl_case(target, case)
    on_gmem = run_ioctl_case(target, replace(case, fd="guest_memfd"))
    verdict(target, on_vm)
    verdict(target, on_gmem)
    if on_vm.expect.errno != on_gmem.expect.errno:
        assert on_gmem.expect.clause in GUEST_MEMFD_ONLY_CLAUSES, (
            f"the rules give {on_vm.expect} on {on_vm.fd_label} but {on_gmem.expect} on {on_gmem.fd_label} "
            f"for {case.id}, and '{on_gmem.expect.clause}' is not a documented difference"
        )


@pytest.mark.cases("absent_on_fd")
def test_ioctl_absent_on_fd(target: Target, case: Case) -> None:
    """An ioctl answers ENOTTY on a kind of fd the revision does not give it."""
    verdict(target, run_null_case(target, case))
