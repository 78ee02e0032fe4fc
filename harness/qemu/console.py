"""Read the guest's serial console: what the init reported, what the kernel complained
about, and the command's own output.

Pure: it takes lines and nothing else, so a saved `console.log` (or a golden log in
tests/data/consoles/) parses exactly as the live stream did. The runner feeds lines as
they arrive to time them; `parse_console` reads a finished log.

Three kinds of line reach the console:
- the init's markers, `kvmconf-guest: <event> ...` (see init.c);
- kernel messages, each stamped `[   12.345678]` (printk.time=1);
- the command's stdout/stderr, among which `kvmconf-progress: <text>` lines are
  progress for the host to show.
A marker or a stamp is found anywhere in a line, since the command may leave its last
line unterminated before the next kernel message or the init's `exit` marker.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.qemu.errors import (
    GuestCrashError,
    GuestError,
    GuestNeverRanError,
    KernelPanicError,
    NoDevKvmError,
    RootMountError,
)

GUEST_MARK = "kvmconf-guest: "
PROGRESS_MARK = "kvmconf-progress: "

# printk stamps are "[%5lu.%06lu] "; one may follow command output left unterminated
_KERNEL_LINE = re.compile(r"\[\s*\d+\.\d{6}\]\s?(.*)$")
_PROBLEM = re.compile(
    r"^(BUG:|Oops|WARNING:|general protection fault|kernel BUG|UBSAN:|KASAN:|"
    r"Unable to handle|watchdog: BUG)"
)
_SETUP_FAILURES = ("switch-root-failed", "chdir-failed", "exec-failed", "script-error",
                   "script-missing")


class LineKind(enum.Enum):
    """What one console line is."""

    GUEST = "guest"
    PROGRESS = "progress"
    KERNEL = "kernel"
    OUTPUT = "output"


@dataclass(frozen=True)
class ConsoleVerdict:
    """Everything the console said about a run, and what it means."""

    release: str | None = None
    modules: tuple[str, ...] = ()
    module_failures: tuple[str, ...] = ()
    module_skips: tuple[str, ...] = ()
    kvm_found: bool = False
    kvm_missing: bool = False
    mount_failure: tuple[str, str] | None = None
    setup_failure: str | None = None
    started: bool = False
    exit_status: int | None = None
    tainted: int | None = None
    panic: str | None = None
    kernel_problems: tuple[str, ...] = ()

    def error(self, console_log: Path | None, detail: str = "") -> GuestError | None:
        """The failure this console shows, or None if the command ran to its end."""
        extra = f"; {detail}" if detail else ""
        if self.panic is not None:
            return KernelPanicError(f"guest kernel panicked: {self.panic}{extra}", console_log)
        if self.setup_failure is not None:  # exec-failed comes with exit status 127
            return GuestNeverRanError(f"guest setup failed: {self.setup_failure}{extra}",
                                      console_log)
        if self.exit_status is not None:
            return None
        if self.kvm_missing:
            if self.modules or self.module_failures or self.module_skips:
                why = f"after loading {' '.join(self.modules) or 'no module'}"
                why += "".join(f"; {m}" for m in (*self.module_failures, *self.module_skips))
            else:
                why = "and no modules to load (is CONFIG_KVM with KVM_AMD/KVM_INTEL built in?)"
            return NoDevKvmError(f"no /dev/kvm in the guest {why}{extra}", console_log)
        if self.mount_failure is not None:
            label, why = self.mount_failure
            if label == "root":
                failed = "".join(f"; {m}" for m in self.module_failures)
                return RootMountError(
                    f"guest could not mount the host root over 9p: {why}{failed} (the kernel "
                    f"needs CONFIG_9P_FS and CONFIG_NET_9P_VIRTIO, built in or as modules){extra}",
                    console_log,
                )
            return GuestNeverRanError(f"guest could not mount {label} at {why}{extra}",
                                      console_log)
        if self.started:
            return GuestCrashError(
                f"guest stopped while the command ran, with no exit status{extra}", console_log
            )
        booted = f"kernel {self.release} started" if self.release else "the guest printed nothing"
        return GuestNeverRanError(f"guest never reached the command ({booted}){extra}",
                                  console_log)


class ConsoleParser:
    """Incremental reader: `feed` each line, then ask for the `verdict`."""

    def __init__(self) -> None:
        self._release: str | None = None
        self._modules: list[str] = []
        self._module_failures: list[str] = []
        self._module_skips: list[str] = []
        self._kvm_found = False
        self._kvm_missing = False
        self._mount_failure: tuple[str, str] | None = None
        self._setup_failure: str | None = None
        self._started = False
        self._exit_status: int | None = None
        self._tainted: int | None = None
        self._panic: str | None = None
        self._problems: list[str] = []

    def feed(self, line: str) -> LineKind:
        """Take one line (without its line ending) and say what kind it is."""
        kernel = _KERNEL_LINE.search(line)
        if kernel is not None:
            body = kernel.group(1).strip()
            if "Kernel panic" in body:
                self._panic = self._panic or body
            elif _PROBLEM.match(body):
                self._problems.append(body)
            return LineKind.KERNEL
        at = line.find(GUEST_MARK)
        if at >= 0:
            self._event(line[at + len(GUEST_MARK):].strip())
            return LineKind.GUEST
        if PROGRESS_MARK in line:
            return LineKind.PROGRESS
        return LineKind.OUTPUT

    def _event(self, event: str) -> None:
        name, _, rest = event.partition(" ")
        if name == "release":
            self._release = rest
        elif name == "module":
            self._modules.append(rest)
        elif name == "module-failed":
            self._module_failures.append(f"{rest} (failed)")
        elif name == "module-skipped":
            self._module_skips.append(f"{rest} (skipped)")
        elif name == "found":
            self._kvm_found = True
        elif name == "missing":
            self._kvm_missing = True
        elif name == "mount-failed":
            label, _, why = rest.partition(" ")
            self._mount_failure = (label, why)
        elif name in _SETUP_FAILURES:
            self._setup_failure = event
        elif name == "run":
            self._started = True
        elif name == "exit" and rest.lstrip("-").isdigit():
            self._exit_status = int(rest)
        elif name == "signal" and rest.isdigit():
            self._exit_status = -int(rest)
        elif name == "tainted" and rest.isdigit():
            self._tainted = int(rest)

    def verdict(self) -> ConsoleVerdict:
        """What the lines fed so far add up to."""
        return ConsoleVerdict(
            release=self._release,
            modules=tuple(self._modules),
            module_failures=tuple(self._module_failures),
            module_skips=tuple(self._module_skips),
            kvm_found=self._kvm_found,
            kvm_missing=self._kvm_missing,
            mount_failure=self._mount_failure,
            setup_failure=self._setup_failure,
            started=self._started,
            exit_status=self._exit_status,
            tainted=self._tainted,
            panic=self._panic,
            kernel_problems=tuple(self._problems),
        )


def progress_text(line: str) -> str | None:
    """The text after the progress marker, or None if `line` is no progress line."""
    at = line.find(PROGRESS_MARK)
    return line[at + len(PROGRESS_MARK):].strip() if at >= 0 else None


def parse_console(lines: Iterable[str]) -> ConsoleVerdict:
    """The verdict for a whole console log (line endings may be left on)."""
    parser = ConsoleParser()
    for line in lines:
        parser.feed(line.rstrip("\r\n"))
    return parser.verdict()
