"""The KVM device node, checked before anything is run against it.

A wrong `--kvm-device` must never look like a kernel that skips most cases: /dev/null
or /dev/zero open read-write and answer every ioctl with ENOTTY, which the cap probe
would read as "no cap" and the run as 1118 skips. So the node must be a character
device that answers `KVM_GET_API_VERSION` with 12, the only version KVM has had since
Linux 2.6.22 (Documentation/virt/kvm/api.rst, 4.1).
"""

from __future__ import annotations

import errno
import grp
import os
import stat

from harness.abi.ioc import Dir, host_encoding
from harness.errors import DeviceMissing, DeviceNotCharacter, DeviceNotKvm, DevicePermission
from harness.host.backend import KernelBackend

KVMIO = 0xAE
KVM_API_VERSION = 12


def _permission_hint(path: str) -> str:
    """What to do about a node this user may not open: join its group only where that
    group may read and write it (udev's `kvm`), since not every host has a kvm group."""
    try:
        st = os.stat(path)
        group = grp.getgrgid(st.st_gid).gr_name if st.st_mode & 0o060 == 0o060 and st.st_gid != 0 else None
    except (KeyError, OSError):
        group = None
    if group is not None:
        return f"add your user to the {group} group (usermod -aG {group} $USER, then log in again) or run as root"
    return "run as root, or give --kvm-device a node you may open read-write"


def check_device(path: str) -> None:
    """One clear line for each way the KVM device can be unusable."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DeviceMissing(
            f"{path}: no such device; load KVM (modprobe kvm_intel or kvm_amd) or give --kvm-device PATH"
        ) from None
    except PermissionError:
        raise DevicePermission(f"{path}: permission denied (a folder on the way cannot be searched); "
                               "run as root or give --kvm-device PATH") from None
    if not stat.S_ISCHR(st.st_mode):
        raise DeviceNotCharacter(f"{path}: not a character device; --kvm-device must name the KVM device node")
    backend = KernelBackend()
    try:
        fd = backend.open(path)
    except PermissionError:
        raise DevicePermission(f"{path}: permission denied opening it read-write; {_permission_hint(path)}") from None
    except OSError as e:
        raise DeviceMissing(f"{path}: cannot be opened ({errno.errorcode.get(e.errno or 0, e)}); is KVM loaded?") from None
    try:
        version = backend.ioctl(fd, host_encoding().ioc(Dir.NONE, KVMIO, 0x00, 0), 0)
    finally:
        backend.close(fd)
    if version != KVM_API_VERSION:
        answer = errno.errorcode.get(-version, str(version)) if version < 0 else str(version)
        raise DeviceNotKvm(f"{path}: not a KVM device (KVM_GET_API_VERSION answered {answer}, not {KVM_API_VERSION}); "
                           "--kvm-device must name the KVM device node")
