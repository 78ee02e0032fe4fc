"""Every bad input to `./kvmconf run`: one line (at most three), its own exit code, no
traceback, and nothing left under the reports folder.

Each test runs the executable at the repository root as a user would, with --reports
in tmp_path and HOME there too (the header probe caches under ~/.cache).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.paths import ROOT

KVMCONF = ROOT / "kvmconf"
UNKNOWN_CASES = """[kernel]
name = "a kernel"

[[finding]]
cases = ["no_such_case[KVM_NOTHING/vm0]"]
reason = "names a case that is never collected"
"""


@dataclass(frozen=True)
class Outcome:
    code: int
    lines: list[str]
    text: str


@pytest.fixture(scope="module", autouse=True)
def settled_venv() -> None:
    """`./kvmconf` sets up .venv when pyproject.toml changed: do that once, before counting lines."""
    subprocess.run([str(KVMCONF), "run", "--help"], capture_output=True, check=True, timeout=600)


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    return tmp_path / "reports"


def kvmconf_run(tmp_path: Path, reports: Path, *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> Outcome:
    environ = {**os.environ, "HOME": str(tmp_path), **(env or {})}
    r = subprocess.run([*(prefix or []), str(KVMCONF), "run", "--reports", str(reports), *args], capture_output=True, text=True,
                       env=environ, timeout=300, cwd=tmp_path)
    text = r.stdout + r.stderr
    return Outcome(r.returncode, [line for line in text.splitlines() if line.strip()], text)


def check(out: Outcome, code: int, reports: Path, *words: str) -> None:
    """The contract of a bad input: its code, at most three lines, no traceback, no reports."""
    assert out.code == code, out.text
    assert 1 <= len(out.lines) <= 3, out.text
    assert "Traceback" not in out.text and "INTERNALERROR" not in out.text, out.text
    assert out.lines[0].startswith("kvmconf: "), out.text
    for word in words:
        assert word in out.text, out.text
    assert not reports.exists() or not any(reports.iterdir()), sorted(p.name for p in reports.iterdir())


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


# -- the KVM device: 10, 11, 12, 13 ------------------------------------------------------


def test_device_missing(tmp_path: Path, reports: Path) -> None:
    out = kvmconf_run(tmp_path, reports, "--kvm-device", str(tmp_path / "no-kvm"))
    check(out, 10, reports, "no such device")


def test_device_not_a_character_device(tmp_path: Path, reports: Path) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("")
    out = kvmconf_run(tmp_path, reports, "--kvm-device", str(plain))
    check(out, 11, reports, "not a character device")


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_character_device_that_is_not_kvm(tmp_path: Path, reports: Path, device: str) -> None:
    """They open read-write and answer every ioctl with ENOTTY: never a green run of skips."""
    out = kvmconf_run(tmp_path, reports, "--kvm-device", device)
    check(out, 13, reports, "not a KVM device", "KVM_GET_API_VERSION answered ENOTTY")


@pytest.fixture
def denied_device(tmp_path: Path) -> tuple[str, list[str]]:
    """A character device this run may not open read-write, and the command prefix for that.

    Root opens anything through CAP_DAC_OVERRIDE, so as root the node (the numbers of
    /dev/null) belongs to nobody, mode 0600, and kvmconf runs without that capability.
    """
    if os.geteuid() != 0:
        for dev in ("/dev/kvm", "/dev/mem", "/dev/kmsg"):
            if os.path.exists(dev) and stat.S_ISCHR(os.stat(dev).st_mode) and not os.access(dev, os.R_OK | os.W_OK):
                return dev, []
        pytest.skip("every character device tried can be opened read-write by this user")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run without CAP_DAC_OVERRIDE")
    node = tmp_path / "kvm"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except OSError as e:
        pytest.skip(f"cannot make a device node here: {e.strerror}")
    nobody = pwd.getpwnam("nobody")
    os.chown(node, nobody.pw_uid, nobody.pw_gid)
    return str(node), [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_device_without_permission(tmp_path: Path, reports: Path, denied_device: tuple[str, list[str]]) -> None:
    device, prefix = denied_device
    out = kvmconf_run(tmp_path, reports, "--kvm-device", device, prefix=prefix)
    check(out, 12, reports, "permission denied")
    st = os.stat(device)
    if st.st_mode & 0o060 != 0o060:  # its group may not open it: joining a group would not help, so none is named
        assert "group" not in out.text, out.text


# -- the header probe: 30, 31, 32, 33 ----------------------------------------------------


def test_header_missing(tmp_path: Path, reports: Path) -> None:
    out = kvmconf_run(tmp_path, reports, "--kvm-header", str(tmp_path / "kvm.h"))
    check(out, 30, reports, "no such file")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_header_does_not_compile_shows_gccs_first_error(tmp_path: Path, reports: Path) -> None:
    header = tmp_path / "kvm.h"
    header.write_text("#error this is not a kvm.h\nstruct { int\n")
    out = kvmconf_run(tmp_path, reports, "--kvm-header", str(header))
    check(out, 31, reports, "does not compile", "error: #error this is not a kvm.h")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_header_lacking_what_the_suite_needs(tmp_path: Path, reports: Path) -> None:
    header = tmp_path / "kvm.h"
    header.write_text("/* compiles, defines nothing */\n#define KVM_API_VERSION 12\n")
    out = kvmconf_run(tmp_path, reports, "--kvm-header", str(header))
    check(out, 32, reports, "lacks KVM_CREATE_VM")


def test_gcc_missing(tmp_path: Path, reports: Path) -> None:
    header = tmp_path / "kvm.h"
    header.write_text("#define KVM_API_VERSION 12\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)  # ./kvmconf starts with `env python3`
    out = kvmconf_run(tmp_path, reports, "--kvm-header", str(header), env={"PATH": str(bin_dir)})
    check(out, 33, reports, "gcc not found")


# -- expectations: 40, 41 ----------------------------------------------------------------


def test_expectations_malformed(tmp_path: Path, reports: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[kernel\nname = \n")
    out = kvmconf_run(tmp_path, reports, "--expectations", str(bad))
    check(out, 40, reports, "malformed TOML")


@pytest.mark.parametrize("backend", ["kernel", "model"])
def test_expectations_naming_cases_that_do_not_exist(tmp_path: Path, reports: Path, backend: str) -> None:
    """Found while collecting, yet one clean line (not pytest's `!!! Exit !!!`), with xdist too."""
    if backend == "kernel" and not kvm_usable():
        pytest.skip("/dev/kvm cannot be opened read-write by this user")
    exp = tmp_path / "unknown.toml"
    exp.write_text(UNKNOWN_CASES)
    out = kvmconf_run(tmp_path, reports, "--backend", backend, "--expectations", str(exp), "-n", "2")
    check(out, 41, reports, "no_such_case[KVM_NOTHING/vm0]")
    assert len(out.lines) == 1 and "!!!" not in out.text, out.text


# -- profile: 50; reports folder: 60 -----------------------------------------------------


def test_profile_unknown_lists_the_known(tmp_path: Path, reports: Path) -> None:
    out = kvmconf_run(tmp_path, reports, "--profile", "no-such-revision")
    check(out, 50, reports, "unknown profile 'no-such-revision'", "released")


def test_reports_folder_not_writable(tmp_path: Path) -> None:
    """A folder under a regular file cannot be made even by root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("untouched\n")
    reports = blocker / "reports"
    out = kvmconf_run(tmp_path, reports, "--backend", "model")
    check(out, 60, reports, "cannot write run reports there")
    assert blocker.read_text() == "untouched\n"


# -- the QEMU runner's: 20, 21, 25 -------------------------------------------------------


def bootable_images() -> list[Path]:
    """Kernel images on this machine: $KVMCONF_TEST_KERNEL, tools/debian-kernel's, /boot's."""
    given = os.environ.get("KVMCONF_TEST_KERNEL")
    found = [Path(given) / "vmlinuz"] if given else []
    found += sorted((Path.home() / ".cache" / "kvm-kernels").glob("*/vmlinuz")) + sorted(Path("/boot").glob("vmlinuz*"))
    return [p for p in found if p.is_file()]


def test_kernel_missing(tmp_path: Path, reports: Path) -> None:
    out = kvmconf_run(tmp_path, reports, "--kernel", str(tmp_path / "bzImage"))
    check(out, 20, reports)


def test_kernel_not_bootable(tmp_path: Path, reports: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"this is no kernel image\n" * 100)
    out = kvmconf_run(tmp_path, reports, "--kernel", str(image))
    check(out, 21, reports)


def test_qemu_missing(tmp_path: Path, reports: Path) -> None:
    images = bootable_images()
    if not images:
        pytest.skip("no kernel image (KVMCONF_TEST_KERNEL, ~/.cache/kvm-kernels, /boot) to get past the kernel checks")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # the interpreter itself, not a shim (pyenv's is a bash script), and gcc: no QEMU
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    gcc = shutil.which("gcc")
    if gcc:
        (bin_dir / "gcc").symlink_to(gcc)
    out = kvmconf_run(tmp_path, reports, "--kernel", str(images[-1]), env={"PATH": str(bin_dir)})
    check(out, 25, reports)


# -- compare: 70 --------------------------------------------------------------------------

START, FINISH = '{"pytest_version": "9", "$report_type": "SessionStart"}\n', '{"exitstatus": 0, "$report_type": "SessionFinish"}\n'


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"),
    (START.encode(), "cut short"),
    ((START + FINISH)[:-20].encode(), "its last line is not ended"),
    ((START + "[1, 2]\n" + FINISH).encode(), ":2: not a pytest-reportlog record"),
    ((START + '"a string"\n' + FINISH).encode(), ":2: not a pytest-reportlog record"),
    ((START + "{not json\n" + FINISH).encode(), ":2: not JSON"),
    (b"\xff\xfe" + START.encode(), "not UTF-8"),
], ids=["empty", "no-finish", "cut-line", "list", "string", "not-json", "not-utf8"])
def test_compare_refuses_what_is_not_a_whole_run(tmp_path: Path, content: bytes, words: str) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(START + FINISH)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    r = subprocess.run([str(KVMCONF), "compare", str(good), str(bad)], capture_output=True, text=True, timeout=120)
    text = r.stdout + r.stderr
    assert r.returncode == 70, text
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1 and "Traceback" not in text, text
    assert r.stderr.startswith(f"kvmconf: {bad}") and words in r.stderr, text


def test_compare_of_two_whole_runs_still_works(tmp_path: Path) -> None:
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text(START + FINISH)
    r = subprocess.run([str(KVMCONF), "compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
