"""The executor in a real guest: it answers for the guest's kernel, and when that kernel
panics the suite on the host is told so, in the console's words. One TCG boot (~10 s);
skipped like test_qemu_boot.py when QEMU or a kernel is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.qemu.errors import KernelPanicError
from harness.qemu.kernel import find_kernel
from harness.qemu.runner import run_with_executor
from tests.test_qemu_boot import kernel  # noqa: F401  (the fixture)

HOST = """
import json, sys
from harness.remote.backend import ExecutorDied
from harness.remote.connect import from_environment
b = from_environment(30.0)
kvm = b.open("/dev/kvm")
seen = {"release": b.release, "api": b.ioctl(kvm, 0xAE00, 0), "page": b.hello.page_size}
with b.memory.at_guard(b"c") as crash:
    fd = b.open("/proc/sysrq-trigger")
    try:
        b.write(fd, crash.addr, 1)
    except ExecutorDied as e:
        seen["died"] = str(e)
with open(sys.argv[1], "w") as f:
    json.dump(seen, f)
"""


def test_executor_answers_then_a_panic_is_named_on_the_host(kernel: Path, tmp_path: Path) -> None:  # noqa: F811
    seen = tmp_path / "seen.json"
    with pytest.raises(KernelPanicError, match="sysrq triggered crash"):
        run_with_executor(kernel, [sys.executable, "-c", HOST, str(seen)], tmp_path / "out", timeout_s=300)
    got = json.loads(seen.read_text())
    assert got["release"] == find_kernel(kernel).release and got["api"] == 12
    assert got["died"].startswith("the executor died: it closed the channel while write")
    assert "the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash" in got["died"]
