"""The bounds that memslot rules take from the machine the calls run on: TASK_SIZE_MAX and
the guest-physical width KVM's MMU allows; THP's PMD size and the nodes with memory. Read through two small probes so a backend
that runs the calls elsewhere (a guest's executor) reads its own machine, not this one."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from harness.abi.linux import MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_NONE
from harness.host.libc import _MAP_FAILED, _mmap, munmap
from harness.rules import MAX_GPA_BITS, HostLimits

MAP_FIXED_NOREPLACE = 0x100000
# 5-level paging gives user space 56 bits, but only to a mapping asked for above 47 bits
LA57_PROBE = 1 << 48
LA57_FLAGS = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
# each vendor module's parameter, and the CPU flag without which that module never ran its
# hardware_setup (a built-in kvm_intel on an AMD CPU still shows its defaults: ept=Y, pml=Y)
TDP_PARAMS = (("/sys/module/kvm_intel/parameters/ept", "vmx"), ("/sys/module/kvm_amd/parameters/npt", "svm"))
CPU_FLAGS = re.compile(r"^flags\s*:(.*)$", re.M)
PML_PARAM = "/sys/module/kvm_intel/parameters/pml"
PML_LOG_NR_ENTRIES = 512  # arch/x86/kvm/vmx/vmx.h:269; vmx_vm_init() sets cpu_dirty_log_size to it with PML (vmx.c:7776)
PHYS_BITS = re.compile(r"address sizes\s*:\s*(\d+) bits physical")
# present only with CONFIG_TRANSPARENT_HUGEPAGE (mm/huge_memory.c) and CONFIG_NUMA (drivers/base/node.c)
PMD_SIZE = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
HAS_MEMORY = "/sys/devices/system/node/has_memory"

Reader = Callable[[str], str | None]  # a file's text, or None when it cannot be read


def limits(read: Reader, maps_above_47_bits: bool) -> HostLimits:
    """kvm_mmu_max_gfn(): MAXPHYADDR ("address sizes : 46 bits physical") with TDP (EPT or
    NPT) on, 52 bits otherwise; TASK_SIZE_MAX: 2^56 - page when a mapping above 2^47 can
    be made, else 2^47 - page; kvm_cpu_dirty_log_size(): PML's entries when kvm_intel has
    PML on (vmx.c turns it off without EPT), else 0 (SVM and shadow paging log no dirty pages of their own)."""
    cpuinfo = read("/proc/cpuinfo") or ""
    flags = set(f.group(1).split()) if (f := CPU_FLAGS.search(cpuinfo)) else set()

    def on(path: str, cpu_flag: str) -> bool:
        return cpu_flag in flags and (read(path) or "").strip() in ("Y", "1")

    tdp = any(on(p, flag) for p, flag in TDP_PARAMS)
    m = PHYS_BITS.search(cpuinfo) if tdp else None
    return HostLimits(user_limit=(1 << (56 if maps_above_47_bits else 47)) - PAGE_SIZE,
                      gpa_bits=int(m.group(1)) if m else MAX_GPA_BITS,
                      pmd_size=int((read(PMD_SIZE) or "0").strip() or 0), memory_nodes=node_mask(read(HAS_MEMORY) or ""),
                      cpu_dirty_log_size=PML_LOG_NR_ENTRIES if on(PML_PARAM, "vmx") else 0)


def node_mask(text: str) -> int:
    """A node list as sysfs prints it ("0", "0-3,6") as a mask."""
    mask = 0
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            mask |= sum(1 << n for n in range(int(first), int(last or first) + 1))
    return mask


def read_local(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def maps_above_47_bits_here() -> bool:
    addr = _mmap(LA57_PROBE, PAGE_SIZE, PROT_NONE, LA57_FLAGS, -1, 0)
    if addr is None or addr == _MAP_FAILED:
        return False
    munmap(int(addr), PAGE_SIZE)
    return int(addr) == LA57_PROBE


def host_limits() -> HostLimits:
    """This machine's."""
    return limits(read_local, maps_above_47_bits_here())
