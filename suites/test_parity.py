"""VM fd versus guest_memfd fd: one validation matrix through both gives the same
answers, except the documented differences (offset for address, the file's bounds),
which are clauses of the rules, not special cases here."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.abi.errnos import describe
from harness.abi.fdkind import FdKind
from harness.rules import GUEST_MEMFD_ONLY_CLAUSES, V1_FLAGS
from harness.session.engine import Case, Outcome, run_ioctl_case, run_null_case, verdict
from harness.session.target import Target


def _errno(result: int) -> int:
    return -result if result < 0 else 0


def both(target: Target, a: Case, b: Case) -> tuple[Outcome, Outcome, list[str]]:
    """Two cases run and each judged by its rule, every failure kept, so both are always reported."""
    outcomes = run_ioctl_case(target, a), run_ioctl_case(target, b)
    problems = []
    for outcome in outcomes:
        try:
            verdict(target, outcome)
        except pytest.fail.Exception as e:
            problems.append(str(e))
    return outcomes[0], outcomes[1], problems


@pytest.mark.cases("parity_rows")
def test_same_answer_on_both_fds(target: Target, case: Case) -> None:
    """Each fd answers as its rule says, and the two answers are the same unless the
    guest_memfd fd's comes from a documented difference. Both fds are always reported."""
    on_vm, on_gmem, problems = both(target, case, replace(case, fd=FdKind.GUEST_MEMFD))
    if _errno(on_vm.result) != _errno(on_gmem.result) and on_gmem.expect.clause not in GUEST_MEMFD_ONLY_CLAUSES:
        problems.append(
            f"{case.id}: {on_vm.fd_label} answered {describe(on_vm.result)} but {on_gmem.fd_label} "
            f"{describe(on_gmem.result)}, and '{on_gmem.expect.clause}' is not a documented difference"
        )
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.mark.cases("absent_on_fd")
def test_ioctl_absent_on_fd(target: Target, case: Case) -> None:
    """An ioctl answers ENOTTY on a kind of fd the revision does not give it."""
    verdict(target, run_null_case(target, case))


@pytest.mark.cases("memslot_versions")
def test_v1_answers_as_v2(target: Target, case: Case) -> None:
    """KVM_SET_USER_MEMORY_REGION and KVM_SET_USER_MEMORY_REGION2 answer each row of
    the fields they share alike, except v1's own flags check. Both are always reported."""
    v1, v2, problems = both(target, case, replace(case, surface="KVM_SET_USER_MEMORY_REGION2"))
    if _errno(v1.result) != _errno(v2.result) and v1.expect.clause != V1_FLAGS:
        problems.append(f"{case.id}: {v1.label} answered {describe(v1.result)} but {v2.label} {describe(v2.result)} "
                        f"on {v1.fd_label}, and '{v1.expect.clause}' is not v1's own flags check")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
