"""run_in_qemu end to end against a fake qemu-system-x86_64 that replays a console.

The fake stands in for QEMU so the runner's own logic (timing, progress, the saved
log, timeouts, errors) is tested in a second, without a kernel. The real boot is in
test_qemu_boot.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.errors import GccMissing
from harness.qemu import initramfs as initramfs_module
from harness.qemu import runner
from harness.qemu.errors import (
    GuestNeverRanError,
    GuestTimeoutError,
    KernelNotFoundError,
    KernelPanicError,
    QemuMissingError,
)
from tests.test_qemu_kernel import fake_bzimage

CONSOLES = Path(__file__).parent / "data" / "consoles"

FAKE_QEMU = """#!{python}
import json, os, sys, time
with open(os.environ["FAKE_QEMU_ARGV"], "w") as f:
    json.dump(sys.argv, f)
once = os.environ.get("FAKE_QEMU_STALL_ONCE")
if once and not os.path.exists(once):
    open(once, "w").close()
    time.sleep(60)
sys.stdout.write(open(os.environ["FAKE_QEMU_CONSOLE"]).read())
sys.stdout.flush()
sys.stderr.write(os.environ.get("FAKE_QEMU_STDERR", ""))
time.sleep(float(os.environ.get("FAKE_QEMU_SLEEP", "0")))
sys.exit(int(os.environ.get("FAKE_QEMU_EXIT", "0")))
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin folder with the fake QEMU first on PATH, and a fake kernel folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU.format(python=sys.executable))
    qemu.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_QEMU_ARGV", str(tmp_path / "argv.json"))
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "bzImage").write_bytes(fake_bzimage("7.3.4-test (x@y) #1"))
    return tmp_path


def replay(monkeypatch: pytest.MonkeyPatch, console: Path, sleep: float = 0, exit_status: int = 0,
           stderr: str = "") -> None:
    """Have the fake print `console`, then wait `sleep` seconds and exit."""
    monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(console))
    monkeypatch.setenv("FAKE_QEMU_SLEEP", str(sleep))
    monkeypatch.setenv("FAKE_QEMU_EXIT", str(exit_status))
    monkeypatch.setenv("FAKE_QEMU_STDERR", stderr)


def test_clean_run_reports_result_progress_and_log(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replay(monkeypatch, CONSOLES / "clean.log")
    lines: list[str] = []
    result = runner.run_in_qemu(fake / "kernel", ["/bin/true", "arg"], fake / "out",
                                accel="tcg", progress=lines.append, memory_mib=512, cpus=1)
    assert result.exit_status == 0 and result.kernel_release == "7.3.4+deb13-amd64"
    assert result.accel == "tcg" and result.tainted == 0 and result.boot_attempts == 1
    assert result.first_output_s is not None and result.ready_s <= result.first_output_s
    assert result.first_output_s <= result.total_s
    assert result.console_log == (fake / "out" / "console.log").resolve()
    assert result.console_log.read_text() == (CONSOLES / "clean.log").read_text()
    assert lines[0] == "booting 7.3.4-test under QEMU (tcg)"
    assert "modules loaded: netfs 9pnet 9pnet_virtio 9p irqbypass kvm ccp kvm_amd" in lines
    assert any(line.startswith("/dev/kvm ready after ") for line in lines)
    assert [line for line in lines if "/" in line and line[0].isdigit()] == ["1/2", "2/2"]
    argv = json.loads((fake / "argv.json").read_text())
    assert argv[argv.index("-m") + 1] == "512" and argv[argv.index("-smp") + 1] == "1"
    assert argv[argv.index("-kernel") + 1] == str((fake / "kernel" / "bzImage").resolve())


def test_guest_script_carries_command_env_and_out_dir(fake: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    replay(monkeypatch, CONSOLES / "clean.log")
    captured: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    real = initramfs_module.initramfs

    def keep(init: bytes, script: bytes, modules: Sequence[tuple[str, bytes]]) -> bytes:
        captured.append((script, list(modules)))
        return real(init, script, modules)

    monkeypatch.setattr(runner, "initramfs", keep)
    runner.run_in_qemu(fake / "kernel", ["true", "x y"], fake / "out", accel="kvm")
    script, modules = captured[0]
    tokens = script.split(b"\0")
    assert b"KVMCONF_GUEST=qemu-kvm" in tokens
    assert tokens[tokens.index(b"chdir") + 1] == str(runner.PROJECT_ROOT).encode()
    args = [tokens[i + 1] for i, t in enumerate(tokens) if t == b"arg"]
    assert args[1:] == [b"x y"] and args[0].endswith(b"/true") and args[0].startswith(b"/")
    assert str((fake / "out").resolve()).encode() in b"".join(tokens)
    assert modules == []  # a bare bzImage has none


def test_panic_raises_with_log_path(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replay(monkeypatch, CONSOLES / "panic.log")
    with pytest.raises(KernelPanicError) as caught:
        runner.run_in_qemu(fake / "kernel", ["/bin/true"], fake / "out", accel="tcg")
    assert caught.value.exit_code == 22
    assert caught.value.console_log == (fake / "out" / "console.log").resolve()


def test_hung_guest_times_out_and_qemu_is_killed(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (fake / "silent.log").write_text("")
    replay(monkeypatch, fake / "silent.log", sleep=60)
    with pytest.raises(GuestTimeoutError, match=r"within 1 s \(before the guest init started\)") as caught:
        runner.run_in_qemu(fake / "kernel", ["/bin/true"], fake / "out", accel="tcg", timeout_s=1)
    assert caught.value.exit_code == 24


def test_guest_done_but_qemu_stuck_still_gives_the_result(fake: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    replay(monkeypatch, CONSOLES / "clean.log", sleep=60)
    monkeypatch.setattr(runner, "_SHUTDOWN_GRACE_S", 0.5)
    result = runner.run_in_qemu(fake / "kernel", ["/bin/true"], fake / "out", accel="tcg")
    assert result.exit_status == 0 and result.total_s < 30


def test_qemu_failing_on_its_own_is_named(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (fake / "silent.log").write_text("")
    replay(monkeypatch, fake / "silent.log", exit_status=1,
           stderr="qemu-system-x86_64: -fsdev local: cannot initialize fsdev\n")
    with pytest.raises(GuestNeverRanError, match=r"status 1: .*cannot initialize fsdev") as caught:
        runner.run_in_qemu(fake / "kernel", ["/bin/true"], fake / "out", accel="tcg")
    assert caught.value.exit_code == 26
    assert "--- qemu-system-x86_64 stderr ---" in (fake / "out" / "console.log").read_text()


def test_boot_that_stalls_before_init_is_tried_once_more(fake: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    replay(monkeypatch, CONSOLES / "clean.log")
    monkeypatch.setenv("FAKE_QEMU_STALL_ONCE", str(fake / "stalled-once"))
    monkeypatch.setattr(runner, "_BOOT_STALL_S", 1.0)
    lines: list[str] = []
    result = runner.run_in_qemu(fake / "kernel", ["/bin/true"], fake / "out", accel="tcg",
                                progress=lines.append)
    assert result.boot_attempts == 2 and result.exit_status == 0
    assert any("did not start within 1 s; booting again" in line for line in lines)
    assert (fake / "out" / "console.stalled.log").exists()


def test_boot_that_stalls_twice_is_a_timeout(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (fake / "silent.log").write_text("")
    replay(monkeypatch, fake / "silent.log", sleep=60)
    monkeypatch.setattr(runner, "_BOOT_STALL_S", 0.5)
    with pytest.raises(GuestTimeoutError, match=r"did not start within 0\.5 s, on two boots"):
        runner.run_in_qemu(fake / "kernel", ["/bin/true"], fake / "out", accel="tcg")


def test_qemu_missing(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake / "empty"))
    with pytest.raises(QemuMissingError, match="apt-get install qemu-system-x86") as caught:
        runner.run_in_qemu(fake / "kernel", ["/bin/true"], fake / "out")
    assert caught.value.exit_code == 25


def test_kernel_missing(fake: Path) -> None:
    with pytest.raises(KernelNotFoundError):
        runner.run_in_qemu(fake / "nope", ["/bin/true"], fake / "out")


def test_gcc_missing(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake / "bin"))
    with pytest.raises(GccMissing, match="apt-get install gcc") as caught:
        runner.build_init(fake / "cache")
    assert caught.value.exit_code == 33


def test_init_is_built_once_and_cached(tmp_path: Path) -> None:
    first = runner.build_init(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert runner.build_init(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert first.read_bytes()[:4] == b"\x7fELF"


HOST_COMMAND = """
import os, sys
print("kvmconf-progress: 1/3 cases", flush=True)
print("pytest summary line", flush=True)
print(os.environ["KVMCONF_EXECUTOR"], os.environ["KVMCONF_CONSOLE_LOG"], os.environ["KVMCONF_GUEST"], flush=True)
sys.exit(1)
"""


def test_executor_mode_runs_the_host_command_beside_the_guest(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's exit status is the result's; QEMU gets the executor's port and no root share;
    the host command's progress is told and the rest of its output kept in the console log."""
    replay(monkeypatch, CONSOLES / "clean.log")
    lines: list[str] = []
    result = runner.run_with_executor(fake / "kernel", [sys.executable, "-c", HOST_COMMAND], fake / "out",
                                      accel="tcg", progress=lines.append, memory_mib=512, cpus=1)
    assert result.exit_status == 1 and result.kernel_release == "7.3.4+deb13-amd64"
    assert "1/3 cases" in lines and result.first_output_s is not None
    argv = json.loads((fake / "argv.json").read_text())
    assert "virtio-9p-pci" not in " ".join(argv)
    port = next(a for a in argv if a.startswith("virtserialport,"))
    assert port.endswith(f"name={initramfs_module.EXECUTOR_PORT}")
    log = (fake / "out" / "console.log").read_text()
    assert "pytest summary line" in log and "1/3 cases" not in log
    socket_arg = next(a for a in argv if a.startswith("socket,"))
    assert f"unix:{socket_arg.split('path=')[1].split(',')[0]} {fake / 'out' / 'console.log'} qemu-tcg" in log


def test_a_guest_that_stays_up_after_the_suite_ended_is_killed_and_the_suite_stands(
        fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call still hanging in the executor keeps the guest up: the suite's results stand."""
    console = fake / "hung.log"
    console.write_text("kvmconf-guest: release 7.3.4-test\nkvmconf-guest: found /dev/kvm\n"
                       "kvmconf-guest: run /kvmconf/executor\n")
    replay(monkeypatch, console, sleep=60)
    monkeypatch.setattr(runner, "_SHUTDOWN_GRACE_S", 0.5)
    lines: list[str] = []
    result = runner.run_with_executor(fake / "kernel", [sys.executable, "-c", "raise SystemExit(1)"], fake / "out",
                                      accel="tcg", progress=lines.append, timeout_s=30)
    assert result.exit_status == 1 and result.total_s < 20
    assert any("did not power off" in line for line in lines)
