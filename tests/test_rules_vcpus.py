"""The vCPU rules on their own: KVM_CREATE_VCPU's ids (kvm_main.c:4231-4238) and the
vCPU fd's dispatch default (x86.c:3889-3890)."""

from __future__ import annotations

import errno

import pytest

from harness import rules
from harness.abi.fdkind import FdKind
from harness.abi.linux import MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE
from harness.rules.vcpus import create_vcpu, set_boot_cpu_id, vcpu_mmap

MAX_ID, MAX_VCPUS = 4096, 1024


@pytest.mark.parametrize(("vcpu_id", "taken", "want"), [
    (0, False, 0), (MAX_ID - 1, False, 0), (MAX_ID, False, errno.EINVAL), (1 << 32, False, errno.EINVAL),
    ((1 << 64) - 1, False, errno.EINVAL), (0, True, errno.EEXIST), (MAX_ID, True, errno.EINVAL),
])
def test_create_vcpu(vcpu_id: int, taken: bool, want: int) -> None:
    """ids in [0, KVM_CAP_MAX_VCPU_ID), each once; the id check comes before the duplicate check."""
    assert create_vcpu(vcpu_id, MAX_ID, MAX_VCPUS, taken).errno == want


@pytest.mark.parametrize(("vcpu_id", "created", "lowered", "want"), [
    (0, MAX_VCPUS - 1, None, 0), (MAX_VCPUS, MAX_VCPUS, None, errno.EINVAL), (MAX_ID, MAX_VCPUS, None, errno.EINVAL),
    (15, 0, 16, 0), (16, 0, 16, errno.EINVAL), (0, 0, 1, 0), (1, 0, 1, errno.EINVAL),
])
def test_create_vcpu_limits(vcpu_id: int, created: int, lowered: int | None, want: int) -> None:
    """KVM_CAP_MAX_VCPUS vCPUs at most (kvm_main.c:4234-4235); ids below a lowered
    KVM_CAP_MAX_VCPU_ID (x86.c:9337-9338), judged after the count and the duplicate."""
    assert create_vcpu(vcpu_id, MAX_ID, MAX_VCPUS, created=created, lowered=lowered).errno == want


@pytest.mark.parametrize(("fd", "want"), [(FdKind.VM, errno.ENOTTY), (FdKind.GUEST_MEMFD, errno.ENOTTY),
                                          (FdKind.VCPU, errno.EINVAL), (FdKind.SYSTEM, errno.EINVAL)])
def test_absent_ioctl_per_fd_kind(fd: FdKind, want: int) -> None:
    """ENOTTY where the VFS or kvm_arch_vm_ioctl answers; x86's EINVAL on /dev/kvm and a vCPU."""
    assert rules.absent_ioctl("KVM_CHECK_EXTENSION", "an fd", fd).errno == want


@pytest.mark.parametrize(("boot_id", "created", "lowered", "want"), [
    (0, False, 0, 0), (MAX_ID, False, 0, 0), (MAX_ID + 1, False, 0, errno.EINVAL), (1 << 32, False, 0, errno.EINVAL),
    (0, True, 0, errno.EBUSY), (MAX_ID + 1, True, 0, errno.EBUSY), (16, False, 16, 0), (17, False, 16, errno.EINVAL),
])
def test_set_boot_cpu_id(boot_id: int, created: bool, lowered: int, want: int) -> None:
    """EBUSY once a vCPU exists, first; then ids up to (not past) KVM_MAX_VCPU_IDS and the VM's limit (x86.c:4602-4613)."""
    assert set_boot_cpu_id(boot_id, MAX_ID, created, lowered).errno == want


RING_PAGE, RING = 64, 16 * PAGE_SIZE


@pytest.mark.parametrize(("offset", "prot", "flags", "ring", "want"), [
    (RING_PAGE * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, RING, 0),
    (RING_PAGE * PAGE_SIZE, PROT_READ, MAP_PRIVATE, RING, errno.EINVAL),
    (RING_PAGE * PAGE_SIZE, PROT_READ, MAP_PRIVATE, 0, 0),
    (RING_PAGE * PAGE_SIZE, PROT_READ | PROT_EXEC, MAP_SHARED, RING, errno.EPERM),
    ((RING_PAGE - 15) * PAGE_SIZE, PROT_READ, MAP_PRIVATE, RING, errno.EINVAL),  # only its last page in the ring
    (0, PROT_READ, MAP_PRIVATE, RING, 0),
])
def test_vcpu_mmap(offset: int, prot: int, flags: int, ring: int, want: int) -> None:
    """The dirty ring's pages shared only (kvm_vcpu_mmap); PROT_EXEC refused first (a noexec pseudo fs)."""
    assert vcpu_mmap(offset, 16 * PAGE_SIZE, prot, flags, ring, RING_PAGE, PAGE_SIZE).errno == want
