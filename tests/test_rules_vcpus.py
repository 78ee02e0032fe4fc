"""The vCPU rules on their own: KVM_CREATE_VCPU's ids (kvm_main.c:4231-4238) and the
vCPU fd's dispatch default (x86.c:3889-3890)."""

from __future__ import annotations

import errno

import pytest

from harness import rules
from harness.abi.fdkind import FdKind
from harness.rules.vcpus import create_vcpu

MAX_ID = 4096


@pytest.mark.parametrize(("vcpu_id", "taken", "want"), [
    (0, False, 0), (MAX_ID - 1, False, 0), (MAX_ID, False, errno.EINVAL), (1 << 32, False, errno.EINVAL),
    ((1 << 64) - 1, False, errno.EINVAL), (0, True, errno.EEXIST), (MAX_ID, True, errno.EINVAL),
])
def test_create_vcpu(vcpu_id: int, taken: bool, want: int) -> None:
    """ids in [0, KVM_CAP_MAX_VCPU_ID), each once; the id check comes before the duplicate check."""
    assert create_vcpu(vcpu_id, MAX_ID, taken).errno == want


@pytest.mark.parametrize(("fd", "want"), [(FdKind.VM, errno.ENOTTY), (FdKind.GUEST_MEMFD, errno.ENOTTY),
                                          (FdKind.VCPU, errno.EINVAL), (FdKind.SYSTEM, errno.EINVAL)])
def test_absent_ioctl_per_fd_kind(fd: FdKind, want: int) -> None:
    """ENOTTY where the VFS or kvm_arch_vm_ioctl answers; x86's EINVAL on /dev/kvm and a vCPU."""
    assert rules.absent_ioctl("KVM_CHECK_EXTENSION", "an fd", fd).errno == want
