"""The host's own bounds that memslot rules use, read off this machine (or the guest the
suite runs in): TASK_SIZE_MAX and the guest-physical width KVM's MMU allows."""

from __future__ import annotations

import re
from pathlib import Path

from harness.abi.linux import MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_NONE
from harness.host.libc import _mmap, munmap
from harness.rules import MAX_GPA_BITS, HostLimits

MAP_FIXED_NOREPLACE = 0x100000
# 5-level paging gives user space 56 bits, but only to a mapping asked for above 47 bits
LA57_PROBE = 1 << 48
TDP_PARAMS = ("/sys/module/kvm_intel/parameters/ept", "/sys/module/kvm_amd/parameters/npt")


def user_limit() -> int:
    """TASK_SIZE_MAX: 2^56 - page when a mapping above 2^47 can be made, else 2^47 - page."""
    addr = _mmap(LA57_PROBE, PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
    la57 = addr == LA57_PROBE
    if addr is not None and addr != -1 and addr != (1 << 64) - 1:
        munmap(int(addr), PAGE_SIZE)
    return (1 << (56 if la57 else 47)) - PAGE_SIZE


def tdp_enabled(params: tuple[str, ...] = TDP_PARAMS) -> bool:
    for p in params:
        try:
            if Path(p).read_text().strip() in ("Y", "1"):
                return True
        except OSError:
            continue
    return False


def phys_bits(cpuinfo: str = "/proc/cpuinfo") -> int | None:
    """MAXPHYADDR as the kernel reports it ("address sizes : 46 bits physical")."""
    try:
        m = re.search(r"address sizes\s*:\s*(\d+) bits physical", Path(cpuinfo).read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def host_limits() -> HostLimits:
    """kvm_mmu_max_gfn(): MAXPHYADDR with TDP (EPT or NPT) on, 52 bits otherwise."""
    bits = (phys_bits() or MAX_GPA_BITS) if tdp_enabled() else MAX_GPA_BITS
    return HostLimits(user_limit=user_limit(), gpa_bits=bits)
