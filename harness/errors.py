"""Every exit code of `kvmconf`, in one table, and the errors a user can cause.

`EXIT_CODES` is the table the README's "Exit codes" shows (a test holds the two
equal). pytest's own codes (0-5) and 130 (interrupted) keep their meaning; a bad input
of ours has a code of its own from 10 up, and an error class that carries it. The
classes of the QEMU runner, the mutants and compare live beside their code and take
their numbers from this table (a test checks that every `KvmconfError` subclass does).
"""

from __future__ import annotations

EXIT_CODES: dict[int, str] = {
    0: "every case passed (known findings included)",
    1: "a case failed: a wrong answer, or the kernel warned, oopsed or tainted itself during it or between two cases, "
       "or it left a KVM fd or mapping open, or it hung (`hang: no answer within N s`, see `--case-timeout`); "
       "also when `-x` or `--maxfail` stopped the run",
    2: "pytest's: errors while collecting",
    3: "pytest's: internal error",
    4: "usage: an unknown option, or a bad value for one (a number out of range, an invalid `-k` expression); "
       "pytest's options go after `--`",
    5: "no case selected (by `-k` or pytest's options): nothing ran, no run folder",
    10: "`--kvm-device`: no such file",
    11: "`--kvm-device`: not a character device",
    12: "`--kvm-device`: permission denied",
    13: "`--kvm-device`: not a KVM device (`KVM_GET_API_VERSION` is not 12)",
    20: "`--kernel`: no such file",
    21: "`--kernel`: not a bootable kernel image (or not a regular file or folder: a FIFO is never opened)",
    22: "`--kernel`: the guest panicked",
    23: "`--kernel`: the guest has no `/dev/kvm`",
    24: "`--kernel`: the guest timed out (`--guest-timeout`)",
    25: "`--kernel`: QEMU (`qemu-system-x86_64`) not installed",
    26: "`--kernel`: the guest never ran the suite",
    27: "`--kernel`: the image cannot be read (permissions)",
    28: "`--kernel`: the guest stopped mid-run without a panic message",
    29: "`--backend remote`: the executor could not be reached, died or hung before the first case",
    30: "`--kvm-header`: no such file, or not a regular file (a FIFO, a folder)",
    31: "`--kvm-header`: does not compile (gcc's first error is shown)",
    32: "`--kvm-header`: lacks what the suite needs (`KVM_CREATE_VM`, `KVM_CHECK_EXTENSION`)",
    33: "gcc not installed, or it cannot build what the run needs (the header probe, the guest's static init, the bench's baseline)",
    34: "`--kvm-header` (or the `--kernel` folder's header): cannot be read (permissions)",
    40: "`--expectations`: not readable, not UTF-8, malformed TOML, or a key or table it does not know",
    41: "`--expectations`: names cases that do not exist",
    50: "`--profile`: unknown (the known ones are listed; a path is refused)",
    51: "`--mutant`: unknown, or given without `--backend model`",
    52: "`--profile`: its file is malformed",
    53: "a struct ioctl of the ABI facts has no surface in `harness/surfaces/` (a developer's error: it would get no cases)",
    60: "`--reports`: the folder cannot be written (not a folder, no permission, or the disk is full)",
    70: "`compare` (or `run --compare-with`): an argument is not a run folder or a whole `results.jsonl`",
    130: "interrupted (Ctrl-C or SIGTERM)",
}


class KvmconfError(Exception):
    """Base of every error that ends a run with one line and `exit_code`."""

    exit_code = 9


class UsageError(KvmconfError):
    exit_code = 4


class NothingSelected(KvmconfError):
    exit_code = 5


class DeviceMissing(KvmconfError):
    exit_code = 10


class DeviceNotCharacter(KvmconfError):
    exit_code = 11


class DevicePermission(KvmconfError):
    exit_code = 12


class DeviceNotKvm(KvmconfError):
    exit_code = 13


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


class ProfileMalformed(KvmconfError):
    exit_code = 52


class ReportsNotWritable(KvmconfError):
    exit_code = 60


class SurfaceMissing(KvmconfError):
    """A struct ioctl of the ABI facts has no surface in harness/surfaces/."""

    exit_code = 53


class HeaderUnreadable(KvmconfError):
    """The header exists but its bytes cannot be read (permissions, an I/O error)."""

    exit_code = 34


class KernelUnreadable(KvmconfError):
    """The --kernel image exists but cannot be read (permissions, an I/O error)."""

    exit_code = 27


class CompareInputError(KvmconfError):
    exit_code = 70
