"""`kvmconf run --kernel TREE`, end to end, with a fake QEMU that runs the guest's command.

The fake reads the initramfs the runner built, takes the command, its environment and
its working folder from the init's script, and runs it on this machine as the guest
would (with the model backend, so no /dev/kvm is needed), printing the init's console
markers around it. Before it runs the command it deletes the header, as a guest that
cannot see the host's /tmp would not find it: the guest must get the facts, not the path.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from harness.abi.exits import MEMBER_PREFIX
from harness.abi.facts import Field, Struct
from harness.abi.profile import load_profile, revision_order
from harness.cli import vmrun
from harness.paths import ROOT
from tests.test_bad_inputs import check, kvmconf_run
from tests.test_qemu_kernel import fake_bzimage

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed: the header probe compiles with it")

KVMCONF = ROOT / "kvmconf"

FAKE_QEMU = r'''#!{python}
"""qemu-system-x86_64 that runs the guest command of the initramfs here."""
import os, subprocess, sys

initrd = open(sys.argv[sys.argv.index("-initrd") + 1], "rb").read()
pos, files = 0, {{}}
while True:
    fields = [int(initrd[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
    size, namesize = fields[6], fields[11]
    name = initrd[pos + 110 : pos + 110 + namesize - 1].decode()
    data_at = (pos + 110 + namesize + 3) & ~3
    if name == "TRAILER!!!":
        break
    files[name] = initrd[data_at : data_at + size]
    pos = (data_at + size + 3) & ~3
tokens = files["kvmconf/script"].split(b"\0")[:-1]
env, argv, cwd = {{}}, [], "/"
for i, token in enumerate(tokens):
    if token == b"env":
        key, _, value = tokens[i + 1].decode().partition("=")
        env[key] = value
    elif token == b"arg":
        argv.append(tokens[i + 1].decode())
    elif token == b"chdir":
        cwd = tokens[i + 1].decode()
with open(os.environ["FAKE_QEMU_GUEST_ARGV"], "w") as f:
    f.write("\n".join(argv))
hide = os.environ.get("FAKE_QEMU_HIDE")
if hide:
    os.unlink(hide)
print("kvmconf-guest: release 7.3.4-seed", flush=True)
print("kvmconf-guest: found /dev/kvm", flush=True)
print(f"kvmconf-guest: run {{argv[0]}}", flush=True)
done = subprocess.run(argv, cwd=cwd, env={{**os.environ, **env}}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
sys.stdout.write(done.stdout.decode(errors="replace"))
print(f"kvmconf-guest: exit {{done.returncode}}", flush=True)
print("kvmconf-guest: tainted 0", flush=True)
'''


def c_members(fields: Sequence[Field], start: int, end: int, union: Mapping[str, Struct]) -> str:
    """C members that put each field at its offset (packed, explicit pads): a dotted name
    (`cs.base`) is a member of a nested struct, kvm_run's `padding` the exit union that
    holds the kvm_run_exit_* layouts."""
    out, pos, i = [], start, 0
    while i < len(fields):
        f = fields[i]
        if f.offset > pos:
            out.append(f"__u8 pad_{pos}[{f.offset - pos}];")
        head = f.name.split(".", 1)[0]
        if "." in f.name:
            group = [g for g in fields[i:] if g.name.split(".", 1)[0] == head and "." in g.name]
            inner = [replace(g, name=g.name.split(".", 1)[1]) for g in group]
            last = max(g.offset + g.size for g in group)
            out.append(f"struct {{ {c_members(inner, f.offset, last, {})} }} __attribute__((packed)) {head};")
            pos, i = last, i + len(group)
            continue
        if f.name == "padding" and union:
            alts = " ".join(f"struct {{ {c_members(m.fields, 0, m.size, {})} }} __attribute__((packed)) {n};" for n, m in union.items())
            out.append(f"union {{ {alts} __{f.type} padding[{f.count}]; }} __attribute__((packed));")
        else:
            out.append(f"__{f.type} {f.name}{f'[{f.count}]' if f.count > 1 else ''};")
        pos, i = f.offset + f.size, i + 1
    if end > pos:
        out.append(f"__u8 pad_{pos}[{end - pos}];")
    return " ".join(out)


def profile_header(name: str, *, extra: str = "") -> str:
    """A source tree's uapi kvm.h with profile `name`'s symbols and layouts, as the
    kernel tree has it: with the `<linux/compiler.h>` include and a `__user` pointer
    that `make headers_install` would strip."""
    facts = load_profile(name)
    out = ["#ifndef _UAPI__LINUX_KVM_H", "#define _UAPI__LINUX_KVM_H", "#include <linux/types.h>",
           "#include <linux/compiler.h>", "#include <linux/ioctl.h>", "#define KVMIO 0xAE",
           "struct kvm_dirty_log_like { __u32 slot; void __user *dirty_bitmap; };"]
    members = {n.removeprefix(MEMBER_PREFIX): s for n, s in facts.structs.items() if n.startswith(MEMBER_PREFIX)}
    for sname, struct in facts.structs.items():
        if not sname.startswith(MEMBER_PREFIX):
            union = members if sname == "kvm_run" else {}
            out.append(f"struct {sname} {{ {c_members(struct.fields, 0, struct.size, union)} }} __attribute__((packed));")
    for iname, io in facts.ioctls.items():
        args = f"KVMIO, {io.nr:#x}" + (f", struct {io.struct}" if io.struct else "")
        out.append(f"#define {iname} {io.direction.macro}({args})")
    out += [f"#define {k} {v}" for k, v in {**facts.caps, **facts.constants}.items()]
    return "\n".join([*out, extra, "#endif", ""])


def kernel_tree(root: Path, profile: str, *, extra: str = "") -> Path:
    """A built kernel tree: arch/x86/boot/bzImage and the source tree's uapi kvm.h."""
    (root / "arch" / "x86" / "boot").mkdir(parents=True)
    (root / "arch" / "x86" / "boot" / "bzImage").write_bytes(fake_bzimage("7.3.4-seed (me@box) #1"))
    header = root / "include" / "uapi" / "linux" / "kvm.h"
    header.parent.mkdir(parents=True)
    header.write_text(profile_header(profile, extra=extra))
    return root


@pytest.fixture
def fake_qemu(tmp_path: Path) -> dict[str, str]:
    """The environment for `kvmconf run` with the fake QEMU first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU.format(python=sys.executable))
    qemu.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
            "FAKE_QEMU_GUEST_ARGV": str(tmp_path / "guest-argv")}


def kvmconf(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KVMCONF), "run", "--reports", str(tmp_path / "reports"), *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=600, cwd=tmp_path)


@pytest.mark.parametrize("profile", ["rfc-v4", "released"])
def test_tree_runs_the_profile_its_header_matches(tmp_path: Path, fake_qemu: dict[str, str], profile: str) -> None:
    """`--kernel TREE` and nothing else: the tree's image boots, its source-tree header
    (which includes <linux/compiler.h>) is prepared and probed on the host, the profile
    it matches is chosen and said, before the boot, and the guest runs with it from the
    probe record although the header is gone by then. The guest's case timeout is the
    TCG one, and said so. (The fake QEMU runs the guest's command on this host, so the
    run is the in-guest mode's; the executor's own tests are tests/test_remote*.py.)"""
    tree = kernel_tree(tmp_path / "linux", profile)
    header = tree / "include" / "uapi" / "linux" / "kvm.h"
    env = {**fake_qemu, "FAKE_QEMU_HIDE": str(header)}
    done = kvmconf(tmp_path, env, "--kernel", str(tree), "--in-guest", "--accel", "tcg", "--backend", "model", "-k", "sizing")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    head = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[:6]}
    assert head["kernel"] == f"7.3.4-seed (tree {tree})"
    assert head["runs on"] == "QEMU (tcg), case timeout 300 s (30 s x 10 under TCG)"
    assert head["ABI"] == f"header {header}"
    assert head["profile"].startswith(f"{profile} (the header matches its symbols and layouts")
    assert head["backend"] == "model"
    guest = (tmp_path / "guest-argv").read_text().splitlines()
    assert f"--profile={profile}" in guest and "--case-timeout=300" in guest
    record = next(a for a in guest if a.startswith("--kvm-header=")).split("=", 1)[1]
    assert record.endswith("/header-probe.json") and str(header) not in record
    published = Path(next(line for line in lines if line.startswith("reports: ")).split(": ", 1)[1])
    assert json.loads((published / "header-probe.json").read_text())["header"] == str(header)
    guest_console = (published / "console.log").read_text()
    assert f"ABI:          header {header}" in guest_console
    assert f"profile:      {profile} (the header matches" in guest_console


def test_each_profiles_header_matches_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header with exactly a profile's symbols and layouts chooses that profile, for
    every profile: the revisions are told apart by the header alone."""
    from harness.host import header as header_mod

    monkeypatch.setattr(header_mod, "CACHE_DIR", tmp_path / "cache")
    for name in revision_order():
        path = tmp_path / name / "linux" / "kvm.h"
        path.parent.mkdir(parents=True)
        path.write_text(profile_header(name))
        match = header_mod.profile_for(path)
        assert (match.profile, match.differences) == (name, ()), match.reason


def test_no_profile_matches_closest_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header of no known revision: the closest profile, and the symbols that differ."""
    from harness.host import header as header_mod

    monkeypatch.setattr(header_mod, "CACHE_DIR", tmp_path / "cache")
    path = tmp_path / "odd" / "linux" / "kvm.h"
    path.parent.mkdir(parents=True)
    path.write_text(profile_header("rfc-v4").replace("KVM_CAP_MEMORY_ATTRIBUTES2 248", "KVM_CAP_MEMORY_ATTRIBUTES2 250"))
    match = header_mod.profile_for(path)
    assert match.profile == "rfc-v4"
    assert match.differences == ("KVM_CAP_MEMORY_ATTRIBUTES2 is 0xfa in the header, 0xf8 in the profile",)
    assert match.reason.startswith("rfc-v4, the closest (no profile matches the header; 1 difference from rfc-v4: "
                                   "KVM_CAP_MEMORY_ATTRIBUTES2 is 0xfa")


def test_guest_options_pass_checkout_fields_when_the_run_takes_them(tmp_path: Path) -> None:
    """A git tree's describe, commit and remote reach the guest as the KCIDB checkout
    options, once `kvmconf run` has them; a value the user gave wins."""
    import argparse

    args = argparse.Namespace(profile="rfc-v4", guest_workers="0", case_timeout=30.0, backend="kernel", mutant=None,
                              kvm_header=None, expectations=None, keyword=None, fuzz_examples=None, pytest_args=[],
                              profile_reason="rfc-v4 (--profile)", tree_name=None, git_commit="given")
    checkout = {"tree_name": "v7.3-1-gabc", "git_commit": "abc", "git_url": "https://example.org/linux.git"}
    argv = vmrun.guest_argv(args, tmp_path, "kvm", checkout)
    assert "--tree-name=v7.3-1-gabc" in argv and "--git-commit=given" in argv
    assert not any(a.startswith("--git-url") for a in argv)  # this run has no such option
    assert "--case-timeout=30" in argv and argv[-2:] == ["--", "--profile-reason=rfc-v4 (--profile)"]


def test_git_checkout_of_a_tree(tmp_path: Path) -> None:
    """git describe, the commit and the remote of a kernel tree that is a git tree."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tree = tmp_path / "linux"
    tree.mkdir()
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "base"], check=True)
    subprocess.run([*git, "tag", "v7.3"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://example.org/linux.git"], check=True)
    found = vmrun.git_checkout(tree)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert found == {"tree_name": "v7.3", "git_commit": head, "git_url": "https://example.org/linux.git"}
    assert vmrun.git_checkout(tmp_path) == {}  # not a git tree: nothing to say


# -- bad input on the way to a boot: one line, its exit code, nothing under reports/ --


def _no_dac_override(path: Path) -> list[str]:
    """Make `path` unreadable to this run, as root too: it belongs to nobody, mode 0600,
    and the command prefix drops CAP_DAC_OVERRIDE."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        path.chmod(0)
        return []
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run without CAP_DAC_OVERRIDE")
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    path.chmod(0o600)
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_non_utf8_header_is_one_line(tmp_path: Path) -> None:
    header = tmp_path / "linux" / "kvm.h"
    header.parent.mkdir()
    header.write_bytes(b"/* caf\xe9 */\n#error caf\xe9 \xff\n")
    out = kvmconf_run(tmp_path, tmp_path / "reports", "--kvm-header", str(header))
    check(out, 31, tmp_path / "reports", "does not compile")


def test_unreadable_header_is_one_line(tmp_path: Path) -> None:
    header = tmp_path / "linux" / "kvm.h"
    header.parent.mkdir()
    header.write_text(profile_header("released"))
    prefix = _no_dac_override(header)
    out = kvmconf_run(tmp_path, tmp_path / "reports", "--kvm-header", str(header), prefix=prefix)
    check(out, 34, tmp_path / "reports", "cannot be read")


def test_unreadable_kernel_image_is_one_line(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(fake_bzimage())
    prefix = _no_dac_override(image)
    out = kvmconf_run(tmp_path, tmp_path / "reports", "--kernel", str(image), prefix=prefix)
    check(out, 27, tmp_path / "reports", "cannot be read")


def test_fifo_as_kernel_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "bzImage"
    os.mkfifo(fifo)
    out = kvmconf_run(tmp_path, tmp_path / "reports", "--kernel", str(fifo))
    check(out, 21, tmp_path / "reports", "not a regular file")


def test_compare_with_a_run_that_does_not_exist(tmp_path: Path) -> None:
    """Named before the run, so no run folder is made for a comparison that cannot be."""
    out = kvmconf_run(tmp_path, tmp_path / "reports", "--backend", "model", "--compare-with", str(tmp_path / "base"))
    check(out, 70, tmp_path / "reports", str(tmp_path / "base"))


def test_run_ends_with_the_comparison(tmp_path: Path) -> None:
    """`run --compare-with BASE`: the run, then `compare BASE RUN` as it prints, and its
    exit code: 1 when the run has a new failure against the base, else 0 (a failure
    the base has too is not new)."""
    reports = tmp_path / "reports"
    common = ["--backend", "model", "-n", "0", "-k", "KVM_CREATE_VM"]
    base = kvmconf_run(tmp_path, reports, *common)
    assert base.code == 0, base.text
    base_run = next(p for p in reports.iterdir() if p.name[0].isdigit())
    patched = kvmconf_run(tmp_path, reports, *common, "--mutant", "vm-type-2-accepted", "--compare-with", str(base_run))
    assert patched.code == 1, patched.text
    assert "B has 1 new failure against A" in patched.text
    assert "test_create_vm_type[KVM_CREATE_VM/kvm/type=2]: passed -> failed" in patched.text
    patched_run = next(p for p in reports.iterdir() if p.name[0].isdigit() and p != base_run)
    again = kvmconf_run(tmp_path, reports, *common, "--mutant", "vm-type-2-accepted", "--compare-with", str(patched_run))
    assert again.code == 0 and "B has no new failure against A" in again.text, again.text


def test_console_header_of_a_local_run(tmp_path: Path) -> None:
    """Before the first case: the kernel, how it runs, the ABI source, the profile and
    why, the backend and the expectations file, one line each."""
    header = tmp_path / "seed" / "linux" / "kvm.h"
    header.parent.mkdir(parents=True)
    header.write_text(profile_header("rfc-v4"))
    out = kvmconf_run(tmp_path, tmp_path / "reports", "--backend", "model", "-n", "0", "-k", "KVM_CREATE_VM",
                      "--kvm-header", str(header))
    assert out.code == 0, out.text
    assert out.lines[:6] == [
        "kernel:       model-rfc-v4",  # the model names itself
        "runs on:      this machine",
        f"ABI:          header {header}",
        "profile:      rfc-v4 (the header matches its symbols and layouts)",
        "backend:      model",
        "expectations: none",
    ], out.text
