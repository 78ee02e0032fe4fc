"""Errors a user can cause, each with one line to print and a distinct exit code.

The codes are documented in the README; pytest's own codes (0-5) and 130 (interrupted)
keep their meaning, so ours start at 10.
"""

from __future__ import annotations


class KvmconfError(Exception):
    """Base of every error that ends a run with one line and `exit_code`."""

    exit_code = 9


class DeviceMissing(KvmconfError):
    exit_code = 10


class DeviceNotCharacter(KvmconfError):
    exit_code = 11


class DevicePermission(KvmconfError):
    exit_code = 12


class HeaderMissing(KvmconfError):
    exit_code = 30


class HeaderCompileError(KvmconfError):
    exit_code = 31


class HeaderIncomplete(KvmconfError):
    exit_code = 32


class GccMissing(KvmconfError):
    exit_code = 33


class ExpectationsMalformed(KvmconfError):
    exit_code = 40


class ExpectationsUnknownCases(KvmconfError):
    exit_code = 41


class ProfileUnknown(KvmconfError):
    exit_code = 50


class ReportsNotWritable(KvmconfError):
    exit_code = 60


class SurfaceMissing(KvmconfError):
    """A struct ioctl of the ABI facts has no surface in harness/surfaces/."""

    exit_code = 52


class HeaderUnreadable(KvmconfError):
    """The header exists but its bytes cannot be read (permissions, an I/O error)."""

    exit_code = 34


class KernelUnreadable(KvmconfError):
    """The --kernel image exists but cannot be read (permissions, an I/O error)."""

    exit_code = 28


class CompareInputError(KvmconfError):
    exit_code = 70
