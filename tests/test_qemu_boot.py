"""A real boot: the kernel under test in QEMU, a probe of the guest's /dev/kvm.

Skipped when qemu-system-x86_64 or a kernel is missing. The kernel is
$KVMCONF_TEST_KERNEL, else a folder in ~/.cache/kvm-kernels/, one with a `vmlinuz` (as
shared/kernels/debian-kernel makes) before one with only a bzImage (build-kernel).
Each boot takes about 5-10 s under TCG on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from harness.qemu.errors import GuestError, KernelPanicError
from harness.qemu.kernel import find_kernel
from harness.qemu.runner import PROJECT_ROOT, run_in_qemu

KVM_CAP_MEMORY_ATTRIBUTES = 233
KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3

PROBE = f"""
import fcntl, json, os, sys
fd = os.open("/dev/kvm", os.O_RDWR)
cap = fcntl.ioctl(fd, 0xAE03, {KVM_CAP_MEMORY_ATTRIBUTES})  # KVM_CHECK_EXTENSION
print("kvmconf-progress: probed", flush=True)
with open(os.path.join(sys.argv[1], "probe.json"), "w") as f:
    json.dump({{"cap": cap, "guest": os.environ.get("KVMCONF_GUEST"), "cwd": os.getcwd(),
               "release": os.uname().release}}, f)
print("probe done", flush=True)
sys.exit(3)
"""


def kernel_folder() -> Path:
    """The kernel folder to boot (a Debian one first), or a skip saying why there is none."""
    chosen = os.environ.get("KVMCONF_TEST_KERNEL")
    if chosen:
        return Path(chosen)
    cache = Path.home() / ".cache" / "kvm-kernels"
    found = sorted((not (p / "vmlinuz").exists(), p.name, p) for p in cache.glob("*") if p.is_dir())
    if not found:
        pytest.skip(f"no kernel: set KVMCONF_TEST_KERNEL or run shared/kernels/debian-kernel "
                    f"(nothing in {cache})")
    return found[0][2]


@pytest.fixture(scope="module")
def kernel() -> Path:
    """The kernel to boot; skips the module's tests when QEMU or a kernel is missing."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    return kernel_folder()


def test_probe_of_guest_dev_kvm(kernel: Path, tmp_path: Path) -> None:
    progress: list[str] = []
    out = tmp_path / "out"
    result = run_in_qemu(kernel, [sys.executable, "-c", PROBE, str(out)], out,
                         progress=progress.append, timeout_s=300)
    probe = json.loads((out / "probe.json").read_text())
    assert result.exit_status == 3
    assert probe["cap"] & KVM_MEMORY_ATTRIBUTE_PRIVATE
    assert probe["guest"] == f"qemu-{result.accel}"
    assert probe["cwd"] == str(PROJECT_ROOT)
    assert probe["release"] == result.kernel_release == find_kernel(kernel).release
    assert "probed" in progress
    assert any(line.startswith("/dev/kvm ready after") for line in progress)
    assert result.first_output_s is not None
    assert 0 < result.ready_s < result.first_output_s < result.total_s
    assert "probe done" in result.console_log.read_text()
    print(f"\n{result.kernel_release} ({result.accel}): command started {result.ready_s:.1f} s, "
          f"first output {result.first_output_s:.1f} s, total {result.total_s:.1f} s")


def test_guest_panic_is_reported(kernel: Path, tmp_path: Path) -> None:
    with pytest.raises(KernelPanicError) as caught:
        run_in_qemu(kernel, ["/bin/sh", "-c", "echo c > /proc/sysrq-trigger"], tmp_path,
                    timeout_s=300)
    assert "sysrq triggered crash" in str(caught.value)
    assert isinstance(caught.value, GuestError) and caught.value.exit_code == 22
