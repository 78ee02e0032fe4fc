"""harness.session.health: kernel trouble, taint, leaks and hangs fail the case they happened in.

Each test runs a small suite through pytester with the health plugin and fake sources
(`--kmsg`, `--taint-file`, a regular file as `--kvm-device`), so no kernel is needed;
one test checks a real VM leak on /dev/kvm when it can be opened.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.session.health import KernelLog, kernel_message, taint_letters, trouble

pytest_plugins = ["pytester"]

PLUGINS = ("-p", "harness.session.plugin", "-p", "harness.session.health", "-vv")  # -vv: summary lines in full

# A case "talks to the kernel" when it uses the `target` fixture; these suites bring a stand-in.
HEADER = """
import mmap, os
import pytest

@pytest.fixture
def target():
    return None

def log(line):
    with open(os.environ["FAKE_KMSG"], "a") as fh:
        fh.write(line + "\\n")

def taint(value):
    with open(os.environ["FAKE_TAINT"], "w") as fh:
        fh.write(f"{value}\\n")
"""

WARN = "WARNING: CPU: 1 PID: 4242 at arch/x86/kvm/mmu/mmu.c:7001 kvm_gmem_fake+0x42/0x80"


@pytest.fixture
def fakes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fake kernel log, taint file and device; the options that point the plugin at them."""
    kmsg, taint, device = pytester.path / "kmsg", pytester.path / "tainted", pytester.path / "fake-kvm"
    kmsg.write_text("6,1,100,-;boot noise before the run\n")
    taint.write_text("4096\n")  # O, already set before the run: not this case's
    device.write_bytes(b"\0" * 8192)
    monkeypatch.setenv("FAKE_KMSG", str(kmsg))
    monkeypatch.setenv("FAKE_TAINT", str(taint))
    monkeypatch.setenv("FAKE_DEVICE", str(device))
    return [*PLUGINS, f"--kmsg={kmsg}", f"--taint-file={taint}", f"--kvm-device={device}"]


def test_injected_taint_and_warn_fail_the_case(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + f"""
def test_clean(target):
    log("6,2,200,-;kvm: a harmless info line")

def test_warns(target):
    log("4,3,300,-;------------[ cut here ]------------")
    log("4,4,301,-;{WARN}")
    log(" SUBSYSTEM=misc")
    log("4,5,302,-;Modules linked in: kvm_pvm kvm")
    taint(4096 | 512)

def test_after(target):
    pass
""")
    result = pytester.runpytest(*fakes)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*kernel tainted during the case: W (kernel issued warning)*",
        f"*kernel log: {WARN}*",
        "*first kernel log lines:*",
        "*[[] cut here []]*",
        "*Modules linked in*",
        "FAILED *test_warns - kernel tainted during the case: W*",
    ])
    assert "O (externally-built" not in result.stdout.str()  # set before the case: not its taint


def test_userspace_lines_and_plain_info_do_not_count(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + """
def test_user_line(target):
    log("12,6,400,-;myapp: WARNING: BUG: only a userspace write to /dev/kmsg")
""")
    pytester.runpytest(*fakes).assert_outcomes(passed=1)


def test_a_failing_xfail_case_that_warns_fails(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + """
@pytest.mark.xfail(strict=True, reason="known finding")
def test_known(target):
    log("0,7,500,-;BUG: KASAN: slab-out-of-bounds in kvm_fake+0x1/0x2")
    assert False, "the known finding"
""")
    result = pytester.runpytest(*fakes)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*kernel log: BUG: KASAN: slab-out-of-bounds*", "*the case was expected to fail (known finding)*"])


def test_cases_without_target_are_not_watched(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + f"""
def test_unit():
    log("4,8,600,-;{WARN}")
""")
    pytester.runpytest(*fakes).assert_outcomes(passed=1)


def test_leaked_fd_and_mapping_fail_the_case(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + """
from harness.host.backend import KernelBackend

KEEP = []

def test_leaks_fd(target):
    KEEP.append(os.open(os.environ["FAKE_DEVICE"], os.O_RDWR))

def test_leaks_mapping(target):
    fd = os.open(os.environ["FAKE_DEVICE"], os.O_RDWR)
    KernelBackend().mmap(fd, 4096, mmap.PROT_READ, mmap.MAP_SHARED, 0)  # never unmapped
    os.close(fd)

def test_tidy(target):
    fd = os.open(os.environ["FAKE_DEVICE"], os.O_RDWR)
    m = mmap.mmap(fd, 4096)
    m.close()
    os.close(fd)

@pytest.fixture
def opened_by_fixture():
    fd = os.open(os.environ["FAKE_DEVICE"], os.O_RDWR)
    yield fd
    KEEP.append(fd)  # forgets to close it

def test_fixture_leaks(target, opened_by_fixture):
    pass
""")
    result = pytester.runpytest(*fakes)
    result.assert_outcomes(passed=2, failed=2, errors=1)
    device = os.environ["FAKE_DEVICE"]
    result.stdout.fnmatch_lines([
        f"FAILED *test_leaks_fd - leak: the case left 1 KVM resource(s) open: fd * -> {device}",
        f"FAILED *test_leaks_mapping - leak: the case left 1 KVM resource(s) open: mapping *-* r--s {device}",
        f"ERROR *test_fixture_leaks - leak: its fixtures left 1 KVM resource(s) open: fd * -> {device}",
    ])


def test_hang_is_named_and_the_run_goes_on(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + """
import time

def test_hangs(target):
    time.sleep(30)

def test_next(target):
    pass
""")
    result = pytester.runpytest(*fakes, "--timeout=1", "--timeout-method=signal")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_hangs - hang: no answer within 1 s"])


def test_unreadable_log_is_said_once_and_the_run_goes_on(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + """
def test_a(target):
    taint(4096 | 512)

def test_b(target):
    pass
""")
    missing = pytester.path / "no-kmsg"
    result = pytester.runpytest(*fakes, f"--kmsg={missing}")
    result.assert_outcomes(passed=1, failed=1)  # the taint is still checked
    notices = [line for line in result.stdout.lines if "kernel log attribution is off" in line]
    assert notices == [f"kvmconf: {missing} cannot be read (ENOENT; kernel.dmesg_restrict decides who may): kernel log attribution is off"]


def test_with_xdist_the_failure_reaches_the_controller(pytester: pytest.Pytester, fakes: list[str]) -> None:
    """The xdist controller probes the real device, so this one needs it."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm cannot be opened read-write by this user")
    pytester.makepyfile(HEADER + f"""
def test_warns(target):
    log("4,9,700,-;{WARN}")
""")
    result = pytester.runpytest(*fakes, "--kvm-device=/dev/kvm", "-n", "1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"FAILED *test_warns - kernel log: {WARN}"])


@pytest.mark.parametrize("backend", ["kernel", "remote"])
def test_real_vm_leak_is_caught(pytester: pytest.Pytester, backend: str) -> None:
    """On the real device: a VM the case keeps open is named as anon_inode:kvm-vm (with the
    remote backend the VM is the executor's, and so are the fds looked at)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm cannot be opened read-write by this user")
    pytester.makepyfile("""
KEEP = []

def test_leaks_vm(target):
    KEEP.append(target.vm(0))

def test_tidy_vm(target):
    with target.vm(0):
        pass
""")
    result = pytester.runpytest(*PLUGINS, f"--backend={backend}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_leaks_vm - leak: the case left 1 KVM resource(s) open: fd * -> anon_inode:kvm-vm"])


def test_a_dead_executor_fails_its_case_and_ends_the_run(pytester: pytest.Pytester) -> None:
    """The case that lost it fails with the reason; no later case waits on it."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm cannot be opened read-write by this user")
    pytester.makepyfile("""
def test_kills_it(target):
    target.backend.keep[1].kill()
    target.backend.keep[1].wait()
    target.vm(0)

def test_never_runs(target):
    pass
""")
    result = pytester.runpytest(*PLUGINS, "--backend=remote")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Exit: kvmconf: the executor died: * killed by signal 9*"])
    assert result.ret == 29


def test_taint_letters_follow_the_kernel_table() -> None:
    assert taint_letters(1 << 9 | 1 << 12) == ["W (kernel issued warning)", "O (externally-built (out-of-tree) module was loaded)"]
    assert taint_letters(1 << 19) == ["J (userspace used a mutating debug operation in fwctl)"]
    assert taint_letters(1 << 25) == ["bit 25"]


def test_kmsg_records_are_parsed() -> None:
    assert kernel_message("4,12,345,-;WARNING: at x") == "WARNING: at x"
    assert kernel_message("4,12,345,c,more;text") == "text"
    assert kernel_message(" DEVICE=+kvm") is None
    assert kernel_message("14,1,2,-;systemd[1]: user line") is None
    assert trouble(["a", "------------[ cut here ]------------", "WARNING: x", "b"]) == (
        "WARNING: x", ["------------[ cut here ]------------", "WARNING: x", "b"])
    assert trouble(["watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"]) is not None
    assert trouble(["kvm: nothing wrong", "Spectre V2 : Mitigation: Retpolines"]) is None


def test_kernel_log_reads_only_what_comes_after_opening(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("4,1,1,-;WARNING: old\n")
    log = KernelLog(str(path))
    with path.open("a") as fh:
        fh.write("4,2,2,-;WARNING: new\n")
    assert log.take() == ["WARNING: new"]
    assert log.take() == []
    log.close()


def test_trouble_between_cases_is_kept_and_fails_the_run_not_a_case(pytester: pytest.Pytester, fakes: list[str]) -> None:
    """A warning or taint between two watched cases (here from a case that is not watched,
    as a VM's late teardown would be) is named with the cases on either side."""
    pytester.makepyfile(HEADER + f"""
def test_a(target):
    pass

def test_unwatched():
    log("4,9,700,-;{WARN}")
    taint(4096 | 512)

def test_c(target):
    pass
""")
    junit = pytester.path / "junit.xml"
    html = pytester.path / "report.html"
    result = pytester.runpytest(*fakes, f"--junitxml={junit}", f"--html={html}")
    result.assert_outcomes(passed=3)
    assert result.ret == 1
    line = ("kvmconf: kernel trouble between test_trouble_between_cases_is_kept_and_fails_the_run_not_a_case.py::test_a and "
            "test_trouble_between_cases_is_kept_and_fails_the_run_not_a_case.py::test_c: kernel tainted: W (kernel issued warning); "
            f"kernel log: {WARN}")
    assert line in result.stdout.lines
    assert line.removeprefix("kvmconf: kernel trouble ") in junit.read_text()
    assert 'id="kvmconf-kernel-health"' in html.read_text() and "kernel issued warning" in html.read_text()


def test_the_unreadable_log_notice_is_in_the_reports(pytester: pytest.Pytester, fakes: list[str]) -> None:
    pytester.makepyfile(HEADER + "\ndef test_a(target):\n    pass\n")
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(*fakes, f"--kmsg={pytester.path / 'no-kmsg'}", f"--junitxml={junit}")
    result.assert_outcomes(passed=1)
    assert "kernel log attribution is off" in junit.read_text()


def test_a_hang_inside_a_property_case_is_a_hang_not_flaky(pytester: pytest.Pytester, fakes: list[str]) -> None:
    """The drawn example hangs once; hypothesis replays it, it does not hang, and hypothesis
    would call that flaky: the report says what happened instead."""
    pytester.makepyfile(HEADER + """
import time
from hypothesis import given, settings, strategies as st

CALLS = []

@settings(database=None, deadline=None, max_examples=5)
@given(st.integers())
def test_drawn(value):
    CALLS.append(value)
    if len(CALLS) == 1:
        time.sleep(30)
""")
    result = pytester.runpytest(*fakes, "--timeout=1", "--timeout-method=signal")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_drawn - hang: no answer within 1 s (in a drawn example; hypothesis, "
                                 "replaying it, called it Flaky*"])
