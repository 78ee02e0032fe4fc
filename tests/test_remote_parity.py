"""The executor's verdicts against the kernel's own, case for case, over the whole suite.

On this machine: the kernel backend, then the remote backend through a local executor,
with the same expectations file (the plugin picks one by `uname -r` for the kernel
backend only). Under QEMU, `run --kernel` in both modes: opt-in with
KVMCONF_TEST_VM_PARITY=1 (minutes under TCG; the CI leg sets it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cases.expectations import for_release
from harness.cli.compare import load
from harness.paths import ROOT
from harness.report.compare import Change, changes
from tests.kvmdev import child_env, needs_kvm


def run(reports: Path, *options: str) -> Path:
    """`kvmconf run` with `options`; its run folder (exit 0 or 1: a verdict either way)."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", f"--reports={reports}", *options],
                          cwd=ROOT, env=child_env(), capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    return reports / "latest"


def differences(found: list[Change]) -> str:
    return "\n".join(f"{c.kind}: {c.case.nodeid}: {c.before and c.before.result} -> {c.after and c.after.result}"
                     for c in found[:20])


@needs_kvm
def test_local_executor_gives_the_kernel_backends_verdicts(tmp_path: Path) -> None:
    found = for_release(os.uname().release).path
    expectations = f"--expectations={found or 'none'}"
    kernel = load(run(tmp_path / "kernel", expectations))
    remote = load(run(tmp_path / "remote", "--backend=remote", "-n", "0", expectations))
    assert len(remote.cases) == len(kernel.cases) > 1000
    assert not changes(kernel, remote), differences(changes(kernel, remote))


@pytest.mark.skipif(not os.environ.get("KVMCONF_TEST_VM_PARITY"), reason="minutes under TCG: set KVMCONF_TEST_VM_PARITY=1")
def test_executor_under_qemu_gives_the_in_guest_verdicts(tmp_path: Path) -> None:
    from tests.test_qemu_boot import kernel_folder

    kernel = str(kernel_folder())
    in_guest = load(run(tmp_path / "in-guest", f"--kernel={kernel}", "--in-guest"))
    executor = load(run(tmp_path / "executor", f"--kernel={kernel}"))
    assert len(executor.cases) == len(in_guest.cases) > 1000
    assert not changes(in_guest, executor), differences(changes(in_guest, executor))
