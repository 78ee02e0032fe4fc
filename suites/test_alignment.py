"""Alignment and bounds: addresses, sizes and offsets at unaligned residues, size 0,
ranges past a guest_memfd file's end, and values where 64-bit arithmetic wraps."""

from __future__ import annotations

import pytest

from harness.session.engine import Case, run_ioctl_case, verdict
from harness.session.gmemfile import run_file_case
from harness.session.target import Target


@pytest.mark.cases("attribute_ranges")
def test_attribute_range(target: Target, case: Case) -> None:
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("guest_memfd_sizes")
def test_guest_memfd_size(target: Target, case: Case) -> None:
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("memslot_ranges")
def test_memslot_range(target: Target, case: Case) -> None:
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("fallocate_ranges")
def test_fallocate_range(target: Target, case: Case) -> None:
    verdict(target, run_file_case(target, case))


@pytest.mark.cases("pre_fault_ranges")
def test_pre_fault_range(target: Target, case: Case) -> None:
    """Inside, across and outside the vCPU's memslot; the range left is written back."""
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("dirty_log_cases")
def test_dirty_log(target: Target, case: Case) -> None:
    """A logging memslot of 130 pages: slot ids, the ring, the bitmap pointer, and CLEAR's
    64-page alignment except at the slot's end."""
    verdict(target, run_ioctl_case(target, case))


@pytest.mark.cases("coalesced_zones")
def test_coalesced_zone(target: Target, case: Case) -> None:
    """pio 0 or 1; a zone of addresses: its size, the int the bus takes, no wrap."""
    verdict(target, run_ioctl_case(target, case))
