"""Run a command inside a kernel booted under QEMU, against that guest's own /dev/kvm.

The host's /dev/kvm may be too old or not KVM at all (here: the paravirtual kvm_pvm);
booting the kernel under test in QEMU lets the suite check any kernel's uAPI.
`run_in_qemu` is the entry point; every failure is a `GuestError` with an exit code.
"""

from harness.qemu.console import ConsoleVerdict, parse_console
from harness.qemu.errors import (
    GuestCrashError,
    GuestError,
    GuestNeverRanError,
    GuestTimeoutError,
    KernelNotFoundError,
    KernelPanicError,
    NoDevKvmError,
    NotBootableKernelError,
    QemuMissingError,
    RootMountError,
)
from harness.qemu.runner import GuestResult, run_in_qemu

__all__ = [
    "ConsoleVerdict",
    "GuestCrashError",
    "GuestError",
    "GuestNeverRanError",
    "GuestResult",
    "GuestTimeoutError",
    "KernelNotFoundError",
    "KernelPanicError",
    "NoDevKvmError",
    "NotBootableKernelError",
    "QemuMissingError",
    "RootMountError",
    "parse_console",
    "run_in_qemu",
]
