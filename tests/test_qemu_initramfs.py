"""The guest script and the archive carrying it."""

from __future__ import annotations

import pytest

from harness.qemu.initramfs import (
    EXECUTOR_PATH,
    EXECUTOR_PORT,
    NEWROOT,
    GuestPlan,
    encode_script,
    executor_script,
    guest_script,
    initramfs,
    module_file,
)
from tests.test_qemu_cpio import read_newc

PLAN = GuestPlan(
    argv=("/usr/bin/python3", "-c", "print('a b')\nprint(2)"),
    env=(("KVMCONF_GUEST", "qemu-tcg"), ("PATH", "/usr/bin:/bin")),
    cwd="/work/main",
    out_dir="/work/main/out/run1",
    modules=(("kvm", "/modules/kvm.ko", ""), ("kvm_amd", "/modules/kvm_amd.ko", "svm")),
)


def ops_of(script: list[str]) -> list[tuple[str, ...]]:
    """Split the flat token list into (op, args...) using each op's arity."""
    arity = {"mount": 6, "mkdir": 1, "module": 3, "need": 1, "switch-root": 1, "chdir": 1,
             "env": 1, "arg": 1, "run": 0}
    ops: list[tuple[str, ...]] = []
    at = 0
    while at < len(script):
        n = arity[script[at]]
        ops.append(tuple(script[at : at + 1 + n]))
        at += 1 + n
    return ops


def test_order_modules_then_kvm_then_root_then_command() -> None:
    ops = ops_of(guest_script(PLAN))
    names = [op[0] for op in ops]
    assert names.index("module") < names.index("need")
    assert ops[names.index("need")] == ("need", "/dev/kvm")
    root = next(op for op in ops if op[0] == "mount" and op[1] == "root")
    assert names.index("need") < ops.index(root)
    assert root[2:5] == ("kvmroot", NEWROOT, "9p") and root[5] == "1"  # MS_RDONLY
    assert "cache=loose" in root[6] and "msize=" in root[6]
    assert ("module", "kvm_amd", "/modules/kvm_amd.ko", "svm") in ops
    assert ops[-1] == ("run",)
    assert [op[1] for op in ops if op[0] == "arg"] == list(PLAN.argv)
    assert [op[1] for op in ops if op[0] == "env"] == ["KVMCONF_GUEST=qemu-tcg",
                                                       "PATH=/usr/bin:/bin"]
    assert names.index("switch-root") < names.index("chdir") < names.index("run")
    assert ("chdir", "/work/main") in ops


def test_out_dir_is_mounted_writable_at_the_host_path() -> None:
    ops = ops_of(guest_script(PLAN))
    out = next(op for op in ops if op[0] == "mount" and op[1] == "out")
    assert out[2:5] == ("kvmout", NEWROOT + "/work/main/out/run1", "9p") and out[5] == "0"
    assert "cache" not in out[6]
    assert ops[ops.index(out) - 1] == ("mkdir", NEWROOT + "/work/main/out/run1")


def test_tmpfs_mounts_come_after_root_and_before_out() -> None:
    ops = ops_of(guest_script(PLAN))
    labels = [op[1] for op in ops if op[0] == "mount"]
    assert labels == ["proc", "dev", "root", "proc", "sys", "dev", "shm", "tmp", "run", "out"]
    assert not any(op[1] == "keep" for op in ops if op[0] == "mount")


def test_project_under_tmp_is_kept_visible_over_the_tmpfs() -> None:
    plan = GuestPlan(PLAN.argv, PLAN.env, "/tmp/ci/kvmconf", "/tmp/ci/kvmconf/out", ())
    ops = ops_of(guest_script(plan))
    mounts = [op for op in ops if op[0] == "mount"]
    labels = [op[1] for op in mounts]
    bind, move = (op for op in mounts if op[1] == "keep")
    assert labels.index("keep") < labels.index("tmp") < len(labels) - 1 - labels[::-1].index("keep")
    assert bind[2:4] == (NEWROOT + "/tmp/ci/kvmconf", "/keep/0") and bind[5] == "4096"
    assert move[2:4] == ("/keep/0", NEWROOT + "/tmp/ci/kvmconf") and move[5] == "8192"


def test_relative_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        guest_script(GuestPlan(("python3",), (), "/w", "/w/o", ()))


def test_encoding_is_nul_terminated_tokens() -> None:
    assert encode_script(["arg", "a b\nc", "run"]) == b"arg\0a b\nc\0run\0"
    with pytest.raises(ValueError, match="NUL"):
        encode_script(["arg", "a\0b"])


def test_archive_holds_init_console_script_and_modules() -> None:
    blob = initramfs(b"INIT", encode_script(["run"]), [("kvm", b"ELF-kvm")])
    members = {m.name: m for m in read_newc(blob)}
    assert members["init"].data == b"INIT"
    assert members["dev/console"].rdev == (5, 1)
    assert members["kvmconf/script"].data == b"run\0"
    assert members[module_file("kvm").lstrip("/")].data == b"ELF-kvm"
    assert {"dev", "proc", "sys", "newroot", "keep", "modules"} <= members.keys()


def test_executor_script_loads_kvm_then_runs_the_executor_on_its_port() -> None:
    """No root share, no switch of root: the executor comes from the initramfs itself."""
    ops = ops_of(executor_script(PLAN.modules))
    names = [op[0] for op in ops]
    assert "switch-root" not in names and not any(op[0] == "mount" and op[3] == "9p" for op in ops)
    assert ("mount", "sys", "sysfs", "/sys", "sysfs", "0", "") in ops  # ports are found by name in sysfs
    assert names.index("module") < names.index("need") < names.index("run")
    assert [op[1] for op in ops if op[0] == "arg"] == [EXECUTOR_PATH, EXECUTOR_PORT]


def test_archive_can_carry_the_executor() -> None:
    files = {e.name: e for e in read_newc(initramfs(b"init", b"script", [], executor=b"\x7fELF"))}
    assert files[EXECUTOR_PATH.lstrip("/")].data == b"\x7fELF" and files[EXECUTOR_PATH.lstrip("/")].mode & 0o111
