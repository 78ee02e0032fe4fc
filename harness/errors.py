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


class CompareInputError(KvmconfError):
    exit_code = 70
