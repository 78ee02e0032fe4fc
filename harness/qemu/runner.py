"""Boot a kernel under QEMU and run one command in it against the guest's own /dev/kvm.

This is the only module of harness.qemu that runs programs (gcc once, then QEMU); the
rest is pure and tested without either. The flow: find the image and its modules,
build (or reuse) the static init, write an initramfs with the script for it, start
QEMU with the console on a pipe, and read that pipe line by line, saving it to
`out_dir/console.log`, timing the markers and forwarding progress, until the guest
powers off, panics or runs out of time.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from harness.errors import GccMissing
from harness.paths import ROOT
from harness.qemu.accel import Accel, host_accel, parse_accel
from harness.qemu.cmdline import Port, QemuParams, Share, qemu_argv
from harness.qemu.console import (
    GUEST_MARK,
    ConsoleParser,
    LineKind,
    progress_text,
)
from harness.qemu.errors import (
    GuestNeverRanError,
    GuestTimeoutError,
    QemuMissingError,
)
from harness.qemu.initramfs import (
    EXECUTOR_PORT,
    OUT_TAG,
    ROOT_TAG,
    GuestPlan,
    encode_script,
    executor_script,
    guest_script,
    initramfs,
    module_file,
)
from harness.qemu.kernel import KernelImage, find_kernel
from harness.qemu.modules import KVM_MODULES, ModuleTree, read_module
from harness.remote.backend import build_executor

PROJECT_ROOT = ROOT
INIT_SOURCE = Path(__file__).with_name("init.c")
QEMU = "qemu-system-x86_64"
_SHUTDOWN_GRACE_S = 20.0  # after the exit marker or a panic, QEMU should be gone by then
_EXIT_WAIT_S = 10.0  # QEMU closes the console a moment before it exits
# The init starts ~2-5 s after QEMU (15 s on a loaded host). Once in ~50 TCG boots the
# kernel was seen to hang before that; such a boot is tried once more, since nothing
# of the command has run yet. Generous, so that a slow debug kernel is not cut short.
_BOOT_STALL_S = 180.0

# How reading the console ended: QEMU closed it, the guest finished but QEMU stayed up,
# the init never started, or the run's time ran out.
_Ending = Literal["closed", "stuck", "stalled", "timeout"]


@dataclass(frozen=True)
class GuestResult:
    """How the guest command ended, and how long each part took.

    Times are seconds since QEMU was started (the last time, if the first boot stalled:
    `boot_attempts` is then 2). `exit_status` is the command's exit status, or minus
    the signal number that killed it. `kernel_problems` lists WARNING/BUG/Oops lines the
    guest kernel printed; `tainted` is /proc/sys/kernel/tainted after the command.
    """

    exit_status: int
    kernel_release: str
    accel: Accel
    ready_s: float
    first_output_s: float | None
    total_s: float
    console_log: Path
    modules: tuple[str, ...]
    tainted: int | None
    kernel_problems: tuple[str, ...]
    boot_attempts: int


def cache_dir() -> Path:
    """Where built artefacts are kept between runs (`$XDG_CACHE_HOME/kvmconf`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kvmconf"


def build_init(cache: Path | None = None) -> Path:
    """The static guest init, compiled once per version of init.c."""
    return build_static(INIT_SOURCE, "init", cache)


def build_static(source_path: Path, name: str, cache: Path | None = None) -> Path:
    """A static program for the guest (`name`-HASH in the cache), compiled once per
    version of its source: nothing in the guest needs a libc of its own."""
    source = source_path.read_bytes()
    target = (cache or cache_dir()) / f"{name}-{hashlib.sha256(source).hexdigest()[:16]}"
    if target.exists():
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise GccMissing(
            f"gcc not found, needed once to build the guest {name}: apt-get install gcc libc6-dev"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    built = subprocess.run(
        [gcc, "-static", "-Os", "-Wall", "-o", str(partial), str(source_path)],
        capture_output=True, text=True, check=False,
    )
    if built.returncode != 0:
        last = (built.stderr.strip().splitlines() or ["no message"])[-1]
        raise GccMissing(
            f"gcc could not build the static guest {name} ({last}): apt-get install gcc libc6-dev"
        )
    os.replace(partial, target)
    return target


def _resolve_command(argv0: str) -> str:
    """An absolute path for argv[0], found on the host (the guest sees the same files)."""
    if "/" in argv0:
        return str(PROJECT_ROOT / argv0)
    found = shutil.which(argv0)
    if found is None:
        raise GuestNeverRanError(f"guest command {argv0!r} not found on the host's PATH")
    return found


class _Session:
    """One QEMU process: reads its console, times it, and tells progress."""

    def __init__(self, log: TextIO, progress: Callable[[str], None], start: float) -> None:
        self.log = log
        self.progress = progress
        self.start = start
        self.parser = ConsoleParser()
        self.ready_s: float | None = None
        self.first_output_s: float | None = None
        self.finished_at: float | None = None

    def line(self, text: str) -> None:
        now = time.monotonic() - self.start
        self.log.write(text + "\n")
        self.log.flush()  # a host command reads it for why the executor died
        kind = self.parser.feed(text)
        if kind is LineKind.GUEST:
            self._guest_event(text[text.index(GUEST_MARK) + len(GUEST_MARK):].strip(), now)
        elif kind is LineKind.PROGRESS:
            self.progress(progress_text(text) or "")
        if kind in (LineKind.PROGRESS, LineKind.OUTPUT) and self.ready_s is not None:
            self.first_output_s = self.first_output_s or now
        if self.parser.verdict().panic is not None and self.finished_at is None:
            self.finished_at = now

    def host_line(self, text: str) -> None:
        """A line of the host command's output: progress is told, the rest kept in the log."""
        shown = progress_text(text)
        if shown is None:
            self.log.write(text + "\n")
            return
        self.progress(shown)
        self.first_output_s = self.first_output_s or time.monotonic() - self.start

    def _guest_event(self, event: str, now: float) -> None:
        name, _, rest = event.partition(" ")
        if name == "found":
            modules = " ".join(self.parser.verdict().modules) or "none (built in)"
            self.progress(f"modules loaded: {modules}")
            self.progress(f"/dev/kvm ready after {now:.1f} s")
        elif name == "module-failed":
            self.progress(f"module failed to load: {rest}")
        elif name == "run":
            self.ready_s = now
            self.progress(f"guest ready after {now:.1f} s, running {rest}")
        elif name in ("exit", "signal"):
            self.finished_at = now
            self.progress(f"guest command ended ({name} {rest}) after {now:.1f} s")

    def stage(self) -> str:
        verdict = self.parser.verdict()
        if verdict.started:
            return "while the command ran"
        if verdict.release:
            return "during guest setup"
        return "before the guest init started"


def _pump(proc: subprocess.Popen[bytes], session: _Session, deadline: float,
          host: subprocess.Popen[bytes] | None = None) -> _Ending:
    """Feed console lines (and the host command's, when there is one) to `session` until
    QEMU closes the console and the host command's output ends, or time runs out."""
    assert proc.stdout is not None
    console = proc.stdout.fileno()
    feeds: dict[int, Callable[[str], None]] = {console: session.line}
    if host is not None:
        assert host.stdout is not None
        feeds[host.stdout.fileno()] = session.host_line
    pending = dict.fromkeys(feeds, b"")

    def end(src: int) -> None:
        if pending[src]:
            feeds[src](pending[src].decode(errors="replace").rstrip("\r"))
        del feeds[src]
        if src != console and session.finished_at is None:
            session.finished_at = time.monotonic() - session.start  # the suite is done: the guest has its grace

    while feeds:
        limit = deadline
        if session.finished_at is not None:
            limit = min(deadline, session.start + session.finished_at + _SHUTDOWN_GRACE_S)
        stall_at = session.start + _BOOT_STALL_S
        if session.parser.verdict().release is None and stall_at < limit:
            if time.monotonic() >= stall_at:
                return "stalled"
            limit = stall_at
        remaining = limit - time.monotonic()
        if remaining <= 0:
            for src in list(feeds):
                end(src)
            return "stuck" if session.finished_at is not None else "timeout"
        for src in select.select(list(feeds), [], [], remaining)[0]:
            chunk = os.read(src, 65536)
            if not chunk:
                end(src)
                continue
            *lines, pending[src] = (pending[src] + chunk).split(b"\n")
            for raw in lines:
                feeds[src](raw.decode(errors="replace").rstrip("\r"))
    return "closed"


def _write_initramfs(path: Path, plan_argv: list[str], out_dir: Path, accel: Accel,
                     tree: ModuleTree | None, init: Path) -> None:
    modules = tree.guest_modules() if tree is not None else []
    plan = GuestPlan(
        argv=tuple(plan_argv),
        env=(("KVMCONF_GUEST", f"qemu-{accel}"),
             ("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")),
             ("HOME", str(Path.home()))),
        cwd=str(PROJECT_ROOT),
        out_dir=str(out_dir),
        modules=tuple((m.name, module_file(m.name), m.cpu_flag) for m in modules),
    )
    path.write_bytes(initramfs(
        init.read_bytes(),
        encode_script(guest_script(plan)),
        [(m.name, read_module(m.path)) for m in modules],
    ))


def qemu_binary() -> str:
    """QEMU's path, or the one line that says which package brings it."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise QemuMissingError(f"{QEMU} not found: apt-get install qemu-system-x86")
    return qemu


def _prepare(kernel: Path, out_dir: Path, accel: str | None, progress: Callable[[str], None] | None
             ) -> tuple[Callable[[str], None], str, KernelImage, Accel, Path]:
    """What every boot needs first: QEMU, the image, the accelerator and the output folder."""
    qemu = qemu_binary()
    image = find_kernel(kernel)
    chosen: Accel = parse_accel(accel) if accel is not None else host_accel()
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    return progress or (lambda _line: None), qemu, image, chosen, out_dir


def run_in_qemu(kernel: Path, guest_argv: list[str], out_dir: Path, *, accel: str | None = None,
                timeout_s: float = 900, progress: Callable[[str], None] | None = None,
                memory_mib: int = 2048, cpus: int = 2) -> GuestResult:
    """Boot `kernel` under QEMU and run `guest_argv` in it, cwd = the project root.

    The guest sees the host's files read-only and `out_dir` writable, both at the host's
    paths; the command gets KVMCONF_GUEST=qemu-tcg|qemu-kvm, PATH and HOME. Raises a
    GuestError subclass when the guest fails before the command finishes; a command
    that fails is a result (its exit status), not an error.
    """
    tell, qemu, image, chosen, out_dir = _prepare(kernel, out_dir, accel, progress)
    argv = [_resolve_command(guest_argv[0]), *guest_argv[1:]]
    init = build_init()
    tree = ModuleTree(image.modules) if image.modules is not None else None

    with tempfile.TemporaryDirectory(prefix="kvmconf-qemu-") as tmp:
        initrd = Path(tmp) / "initramfs.cpio"
        _write_initramfs(initrd, argv, out_dir, chosen, tree, init)
        params = QemuParams(
            kernel=image.image, initrd=initrd, accel=chosen, memory_mib=memory_mib, cpus=cpus,
            shares=(Share(ROOT_TAG, Path("/"), readonly=True),
                    Share(OUT_TAG, out_dir, readonly=False)),
            binary=qemu,
        )
        tell(f"booting {image.release or image.image.name} under QEMU ({chosen})")
        return _run(params, out_dir / "console.log", tell, timeout_s, Path(tmp))


def run_with_executor(kernel: Path, host_argv: list[str], out_dir: Path, *, accel: str | None = None,
                      timeout_s: float = 900, progress: Callable[[str], None] | None = None,
                      memory_mib: int = 2048, cpus: int = 2) -> GuestResult:
    """Boot `kernel` with only the executor in its initramfs, and run `host_argv` here.

    The host command reaches the executor through the virtio-serial port's socket named
    by KVMCONF_EXECUTOR (`unix:PATH`), and gets KVMCONF_CONSOLE_LOG (the console, for
    why the executor died) and KVMCONF_GUEST. Its exit status is the result's; errors
    as `run_in_qemu`'s. No root share: the guest needs no Python and no host files.
    """
    tell, qemu, image, chosen, out_dir = _prepare(kernel, out_dir, accel, progress)
    console_log = out_dir / "console.log"
    tree = ModuleTree(image.modules) if image.modules is not None else None
    modules = tree.guest_modules(KVM_MODULES) if tree is not None else []
    with tempfile.TemporaryDirectory(prefix="kvmconf-qemu-") as tmp:
        initrd = Path(tmp) / "initramfs.cpio"
        socket_path = Path(tmp) / "executor.sock"
        script = executor_script([(m.name, module_file(m.name), m.cpu_flag) for m in modules])
        initrd.write_bytes(initramfs(build_init().read_bytes(), encode_script(script),
                                     [(m.name, read_module(m.path)) for m in modules],
                                     executor=build_executor().read_bytes()))
        params = QemuParams(kernel=image.image, initrd=initrd, accel=chosen, memory_mib=memory_mib, cpus=cpus,
                            shares=(), ports=(Port(EXECUTOR_PORT, socket_path),), binary=qemu)
        host = HostCommand(tuple(host_argv), (("KVMCONF_EXECUTOR", f"unix:{socket_path}"),
                                              ("KVMCONF_CONSOLE_LOG", str(console_log)),
                                              ("KVMCONF_GUEST", f"qemu-{chosen}")))
        tell(f"booting {image.release or image.image.name} under QEMU ({chosen}), the suite on the host")
        result = _run(params, console_log, tell, timeout_s, Path(tmp), host)
    return result


def _run(params: QemuParams, console_log: Path, tell: Callable[[str], None], timeout_s: float, tmp: Path,
         host: HostCommand | None = None) -> GuestResult:
    """Boot (once more if the first boot stalled), then judge how it ended."""
    deadline = time.monotonic() + timeout_s
    boot = _boot(qemu_argv(params), console_log, tell, deadline, tmp, host)
    attempts = 1
    if boot.ending == "stalled":
        kept = console_log.replace(console_log.with_name("console.stalled.log"))
        tell(f"guest init did not start within {_BOOT_STALL_S:g} s; booting again "
             f"(first console kept as {kept.name})")
        boot = _boot(qemu_argv(params), console_log, tell, deadline, tmp, host)
        attempts = 2
    if boot.ending == "stalled":
        raise GuestTimeoutError(
            f"guest init did not start within {_BOOT_STALL_S:g} s, on two boots", console_log
        )
    if boot.ending == "timeout":
        raise GuestTimeoutError(
            f"guest did not finish within {timeout_s:g} s ({boot.session.stage()}); "
            "QEMU was killed",
            console_log,
        )
    verdict = boot.session.parser.verdict()
    if (boot.host_status is not None and verdict.started and verdict.panic is None
            and verdict.setup_failure is None and boot.ending in ("closed", "stuck")):
        if verdict.exit_status is None:  # the suite's own results stand; its hang is in them
            tell(f"the guest did not power off within {_SHUTDOWN_GRACE_S:g} s of the suite's end "
                 "(a call still hangs in it): QEMU was killed")
        return _result(boot, params.accel, console_log, attempts)
    error = verdict.error(
        console_log, _qemu_detail(boot.returncode, boot.stderr) if boot.ending == "closed" else ""
    )
    if error is not None:
        raise error
    return _result(boot, params.accel, console_log, attempts)


@dataclass(frozen=True)
class _Boot:
    """One QEMU process from start to end."""

    session: _Session
    ending: _Ending
    returncode: int
    stderr: str
    total_s: float
    host_status: int | None = None  # the host command's exit status, when there was one


@dataclass(frozen=True)
class HostCommand:
    """A command run on the host beside the guest (the suite, talking to the executor).

    It starts with QEMU; the run ends when both have ended. Its output is read like the
    console's: progress lines are told, the rest goes to the console log.
    """

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def _boot(argv: list[str], console_log: Path, tell: Callable[[str], None], deadline: float,
          tmp: Path, host: HostCommand | None = None) -> _Boot:
    """Run QEMU once (and the host command), saving the console to `console_log`, until
    they end or `deadline`."""
    stderr_path = tmp / "qemu.stderr"
    with console_log.open("w", encoding="utf-8") as log, stderr_path.open("wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err)
        beside = None
        if host is not None:
            beside = subprocess.Popen(list(host.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env={**os.environ, **dict(host.env)})
        session = _Session(log, tell, start)
        ending: _Ending = "timeout"
        try:
            ending = _pump(proc, session, deadline, beside)
            if ending == "closed":
                proc.wait(timeout=_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            ending = "stuck"
        finally:
            for child in (proc, beside):
                if child is None:
                    continue
                if child.poll() is None:
                    child.kill()
                child.wait()
                assert child.stdout is not None
                child.stdout.close()
        total_s = time.monotonic() - start
        stderr_text = stderr_path.read_text(errors="replace").strip()
        if stderr_text:
            log.write(f"--- {QEMU} stderr ---\n{stderr_text}\n")
    host_status = beside.returncode if beside is not None else None
    return _Boot(session, ending, proc.returncode, stderr_text, total_s, host_status)


def _qemu_detail(returncode: int, stderr_text: str) -> str:
    """Why QEMU itself failed, when it exited non-zero on its own."""
    if returncode == 0:
        return ""
    last = stderr_text.splitlines()[-1] if stderr_text else "no message"
    return f"QEMU exited with status {returncode}: {last}"


def _result(boot: _Boot, accel: Accel, console_log: Path, attempts: int) -> GuestResult:
    verdict = boot.session.parser.verdict()
    status = verdict.exit_status if boot.host_status is None else boot.host_status
    assert status is not None and boot.session.ready_s is not None
    return GuestResult(
        exit_status=status,
        kernel_release=verdict.release or "",
        accel=accel,
        ready_s=boot.session.ready_s,
        first_output_s=boot.session.first_output_s,
        total_s=boot.total_s,
        console_log=console_log,
        modules=verdict.modules,
        tainted=verdict.tainted,
        kernel_problems=verdict.kernel_problems,
        boot_attempts=attempts,
    )
