"""`kvmconf bench`: its statistics, table, JSON and generated C, plus one tiny real run.

Structure only: no test here compares a time with anything, since timings depend on
the machine and its load. Also the premises of the ioctl fast path it measures (a bare
int argument reaches C as the same 64 bits c_ulong gives; a pointer goes whole; errno
stays exact), checked against the real /dev/kvm.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.abi.profile import load_profile
from harness.cli.bench import vm
from harness.cli.main import main
from harness.host.backend import KernelBackend
from harness.host.fds import Kvm
from harness.report import bench
from harness.report.bench import (
    BenchReport,
    BootTimes,
    Figure,
    Loop,
    Machine,
    Row,
    Section,
    Settings,
    boot_rows,
    boot_times,
    c_source,
    case_count,
    cpu_model,
    fmt,
    format_table,
    loops,
    parse_c_output,
    parse_collected,
    parse_summary,
    to_json,
)
from tests.kvmdev import DEVICE, needs_kvm

FACTS = load_profile("released")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed: the C baseline is built with it")


def _report(sections: tuple[Section, ...]) -> BenchReport:
    return BenchReport(Machine(2, "6.18.0-test", "Test CPU @ 1 GHz"), "2026-01-01 00:00", Settings(), sections)


SAMPLE = _report((
    Section("ioctl", "Per-ioctl cost", "µs", "CPU µs per call, 3 runs × 1,000 calls", (
        Row("KVM_CHECK_EXTENSION on /dev/kvm → 1", Figure((0.61, 0.58, 0.6)), Figure((0.22, 0.23, 0.22))),
        Row("KVM_SET_MEMORY_ATTRIBUTES, flags ~0 → ENOTTY", Figure((0.7,)), None, "C: n/a (gcc not found (apt-get install gcc))"),
    )),
    Section("suite", "Whole suite on this machine", "s", "wall s, 3 runs", (
        Row("kvmconf run -n 0 · 1086 cases", Figure((3.9, 4.2, 4.0))),
    )),
    Section("vm_mode", "VM mode under QEMU", "s", "wall s from start, 1 run", (
        Row("kvmconf run --kernel", note="skipped: no kernel (set KVMCONF_TEST_KERNEL or put one in "
                                         "/home/someone/with/a/long/path/.cache/kvm-kernels)"),
    )),
))


# ---- statistics and the table ----------------------------------------------------


def test_figure_gives_minimum_and_median() -> None:
    assert Figure((3.0, 1.0, 2.0)).minimum == 1.0
    assert Figure((3.0, 1.0, 2.0)).median == 2.0
    assert Figure((4.0, 1.0, 2.0, 3.0)).median == 2.5
    assert Figure((5.0,)).minimum == Figure((5.0,)).median == 5.0


def test_ratio_is_median_over_median_and_needs_both_sides() -> None:
    assert Row("x", Figure((1.0, 3.0, 2.0)), Figure((0.5, 1.0, 2.0))).ratio == 2.0
    assert Row("x", Figure((1.0,))).ratio is None
    assert Row("x", note="skipped").ratio is None


def test_fmt_keeps_about_three_digits() -> None:
    assert [fmt(v) for v in (0.56789, 1.234, 47.31, 512.4)] == ["0.568", "1.23", "47.3", "512"]


def test_table_fits_100_columns_with_units_and_machine() -> None:
    table = format_table(SAMPLE)
    assert all(len(line) <= bench.TABLE_WIDTH for line in table.splitlines()), table
    assert "CPU µs per call" in table and "wall s" in table
    assert "Test CPU @ 1 GHz, 2 cores, Linux 6.18.0-test" in table
    assert "ratio" in table and "2.73" in table  # median 0.6 over median 0.22
    assert "C: n/a (gcc not found" in table
    assert "skipped: no kernel" in table and "kvm-kernels)" in table  # a long note wraps, whole


def test_json_keeps_every_sample_and_the_machine() -> None:
    data = json.loads(json.dumps(to_json(SAMPLE)))
    assert data["kind"] == "kvmconf-bench"
    assert data["machine"] == {"cores": 2, "kernel": "6.18.0-test", "cpu": "Test CPU @ 1 GHz"}
    assert set(data["settings"]) >= {"runs", "calls_per_run", "vms_per_run", "suite_runs", "long_runs"}
    assert [s["key"] for s in data["sections"]] == ["ioctl", "suite", "vm_mode"]
    first = data["sections"][0]["rows"][0]
    assert set(first) == {"label", "kvmconf", "c", "ratio", "note"}
    assert first["kvmconf"] == {"min": 0.58, "median": 0.6, "samples": [0.61, 0.58, 0.6]}
    assert first["ratio"] == pytest.approx(0.6 / 0.22)
    skipped = data["sections"][2]["rows"][0]
    assert skipped["kvmconf"] is None and skipped["c"] is None and skipped["note"].startswith("skipped:")


def test_cpu_model_from_proc_cpuinfo() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n") == "AMD EPYC 7B13"
    assert cpu_model("processor\t: 0\nModel\t\t: Raspberry Pi 4\n") == "Raspberry Pi 4"
    assert cpu_model("") == "unknown CPU"


# ---- output of the runs bench starts -----------------------------------------------


def test_pytest_summary_and_collection_counts() -> None:
    out = "....\n- Generated html report -\n400 passed, 622 skipped, 64 xfailed in 3.49s\nreports: /tmp/x\n"
    assert parse_summary(out) == {"passed": 400, "skipped": 622, "xfailed": 64}
    assert case_count({"passed": 2, "failed": 1, "deselected": 5}) == 3
    assert parse_summary("no summary here") == {}
    assert parse_collected("suites/x.py::test_a\n\n1086 tests collected in 0.13s\n") == 1086
    assert parse_collected("nothing") is None


def test_row_details_from_run_output() -> None:
    assert bench.cases_detail("3 passed, 1 skipped in 0.1s\n") == "4 cases"
    assert bench.cases_detail("crashed\n") == ""
    assert bench.mutation_detail("mutation score: 44/46 mutants killed (5 profiles, 420s)\n") == "44/46 killed"


def test_vm_mode_kernel_from_env_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KVMCONF_TEST_KERNEL", str(tmp_path / "given"))
    assert vm.find_test_kernel() == tmp_path / "given"
    monkeypatch.delenv("KVMCONF_TEST_KERNEL")
    monkeypatch.setattr(vm, "KERNEL_CACHE", tmp_path)
    assert vm.find_test_kernel() is None
    for name in ("6.12.1", "7.3-built", "7.3.4+deb13-amd64", "7.4.0"):
        (tmp_path / name).mkdir()
    assert vm.find_test_kernel() == tmp_path / "6.12.1"  # no Debian folder: the first
    (tmp_path / "7.3.4+deb13-amd64" / "vmlinuz").write_bytes(b"")
    assert vm.find_test_kernel() == tmp_path / "7.3.4+deb13-amd64"  # Debian's, as debian-kernel writes it


def test_boot_times_come_from_the_lines_timestamps() -> None:
    lines = [
        (0.5, "booting 7.3.4+deb13-amd64 under QEMU (tcg)"),
        (21.0, "guest ready after 20.2 s, running /work/.venv/bin/python"),
        (30.0, "........ss..  [  4%]"),
        (80.0, "400 passed in 50.1s"),
        (81.5, "reports: /tmp/r/20260101-000000"),
    ]
    assert boot_times(lines) == BootTimes(ready=21.0, first_case=30.0, report=81.5)
    assert boot_times([(9.0, "first case after 9.0 s")]).first_case == 9.0
    assert boot_times([(7.0, "\x1b[32m.\x1b[0m\x1b[33ms\x1b[0m\x1b[32m.\x1b[0m")]).first_case == 7.0
    assert boot_times([(1.0, "booting"), (2.0, "reports: /x")]) == BootTimes(None, None, 2.0)


def test_per_case_cost_is_the_time_after_the_first_case_over_the_rest() -> None:
    lines = [(10.0, "first case finished 10.0 s after QEMU started"), (10.1, "1/101 cases"),
             (29.0, "101/101 cases"), (30.0, "reports: /tmp/r/x")]
    times = boot_times(lines)
    assert times.cases == 101 and times.per_case == pytest.approx(0.2)
    assert BootTimes(1.0, None, 2.0, 10).per_case is None


def test_boot_rows_say_which_line_was_missing() -> None:
    rows = boot_rows("7.3 under QEMU", [BootTimes(20.0, None, 90.0), BootTimes(22.0, None, 95.0)])
    assert [r.label.split(": ")[1] for r in rows] == ["start → guest ready", "start → first case", "start → report written",
                                                      "per case after the first"]
    assert rows[0].ours == Figure((20.0, 22.0)) and rows[2].ours is not None
    assert rows[1].ours is None and rows[1].note.startswith("n/a (kvmconf run --kernel printed no")


# ---- the generated C baseline ------------------------------------------------------


def test_loops_come_from_the_abi_facts() -> None:
    found = loops(FACTS)
    assert found[0] == Loop("KVM_CHECK_EXTENSION on /dev/kvm", "system", FACTS.ioctls["KVM_CHECK_EXTENSION"].number, 0)
    gmem = next(loop for loop in found if loop.label.startswith("KVM_CREATE_GUEST_MEMFD"))
    assert gmem.scope == "vm" and isinstance(gmem.arg, bytes)
    assert FACTS.structs["kvm_create_guest_memfd"].unpack(gmem.arg)["flags"] == (1 << 64) - 1


def test_c_source_has_each_loop_with_its_number_and_bytes() -> None:
    src = c_source([Loop("a", "system", 0xAE03, 5), Loop("b", "vm", 0xC040AED4, bytes([1, 2, 0xFF]))], create_vm=0xAE01)
    assert "#define KVM_CREATE_VM_NR 0xae01UL" in src
    assert "case 0: /* a */\n\t\treturn ioctl_loop(sys_fd, 0xae03UL, 0x5UL, runs, calls);" in src
    assert "static unsigned char arg_1[3] __attribute__((aligned(8))) = { 0x01, 0x02, 0xff };" in src
    assert "return ioctl_loop(vm_fd(sys_fd), 0xc040aed4UL, (unsigned long)arg_1, runs, calls);" in src
    assert "CLOCK_THREAD_CPUTIME_ID" in src and "CLOCK_MONOTONIC" in src


def test_c_source_passes_a_negative_int_as_its_64_bit_pattern() -> None:
    assert "0xffffffffffffffffUL" in c_source([Loop("neg", "system", 0xAE03, -1)], create_vm=0xAE01)


@needs_gcc
def test_c_source_compiles_cleanly(tmp_path: Path) -> None:
    src = tmp_path / "loop.c"
    src.write_text(c_source(loops(FACTS), FACTS.ioctls["KVM_CREATE_VM"].number))
    built = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp_path / "loop"), str(src)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr


def test_parse_c_output_gives_first_result_and_us_per_call() -> None:
    assert parse_c_output("2000000 -22\n3000000 -22\n", 1000) == (-22, [2.0, 3.0])
    with pytest.raises(ValueError):
        parse_c_output("", 1000)


# ---- the ioctl fast path's premises ------------------------------------------------


def test_a_bare_int_reaches_c_as_the_same_64_bits_as_c_ulong() -> None:
    """Why KernelBackend.ioctl may pass an int that fits a C int as it is."""
    echo = ctypes.pythonapi.PyLong_FromUnsignedLong
    echo.restype = ctypes.py_object
    for value in (0, 1, 0x7FFF_FFFF, -1, -22, -(1 << 31)):
        assert echo(value) == echo(ctypes.c_ulong(value)) == value & ((1 << 64) - 1)
    assert echo(0x7FFF_1234_5678) == 0x1234_5678  # why wider values must not go bare
    assert echo(ctypes.c_void_p.from_param(0x7FFF_1234_5678)) == 0x7FFF_1234_5678


@needs_kvm
def test_fast_path_passes_pointers_whole_and_errno_exact() -> None:
    backend = KernelBackend()
    struct = FACTS.structs["kvm_create_guest_memfd"]
    buf = ctypes.create_string_buffer(struct.pack({"size": 4096, "flags": (1 << 64) - 1}), struct.size)
    number = FACTS.ioctls["KVM_CREATE_GUEST_MEMFD"].number
    with Kvm.open(backend, FACTS, DEVICE) as kvm, kvm.create_vm(0) as vm:
        assert ctypes.addressof(buf) > 0xFFFF_FFFF  # a pointer a 32-bit cut would break
        rejected = vm.raw(number, ctypes.addressof(buf))
        assert rejected in (-errno.EINVAL, -errno.ENOTTY)  # read the struct, or has no such ioctl: never EFAULT
        assert vm.raw(number, ctypes.addressof(buf) | (1 << 64)) == rejected  # masked to 64 bits, as c_ulong did
        assert vm.raw(number, 0) in (-errno.EFAULT, -errno.ENOTTY)
        assert kvm.check_extension(0) >= 0  # a success in between leaves no stale errno behind
        assert kvm.raw(0xAEFF, 0) == -errno.EINVAL  # /dev/kvm refuses numbers it lacks with EINVAL
    assert backend.ioctl(-1, 0xAE03, 0) == -errno.EBADF


# ---- one real run ------------------------------------------------------------------


@needs_kvm
def test_a_tiny_real_run_writes_the_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--runs", "2", "--calls", "1000", "--vms", "3", "--no-vm", "--no-suite", "--reports", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "Per-ioctl cost" in out and "skipped: --no-vm" in out and "skipped: --no-suite" in out
    [folder] = [p for p in (tmp_path / "bench").iterdir() if p.name != "latest"]
    data = json.loads((folder / "bench.json").read_text())
    assert (folder / "bench.txt").read_text() in out
    assert "int main" in (folder / "bench_loop.c").read_text()  # the C baseline stays with its figures
    assert not (tmp_path / "latest").exists()  # bench runs leave the conformance runs' link alone
    sections = {s["key"]: s for s in data["sections"]}
    assert list(sections) == ["ioctl", "vm", "suite", "vm_mode", "model"]
    for row in sections["ioctl"]["rows"] + sections["vm"]["rows"]:
        assert len(row["kvmconf"]["samples"]) == 2
        if shutil.which("gcc") is not None:
            assert len(row["c"]["samples"]) == 2 and row["ratio"] is not None, row
            assert not row["note"].startswith("not the same call"), row
    assert data["machine"]["cores"] == os.cpu_count()


def test_vm_rows_come_in_both_modes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vm, "find_test_kernel", lambda: tmp_path / "7.3.4")
    ran: list[list[str]] = []
    lines = [(1.0, "guest ready after 1.0 s"), (2.0, "first case finished"), (2.1, "1/3 cases"), (4.0, "3/3 cases"),
             (5.0, "reports: /x")]

    def stream(argv: Sequence[str], progress: object) -> tuple[int, list[tuple[float, str]]]:
        ran.append(list(argv))
        return 0, lines

    monkeypatch.setattr(vm, "stream", stream)
    rows = vm.vm_mode_section(Settings(long_runs=1), tmp_path, lambda _: None).rows
    assert [r.label for r in rows][::4] == ["7.3.4 executor: start → guest ready", "7.3.4 in guest: start → guest ready"]
    assert rows[3].ours == Figure((1.5,)) and ["--in-guest" in argv for argv in ran] == [False, True]
