"""What the guest does before and around the command, as a script for init.c, and the
initramfs that carries it. Two plans: the suite inside the guest (below), or only the
executor (`executor_script`), with the suite on the host.

Why an initramfs plus the host root over 9p, rather than a disk image: the guest must
run the project's own Python, its `.venv` and the tests exactly as they are on the
host. Sharing the host's / read-only needs no copying and no image build; the
initramfs only holds what must exist before that share is mounted (the init, this
script, and modules such as 9p and KVM for kernels that build them as modules). The
whole archive is a few MB, built in well under a second.

Guest layout after the script ran: the host root at / (read-only), fresh proc, sys,
devtmpfs, and tmpfs on /tmp, /run and /dev/shm, and the run's output folder mounted
writable at the same absolute path as on the host. A project or output folder that
lives under /tmp or /run on the host would be hidden by those tmpfs mounts, so the
script keeps it visible (bind-mounted aside first, moved back on top after).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from harness.qemu.cpio import CpioEntry, char_device, directory, regular_file, write_newc

SCRIPT_PATH = "kvmconf/script"
NEWROOT = "/newroot"
ROOT_TAG = "kvmroot"
OUT_TAG = "kvmout"
MSIZE = 512000  # the virtio transport's largest message: fewer round trips per read
ROOT_OPTS = f"trans=virtio,version=9p2000.L,msize={MSIZE},cache=loose"
OUT_OPTS = f"trans=virtio,version=9p2000.L,msize={MSIZE}"  # no cache: writes reach the host
KVM_DEVICE = "/dev/kvm"

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_BIND = 4096
MS_MOVE = 8192

# (label, fstype, target, flags, data), mounted over the shared root in this order.
_GUEST_MOUNTS: tuple[tuple[str, str, str, int, str], ...] = (
    ("proc", "proc", "/proc", MS_NOSUID | MS_NODEV, ""),
    ("sys", "sysfs", "/sys", MS_NOSUID | MS_NODEV, ""),
    ("dev", "devtmpfs", "/dev", MS_NOSUID, ""),
    ("shm", "tmpfs", "/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777"),
    ("tmp", "tmpfs", "/tmp", MS_NOSUID | MS_NODEV, "mode=1777"),
    ("run", "tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=755"),
)


@dataclass(frozen=True)
class GuestPlan:
    """What the guest must do: modules as (name, file in the initramfs, cpu flag)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    out_dir: str
    modules: tuple[tuple[str, str, str], ...]


def _under(path: str, top: str) -> bool:
    return PurePosixPath(path).is_relative_to(top)


def _hidden(path: str) -> bool:
    """Whether a guest tmpfs mount would cover `path`."""
    return any(_under(path, target) for _, fstype, target, _, _ in _GUEST_MOUNTS
               if fstype == "tmpfs")


def guest_script(plan: GuestPlan) -> list[str]:
    """The init's instructions, one op name followed by its fixed number of arguments."""
    for path in (plan.cwd, plan.out_dir, plan.argv[0]):
        if not path.startswith("/"):
            raise ValueError(f"guest paths must be absolute: {path!r}")
    ops: list[str] = []
    ops += ["mount", "proc", "proc", "/proc", "proc", "0", ""]
    ops += ["mount", "dev", "devtmpfs", "/dev", "devtmpfs", "0", ""]
    for name, path, cpu_flag in plan.modules:
        ops += ["module", name, path, cpu_flag]
    ops += ["need", KVM_DEVICE]
    ops += ["mount", "root", ROOT_TAG, NEWROOT, "9p", str(MS_RDONLY), ROOT_OPTS]
    kept = [plan.cwd] if _hidden(plan.cwd) else []
    for index, path in enumerate(kept):
        ops += ["mkdir", f"/keep/{index}"]
        ops += ["mount", "keep", NEWROOT + path, f"/keep/{index}", "", str(MS_BIND), ""]
    for label, fstype, target, flags, data in _GUEST_MOUNTS:
        ops += ["mkdir", NEWROOT + target]
        ops += ["mount", label, label, NEWROOT + target, fstype, str(flags), data]
    for index, path in enumerate(kept):
        ops += ["mkdir", NEWROOT + path]
        ops += ["mount", "keep", f"/keep/{index}", NEWROOT + path, "", str(MS_MOVE), ""]
    ops += ["mkdir", NEWROOT + plan.out_dir]
    ops += ["mount", "out", OUT_TAG, NEWROOT + plan.out_dir, "9p", "0", OUT_OPTS]
    ops += ["switch-root", NEWROOT, "chdir", plan.cwd]
    for key, value in plan.env:
        ops += ["env", f"{key}={value}"]
    for arg in plan.argv:
        ops += ["arg", arg]
    ops.append("run")
    return ops


EXECUTOR_PATH = "/kvmconf/executor"
EXECUTOR_PORT = "kvmconf.executor"  # the virtio-serial port's name (QEMU's virtserialport name=)


def executor_script(modules: Sequence[tuple[str, str, str]]) -> list[str]:
    """The init's instructions when the suite stays on the host: KVM's modules, then the
    executor from the initramfs itself on its port. No root share, so any kernel that
    boots an initramfs and has /dev/kvm will do."""
    ops: list[str] = []
    ops += ["mount", "proc", "proc", "/proc", "proc", "0", ""]
    ops += ["mount", "dev", "devtmpfs", "/dev", "devtmpfs", "0", ""]
    ops += ["mount", "sys", "sysfs", "/sys", "sysfs", "0", ""]  # the port is found by name there
    for name, path, cpu_flag in modules:
        ops += ["module", name, path, cpu_flag]
    ops += ["need", KVM_DEVICE]
    ops += ["arg", EXECUTOR_PATH, "arg", EXECUTOR_PORT, "run"]
    return ops


def encode_script(ops: Sequence[str]) -> bytes:
    """NUL-terminated tokens, so arguments may hold spaces, quotes and newlines."""
    for token in ops:
        if "\0" in token:
            raise ValueError(f"a guest argument cannot hold a NUL byte: {token!r}")
    return b"".join(token.encode() + b"\0" for token in ops)


def module_file(name: str) -> str:
    """Where module `name` sits inside the initramfs."""
    return f"/modules/{name}.ko"


def initramfs(init: bytes, script: bytes, modules: Sequence[tuple[str, bytes]], executor: bytes | None = None) -> bytes:
    """The uncompressed newc archive: uncompressed because TCG is slow at inflating."""
    entries: list[CpioEntry] = [
        directory(name) for name in ("dev", "proc", "sys", "keep", "modules", "kvmconf",
                                     NEWROOT.lstrip("/"))
    ]
    entries.append(char_device("dev/console", 5, 1))
    entries.append(regular_file("init", init, 0o755))
    entries.append(regular_file(SCRIPT_PATH, script))
    if executor is not None:
        entries.append(regular_file(EXECUTOR_PATH.lstrip("/"), executor, 0o755))
    entries += [regular_file(module_file(name).lstrip("/"), data) for name, data in modules]
    return write_newc(entries)
