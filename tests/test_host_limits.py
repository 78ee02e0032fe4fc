"""The host's limits from its /proc and /sys, through a fake reader: a vendor module's
parameters count only on a CPU of that vendor (a built-in kvm_intel on an AMD CPU shows
its defaults, ept=Y and pml=Y, without ever running)."""

from __future__ import annotations

from harness.host.limits import PML_LOG_NR_ENTRIES, limits
from harness.rules import MAX_GPA_BITS


def reader(cpu_flag: str, **params: str) -> dict[str, str]:
    files = {"/proc/cpuinfo": f"processor\t: 0\nflags\t\t: fpu sse2 {cpu_flag} lm\naddress sizes\t: 48 bits physical, 48 bits virtual\n"}
    files.update({f"/sys/module/{k.replace('__', '/parameters/')}": v for k, v in params.items()})
    return files


def test_built_in_kvm_intel_on_an_amd_cpu_sets_nothing() -> None:
    files = reader("svm", kvm_intel__ept="Y", kvm_intel__pml="Y", kvm_amd__npt="Y")
    host = limits(files.get, False)
    assert (host.gpa_bits, host.cpu_dirty_log_size) == (48, 0)


def test_intel_with_pml() -> None:
    host = limits(reader("vmx", kvm_intel__ept="Y", kvm_intel__pml="Y").get, False)
    assert (host.gpa_bits, host.cpu_dirty_log_size) == (48, PML_LOG_NR_ENTRIES)


def test_no_tdp_means_52_bits() -> None:
    host = limits(reader("svm", kvm_amd__npt="N").get, False)
    assert (host.gpa_bits, host.cpu_dirty_log_size) == (MAX_GPA_BITS, 0)
