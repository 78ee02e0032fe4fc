"""The harness against the real /dev/kvm: raw and checked calls, self-closing fd
objects, the cap probe and its JSON round-trip; plus the device checks, errno
naming, exit codes and run folders, which need no kernel."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import errors
from harness.abi.facts import AbiFacts
from harness.abi.fdkind import FdKind
from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import load_profile
from harness.cases.captable import CapTable, vm_types_of
from harness.cli.runs import RunFolder
from harness.errors import DeviceMissing, DeviceNotCharacter, KvmconfError
from harness.host.backend import KernelBackend, describe, errno_name
from harness.host.caps import probe_caps
from harness.host.device import check_device
from harness.host.fds import IoctlError, Kvm, ioctl_label
from harness.model.backend import ModelBackend
from tests.kvmdev import DEVICE, needs_kvm


@pytest.fixture(scope="module")
def facts() -> AbiFacts:
    return load_profile("released")


@pytest.fixture
def kvm(facts: AbiFacts) -> Iterator[Kvm]:
    with Kvm.open(KernelBackend(), facts, DEVICE) as k:
        yield k


def require_guest_memfd(kvm: Kvm) -> None:
    if kvm.check_extension(kvm.facts.caps["KVM_CAP_GUEST_MEMFD"]) <= 0:
        pytest.skip("KVM_CAP_GUEST_MEMFD is 0 on /dev/kvm")


def is_open(fd: int) -> bool:
    """fstat, not a /proc/self/fd listing: listing it opens an fd of its own, which takes
    the number just closed."""
    try:
        os.fstat(fd)
    except OSError as e:
        assert e.errno == errno.EBADF
        return False
    return True


# -- raw and checked ------------------------------------------------------------------------


@needs_kvm
def test_raw_returns_minus_errno(kvm: Kvm, facts: AbiFacts) -> None:
    """raw(): the result, or -errno; nothing raised (KVM_CREATE_VM with type 63 → EINVAL)."""
    assert kvm.raw(facts.ioctls["KVM_CREATE_VM"].number, 63) == -errno.EINVAL
    assert kvm.call("KVM_CREATE_VM", 63) == -errno.EINVAL
    assert kvm.check_extension(facts.caps["KVM_CAP_CHECK_EXTENSION_VM"]) == 1
    assert kvm.check_extension(0xFFFF_FFF0) == 0  # unknown cap → 0 (spec)


@needs_kvm
def test_checked_names_ioctl_fd_and_errno(kvm: Kvm) -> None:
    """checked(): IoctlError names the ioctl, the fd and the errno by name."""
    with pytest.raises(IoctlError) as e:
        kvm.checked("KVM_CREATE_VM", 63)
    assert e.value.errno == errno.EINVAL
    assert "KVM_CREATE_VM" in str(e.value) and "/dev/kvm" in str(e.value) and "EINVAL" in str(e.value)
    assert isinstance(e.value, OSError)


@needs_kvm
def test_checked_on_a_vm_and_a_guest_memfd(kvm: Kvm) -> None:
    """The fd labels: "a VM of type 0", "a guest_memfd of a VM of type 0"."""
    require_guest_memfd(kvm)
    with kvm.create_vm(0) as vm:
        with pytest.raises(IoctlError, match=r"KVM_CREATE_GUEST_MEMFD on a VM of type 0 failed: EFAULT$"):
            vm.checked("KVM_CREATE_GUEST_MEMFD", 0)  # NULL struct pointer
        with vm.create_guest_memfd(PAGE_SIZE) as gmem:
            assert gmem.label == "a guest_memfd of a VM of type 0"
            with pytest.raises(IoctlError, match=r"KVM_CHECK_EXTENSION on a guest_memfd of a VM of type 0 failed: ENOTTY"):
                gmem.checked("KVM_CHECK_EXTENSION", 1)


@needs_kvm
def test_create_vm_failure_raises(kvm: Kvm) -> None:
    """create_vm() is checked: the message names the type asked."""
    with pytest.raises(IoctlError, match=r"KVM_CREATE_VM\(type 63\) on /dev/kvm failed: EINVAL"):
        kvm.create_vm(63)


@needs_kvm
def test_create_guest_memfd_failure_raises(kvm: Kvm) -> None:
    """create_guest_memfd() is checked, on the VM's label."""
    require_guest_memfd(kvm)
    with kvm.create_vm(0) as vm, pytest.raises(IoctlError, match=r"KVM_CREATE_GUEST_MEMFD on a VM of type 0 failed: EINVAL"):
        vm.create_guest_memfd(PAGE_SIZE + 1)


# -- objects close themselves --------------------------------------------------------------


@needs_kvm
def test_fds_close_themselves(facts: AbiFacts) -> None:
    """Leaving `with` closes /dev/kvm, the VM and the guest_memfd (no fd leaks between cases)."""
    with Kvm.open(KernelBackend(), facts, DEVICE) as kvm:
        require_guest_memfd(kvm)
        assert os.readlink(f"/proc/self/fd/{kvm.fd}") == os.path.realpath(DEVICE)
        with kvm.create_vm(0) as vm:
            assert "kvm-vm" in os.readlink(f"/proc/self/fd/{vm.fd}")
            assert vm.vm_type == 0 and vm.label == "a VM of type 0"
            with vm.create_guest_memfd(2 * PAGE_SIZE, 0) as gmem:
                fds = [kvm.fd, vm.fd, gmem.fd]
                assert all(map(is_open, fds))
                st = gmem.fstat()
                assert (st.st_size, gmem.size, gmem.flags) == (2 * PAGE_SIZE, 2 * PAGE_SIZE, 0)
            assert gmem.fd == -1
        assert vm.fd == -1
    assert kvm.fd == -1
    assert not any(map(is_open, fds))
    kvm.close()  # idempotent


@needs_kvm
def test_dropped_objects_close(facts: AbiFacts) -> None:
    """An fd object that is dropped without `with` still closes its fd."""
    kvm = Kvm.open(KernelBackend(), facts, DEVICE)
    fd = kvm.fd
    del kvm
    assert not is_open(fd)


@needs_kvm
def test_adopted_guest_memfd_closes(kvm: Kvm, facts: AbiFacts) -> None:
    """An fd returned by a raw KVM_CREATE_GUEST_MEMFD is closed once adopted."""
    require_guest_memfd(kvm)
    struct = facts.structs["kvm_create_guest_memfd"]
    arg = ctypes.create_string_buffer(struct.pack({"size": PAGE_SIZE}), struct.size)
    with kvm.create_vm(0) as vm:
        fd = vm.raw(facts.ioctls["KVM_CREATE_GUEST_MEMFD"].number, ctypes.addressof(arg))
        assert fd >= 0
        with vm.adopt_guest_memfd(fd, PAGE_SIZE, 0):
            assert is_open(fd)
        assert not is_open(fd)


def test_repr_and_ioctl_label(facts: AbiFacts) -> None:
    """Failure messages name a number by its ioctl, or decode it when no ioctl has it."""
    assert ioctl_label(facts, 0xC040AED4) == "KVM_CREATE_GUEST_MEMFD"
    assert ioctl_label(facts, 0xC080AED2) == "ioctl 0xc080aed2 (_IOWR(0xae, 0xd2, size 128))"
    assert ioctl_label(facts, 0xAE7F) == "ioctl 0x0000ae7f (_IO(0xae, 0x7f, size 0))"


# -- caps -------------------------------------------------------------------------------------


@needs_kvm
def test_caps_probe(kvm: Kvm, facts: AbiFacts) -> None:
    """Every cap the facts name is asked at /dev/kvm and on a VM of each type in
    KVM_CAP_VM_TYPES; the answers equal a direct KVM_CHECK_EXTENSION."""
    table = probe_caps(kvm)
    assert set(table.system) == set(facts.caps)
    for name in ("KVM_CAP_GUEST_MEMFD_FLAGS", "KVM_CAP_GUEST_MEMFD", "KVM_CAP_MEMORY_ATTRIBUTES", "KVM_CAP_VM_TYPES"):
        assert table.at(name, None) == kvm.check_extension(facts.caps[name])
    assert table.system["KVM_CAP_CHECK_EXTENSION_VM"] == 1
    assert table.vm_types == (vm_types_of(table.system["KVM_CAP_VM_TYPES"]) or (0,))
    assert 0 in table.vm_types and 0 not in table.vm_errors
    for t in table.vm_types:
        assert set(table.vm[t]) == set(facts.caps)
        with kvm.create_vm(t) as vm:
            assert table.at("KVM_CAP_GUEST_MEMFD_FLAGS", t) == vm.check_extension(facts.caps["KVM_CAP_GUEST_MEMFD_FLAGS"])
    assert table.at("KVM_CAP_MEMORY_ATTRIBUTES2", None) is None  # released has no number for it: never asked
    assert probe_caps(kvm) == table  # deterministic


@needs_kvm
def test_cap_table_json_round_trip(kvm: Kvm) -> None:
    """xdist workers get the controller's probe as JSON: it must come back equal."""
    table = probe_caps(kvm)
    wire = json.loads(json.dumps(table.to_json()))
    assert CapTable.from_json(wire) == table


def test_cap_table_json_keys() -> None:
    """JSON turns int keys into strings; from_json turns them back."""
    t = CapTable({"KVM_CAP_VM_TYPES": 0x13}, {0: {"A": 1}, 4: {"A": 0}}, (0, 1, 4), {1: "KVM_CREATE_VM for a VM of type 1 failed"})
    back = CapTable.from_json(json.loads(json.dumps(t.to_json())))
    assert back == t and back.at("A", 4) == 0 and back.at("A", 2) is None and back.at("KVM_CAP_VM_TYPES", None) == 0x13
    assert vm_types_of(0x13) == (0, 1, 4) and vm_types_of(0) == ()


# -- device checks, names, exit codes ----------------------------------------------------------


def test_check_device_errors(tmp_path: Path) -> None:
    """Each way the device is unusable has its own error naming the path."""
    with pytest.raises(DeviceMissing, match="/nonexistent/kvm"):
        check_device("/nonexistent/kvm")
    plain = tmp_path / "kvm"
    plain.write_text("")
    with pytest.raises(DeviceNotCharacter, match=str(plain)):
        check_device(str(plain))


@needs_kvm
def test_check_device_ok() -> None:
    """This machine's /dev/kvm passes the check."""
    check_device(DEVICE)


def test_fd_labels() -> None:
    """The fd names that messages and skip reasons use."""
    assert FdKind.SYSTEM.label(0) == "/dev/kvm"
    assert FdKind.VM.label(1) == "a VM of type 1"
    assert FdKind.GUEST_MEMFD.label(0) == "a guest_memfd of a VM of type 0"


def test_errno_names() -> None:
    """Messages show errno names, not numbers."""
    assert errno_name(-errno.EINVAL) == errno_name(errno.EINVAL) == "EINVAL"
    assert errno_name(4095) == "errno 4095"
    assert describe(-errno.ENOTTY) == "ENOTTY" and describe(0) == "0 (success)" and describe(5) == "5 (success)"


# -- run folders --------------------------------------------------------------------------------


def test_run_folders(tmp_path: Path) -> None:
    """A run writes into a hidden .partial folder, published under its id at the end,
    never reusing an earlier run's folder; `latest` points at the newest."""
    a = RunFolder(tmp_path, "20260101-000000-000-1")
    assert a.path.name == ".20260101-000000-000-1.partial" and a.path.is_dir()
    (a.path / "report.html").write_text("a")
    final = a.finish()
    assert final == tmp_path / "20260101-000000-000-1" and (final / "report.html").read_text() == "a"
    assert (tmp_path / "latest").resolve() == final.resolve()
    b = RunFolder(tmp_path)
    assert b.id != a.id
    b.abandon()
    assert not b.path.exists()
    c = RunFolder(tmp_path, "20260101-000000-000-3")
    broken = c.mark_incomplete("stopped")
    assert broken.name.endswith(".incomplete") and (broken / "INCOMPLETE").read_text() == "stopped\n"
    assert (tmp_path / "latest").resolve() == broken.resolve()  # the newest run, complete or not
    with pytest.raises(errors.ReportsNotWritable):
        RunFolder(final / "report.html")


@pytest.mark.parametrize("backend", ["kernel", "model"])
def test_vcpu_object(backend: str) -> None:
    """A vCPU: KVM_CREATE_VCPU, its kvm_run mapped for KVM_GET_VCPU_MMAP_SIZE bytes, a
    duplicate id refused with EEXIST, and fd and mapping gone after close."""
    facts = load_profile("released")
    be = KernelBackend() if backend == "kernel" else ModelBackend(facts)
    if backend == "kernel":
        try:
            check_device("/dev/kvm")
        except KvmconfError as e:
            pytest.skip(str(e))
    with Kvm.open(be, facts, "/dev/kvm") as kvm, kvm.create_vm(0) as vm:
        size = kvm.vcpu_mmap_size()
        assert size > 0 and size % PAGE_SIZE == 0
        with vm.create_vcpu(0, size) as vcpu:
            assert vcpu.kind == FdKind.VCPU and vcpu.run_addr and vcpu.run_size == size
            assert vcpu.label == "vCPU 0 of a VM of type 0" == FdKind.VCPU.label(0)
            with pytest.raises(IoctlError, match=r"KVM_CREATE_VCPU\(id 0\) on a VM of type 0 failed: EEXIST"):
                vm.create_vcpu(0, size)
            fd = vcpu.fd
        assert vcpu.fd == -1 and vcpu.run_addr == 0
        with pytest.raises(OSError):
            os.fstat(fd)
