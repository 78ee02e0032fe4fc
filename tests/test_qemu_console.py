"""The console parser on golden logs captured from real boots, and on edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.qemu.console import LineKind, parse_console, progress_text
from harness.qemu.errors import (
    GuestCrashError,
    GuestError,
    GuestNeverRanError,
    KernelPanicError,
    NoDevKvmError,
    RootMountError,
)

CONSOLES = Path(__file__).parent / "data" / "consoles"


def golden(name: str) -> list[str]:
    return (CONSOLES / f"{name}.log").read_text().splitlines(keepends=True)


def test_clean_run() -> None:
    verdict = parse_console(golden("clean"))
    assert verdict.error(CONSOLES / "clean.log") is None
    assert verdict.release == "7.3.4+deb13-amd64"
    assert verdict.modules[-4:] == ("irqbypass", "kvm", "ccp", "kvm_amd")
    assert verdict.kvm_found and verdict.started
    assert verdict.exit_status == 0 and verdict.tainted == 0
    assert verdict.panic is None and verdict.kernel_problems == ()


@pytest.mark.parametrize(
    ("name", "kind", "code", "words"),
    [
        ("panic", KernelPanicError, 22, "sysrq triggered crash"),
        ("no-dev-kvm", NoDevKvmError, 23, "kvm_amd: cpu has no svm"),
        ("root-mount-failed", RootMountError, 26, "No such device"),
    ],
)
def test_failed_boots(name: str, kind: type[GuestError], code: int, words: str) -> None:
    log = CONSOLES / f"{name}.log"
    error = parse_console(golden(name)).error(log)
    assert type(error) is kind
    assert error.exit_code == code
    assert words in str(error) and str(log) in str(error)
    assert "\n" not in str(error)


def test_line_kinds() -> None:
    from harness.qemu.console import ConsoleParser

    parser = ConsoleParser()
    assert parser.feed("[    1.000000] mtrr: noise") is LineKind.KERNEL
    assert parser.feed("kvmconf-guest: release 7.3") is LineKind.GUEST
    assert parser.feed("kvmconf-progress: 12/340") is LineKind.PROGRESS
    assert parser.feed("collected 340 items") is LineKind.OUTPUT
    assert progress_text("kvmconf-progress: 12/340") == "12/340"
    assert progress_text("12/340") is None


def test_exit_marker_after_unterminated_output_and_signals() -> None:
    assert parse_console(["kvmconf-guest: run /bin/x", "partialkvmconf-guest: exit 3"]).exit_status == 3
    assert parse_console(["kvmconf-guest: run /bin/x", "kvmconf-guest: signal 9"]).exit_status == -9


def test_kernel_problems_are_collected_but_do_not_fail_the_run() -> None:
    verdict = parse_console([
        "kvmconf-guest: run /bin/x",
        "[   10.000000] WARNING: CPU: 1 PID: 99 at arch/x86/kvm/x86.c:123 kvm_foo+0x1/0x2 [kvm]",
        "[   10.100000] BUG: kernel NULL pointer dereference, address: 0000000000000008",
        "kvmconf-guest: exit 0",
        "kvmconf-guest: tainted 512",
    ])
    assert verdict.error(None) is None
    assert verdict.tainted == 512
    assert [p.split(":")[0] for p in verdict.kernel_problems] == ["WARNING", "BUG"]


def test_panic_wins_over_an_exit_status() -> None:
    verdict = parse_console(["kvmconf-guest: exit 0",
                             "[    5.000000] Kernel panic - not syncing: x"])
    assert isinstance(verdict.error(None), KernelPanicError)


def test_panic_is_read_from_kernel_lines_only() -> None:
    glued = parse_console(["no newline[   12.345678] Kernel panic - not syncing: Oops"])
    assert glued.panic == "Kernel panic - not syncing: Oops"
    said = parse_console(["kvmconf-guest: run /x", "test_no_Kernel panic_here PASSED",
                          "kvmconf-guest: exit 0"])
    assert said.panic is None and said.error(None) is None


@pytest.mark.parametrize(
    ("lines", "kind", "words"),
    [
        ([], GuestNeverRanError, "printed nothing"),
        (["kvmconf-guest: release 7.3"], GuestNeverRanError, "kernel 7.3 started"),
        (["kvmconf-guest: run /x", "kvmconf-guest: exec-failed /x: No such file or directory",
          "kvmconf-guest: exit 127"], GuestNeverRanError, "exec-failed /x"),
        (["kvmconf-guest: mount-failed out /newroot/o: Permission denied"], GuestNeverRanError,
         "could not mount out"),
        (["kvmconf-guest: run /x", "some output"], GuestCrashError, "no exit status"),
        (["kvmconf-guest: missing /dev/kvm"], NoDevKvmError, "no modules to load"),
    ],
)
def test_other_outcomes(lines: list[str], kind: type[GuestError], words: str) -> None:
    error = parse_console(lines).error(None, "QEMU exited with status 1: boom")
    assert type(error) is kind
    assert words in str(error) and "boom" in str(error)
