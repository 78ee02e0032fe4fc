"""Named failures of a QEMU run, each with the exit code the CLI returns for it.

A boot that goes wrong is a result in its own right, not a crash of the suite: the
caller tells a reviewer *what* broke (their kernel panicked, it lacks KVM, QEMU is
not installed) from the class alone, and scripts tell it from the exit code (the
table is `harness.errors.EXIT_CODES`).
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import KvmconfError


class GuestError(KvmconfError):
    """Base of every way a guest run can fail; the message is one line."""

    exit_code = 1

    def __init__(self, message: str, console_log: Path | None = None) -> None:
        self.message = message
        self.console_log = console_log
        where = f" (console log: {console_log})" if console_log is not None else ""
        super().__init__(f"{message}{where}")


class KernelNotFoundError(GuestError):
    """The kernel path given does not exist."""

    exit_code = 20


class NotBootableKernelError(GuestError):
    """The kernel path exists but holds no x86 bzImage."""

    exit_code = 21


class KernelPanicError(GuestError):
    """The guest kernel printed `Kernel panic`."""

    exit_code = 22


class GuestCrashError(GuestError):
    """The guest machine stopped mid-run without a panic message (reset, QEMU died)."""

    exit_code = 28


class NoDevKvmError(GuestError):
    """The guest booted but has no /dev/kvm after loading its KVM modules."""

    exit_code = 23


class GuestTimeoutError(GuestError):
    """The guest did not finish in time; QEMU was killed."""

    exit_code = 24


class QemuMissingError(GuestError):
    """qemu-system-x86_64 is not installed on the host."""

    exit_code = 25


class GuestNeverRanError(GuestError):
    """The guest stopped before the command started (setup step failed, exec failed)."""

    exit_code = 26


class RootMountError(GuestNeverRanError):
    """The guest could not mount the host's root over virtio-9p."""

    exit_code = 26
