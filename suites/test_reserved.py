"""Reserved-field rejection: reserved words and pads, unknown flag and attribute bits,
and rejected calls that must leave no trace."""

from __future__ import annotations

import pytest

from harness.session.engine import Case, Outcome, run_ioctl_case, verdict
from harness.session.gmemfile import run_file_case
from harness.session.target import Target


@pytest.mark.cases("reserved_words")
def test_reserved_word(target: Target, case: Case) -> None:
    """A non-zero reserved word or pad is rejected with EINVAL."""
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("flag_bits")
def test_flag_bit(target: Target, case: Case) -> None:
    """Each bit alone: accepted if advertised, else EINVAL."""
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("no_trace")
def test_rejected_call_leaves_no_trace(target: Target, case: Case) -> None:
    """A rejected call creates no fd and no memslot."""
    before = target.backend.open_fds()  # where the calls run: a guest's executor under --kernel
    outcome = run_ioctl_case(target, case)
    leaked = target.backend.open_fds() - before - target.held_fds()  # the session's /dev/kvm fd, opened once

    def trace(o: Outcome) -> str | None:
        if leaked:
            return f"the rejected call left new fds behind: {sorted(leaked)}"
        return None

    verdict(target, outcome, trace)


@pytest.mark.cases("fallocate_modes")
def test_fallocate_mode_bit(target: Target, case: Case) -> None:
    """Each fallocate mode bit: only KEEP_SIZE and KEEP_SIZE | PUNCH_HOLE are accepted."""
    verdict(target, run_file_case(target, case))


@pytest.mark.cases("enable_cap_args")
def test_enable_cap(target: Target, case: Case) -> None:
    """Each memory cap with its flags, an unused args[i] or a pad byte set, args[0] at its edges."""
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("ioeventfd_cases")
def test_ioeventfd(target: Target, case: Case) -> None:
    """len, wrap, DATAMATCH without a length, the eventfd's kinds, a collision, deassigning."""
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("irqfd_cases")
def test_irqfd(target: Target, case: Case) -> None:
    """The eventfd's kinds, the irqchip, resamplefd only with RESAMPLE, one irqfd per eventfd, deassigning."""
    verdict(target, run_ioctl_case(target, case))
