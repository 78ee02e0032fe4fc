"""The expected answer of each ioctl, from the spec (`spec/uapi.md`) and api.rst.

Each rule is a small function from an input to an `Expect`: success, or which errno,
and the clause of the spec that decided. Clauses are tried in the kernel's order, so
an input that breaks two clauses gets the errno of the first. The tests, the
property-based cases and the HTML's failure explanations all ask these functions;
nothing else knows an expected errno. Which clauses apply is data: the struct's
reserved words come from the ABI facts, accepted bits from the caps.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.abi.facts import Struct
from harness.abi.fdkind import FdKind
from harness.abi.linux import (
    FALLOC_FL_COLLAPSE_RANGE,
    FALLOC_FL_INSERT_RANGE,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_MODE_MASK,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_UNSHARE_RANGE,
    FALLOC_FL_WRITE_ZEROES,
    FALLOC_FL_ZERO_RANGE,
    MADV_COLLAPSE,
    MADV_HUGEPAGE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_SYNC,
    MAP_TYPE,
    MPOL_DEFAULT,
    MPOL_MAX,
    PAGE_SIZE,
    PROT_EXEC,
    S64_MAX,
    S_IFREG,
    SIGBUS,
    U64,
    as_s64,
    wraps,
)


@dataclass(frozen=True)
class Expect:
    """An expected answer: errno 0 means success; `clause` is the spec's words."""

    errno: int
    rule: str
    clause: str

    @property
    def ok(self) -> bool:
        return self.errno == 0

    def matches(self, result: int) -> bool:
        return result >= 0 if self.ok else result == -self.errno

    def __str__(self) -> str:
        return "success" if self.ok else errno.errorcode[self.errno]


@dataclass(frozen=True)
class KernelData:
    """Answers on which released kernels differ: per-kernel data, never test code.

    `range_bound_errno`: binding a guest_memfd range that another slot already binds
    (EEXIST on 7.3, EINVAL on 6.18).
    """

    range_bound_errno: int = errno.EEXIST


def aligned(value: int, page: int) -> bool:
    return value % page == 0


def _reserved_set(struct: Struct, values: Mapping[str, int]) -> str | None:
    for w in struct.reserved_words():
        if values.get(w.label, 0):
            return w.label
    return None


@dataclass(frozen=True)
class MemoryAttributesInput:
    """`kvm_memory_attributes{,2}` as sent: word labels to values (missing = 0)."""

    values: Mapping[str, int]
    struct: Struct
    supported_attributes: int
    page: int
    allowed_flags: int = 0
    file_size: int | None = None  # set when sent through a guest_memfd fd
    checks_reserved: bool = True

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64


PAST_FILE_END = "offset + size past the end of the guest_memfd file → EINVAL"
# The documented differences between the VM fd and the guest_memfd fd ("offset versus
# address, bounds of the file"): clauses that only a guest_memfd fd has.
GUEST_MEMFD_ONLY_CLAUSES = frozenset({PAST_FILE_END})


def set_memory_attributes(a: MemoryAttributesInput) -> Expect:
    """KVM_SET_MEMORY_ATTRIBUTES and KVM_SET_MEMORY_ATTRIBUTES2 on a VM or guest_memfd fd.

    api.rst / spec: "flags ≠ 0 → EINVAL; attributes outside what the VM supports →
    EINVAL; size 0 or address+size wraps → EINVAL; address or size not page aligned →
    EINVAL"; the seed adds "any reserved[i] ≠ 0 → EINVAL" for v2; through a guest_memfd
    `address` is a file offset and the range must lie inside the file.
    """
    rule = f"{a.struct.name} rules"
    addr, size = a.get("address"), a.get("size")
    if a.get("flags") & ~a.allowed_flags:
        return Expect(errno.EINVAL, rule, "flags outside the advertised flags (0 when none) → EINVAL")
    if a.get("attributes") & ~a.supported_attributes:
        return Expect(errno.EINVAL, rule, "attributes outside what the VM supports → EINVAL")
    if size == 0:
        return Expect(errno.EINVAL, rule, "size 0 → EINVAL")
    if wraps(addr, size):
        return Expect(errno.EINVAL, rule, "address + size wraps → EINVAL")
    if not aligned(addr, a.page) or not aligned(size, a.page):
        return Expect(errno.EINVAL, rule, "address or size not page aligned → EINVAL")
    if a.checks_reserved:
        label = _reserved_set(a.struct, a.values)
        if label is not None:
            return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (reserved words must be zero)")
    if a.file_size is not None and addr + size > a.file_size:
        return Expect(errno.EINVAL, rule, PAST_FILE_END)
    return Expect(0, rule, "a valid range and supported attributes → 0")


def create_guest_memfd(values: Mapping[str, int], struct: Struct, supported_flags: int, page: int) -> Expect:
    """KVM_CREATE_GUEST_MEMFD: "flags outside KVM_CAP_GUEST_MEMFD_FLAGS → EINVAL; size ≤ 0
    as a signed 64-bit value, or not page aligned → EINVAL; returns a new fd"; by the
    hygiene rules, "check all unused fields ... for zero, reject otherwise"."""
    rule = "KVM_CREATE_GUEST_MEMFD rules"
    flags, size = values.get("flags", 0) & U64, values.get("size", 0) & U64
    if flags & ~supported_flags:
        return Expect(errno.EINVAL, rule, "flags outside KVM_CAP_GUEST_MEMFD_FLAGS → EINVAL")
    if as_s64(size) <= 0:
        return Expect(errno.EINVAL, rule, "size ≤ 0 as a signed 64-bit value → EINVAL")
    if not aligned(size, page):
        return Expect(errno.EINVAL, rule, "size not page aligned → EINVAL")
    label = _reserved_set(struct, values)
    if label is not None:
        return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (unused fields must be zero)")
    return Expect(0, rule, "valid size and advertised flags → a new guest_memfd fd")


def create_vm(vm_type: int, vm_types: int) -> Expect:
    """KVM_CREATE_VM: "type not in KVM_CAP_VM_TYPES bitmask → EINVAL"; the type is an
    unsigned long compared whole (kvm_is_vm_type_supported: type < 32 and its bit set)."""
    rule = "KVM_CREATE_VM rules"
    if not 0 <= vm_type < 64 or not (vm_types >> vm_type) & 1:
        return Expect(errno.EINVAL, rule, "type not in the KVM_CAP_VM_TYPES bitmask → EINVAL")
    return Expect(0, rule, "an advertised type → a new VM fd")


def unknown_cap(number: int) -> Expect:
    """KVM_CHECK_EXTENSION "returns 0 for an unsupported extension"; the argument is a
    long compared whole (kvm_vm_ioctl_check_extension_generic's switch), so a number with
    bits above 31 names no cap, whatever its low 32 bits."""
    return Expect(0, "KVM_CHECK_EXTENSION rules", f"0x{number:x} is no cap number → 0")


MAX_GPA_BITS = 52  # kvm_mmu_max_gfn() without TDP; with TDP the host's MAXPHYADDR (HostLimits)
USER_VA_BITS = 47  # x86-64 user space with 4-level paging: TASK_SIZE_MAX = 2^47 - page
USER_MEM_SLOTS = 32764  # x86 KVM_USER_MEM_SLOTS: KVM_MEM_SLOTS_NUM (32767) - 3 private slots
MEM_MAX_NR_PAGES = (1 << 31) - 1  # KVM_MEM_MAX_NR_PAGES: dirty bitmaps are indexed by an unsigned int


@dataclass(frozen=True)
class HostLimits:
    """Bounds a memslot rule takes from the host, never from a constant: TASK_SIZE_MAX
    (2^56 - page with 5-level paging, 2^47 - page without) and the guest-physical width
    kvm_mmu_max_gfn() allows (MAXPHYADDR when TDP is on, 52 bits otherwise);
    kvm_cpu_dirty_log_size(): the dirty-ring entries a CPU's own log may still push (PML's
    512 on an Intel host with it on, 0 otherwise); and for the rules of a guest_memfd
    mapping, the mm the kernel was built with: THP's PMD size (0 without
    CONFIG_TRANSPARENT_HUGEPAGE) and the nodes with memory (0 without CONFIG_NUMA)."""

    user_limit: int = (1 << USER_VA_BITS) - PAGE_SIZE
    gpa_bits: int = MAX_GPA_BITS
    cpu_dirty_log_size: int = 0
    pmd_size: int = PAGE_SIZE << 9
    memory_nodes: int = 1  # node_states[N_MEMORY] as a mask: node 0 alone


@dataclass(frozen=True)
class MemslotInput:
    """`kvm_userspace_memory_region2` as sent, with what the rules need to know."""

    values: Mapping[str, int]
    struct: Struct
    page: int
    flag_bits: Mapping[str, int]  # KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEM_GUEST_MEMFD
    has_guest_memfd: bool = True
    guest_memfd: str = "ok"  # "ok", "closed", "invalid" (u32 ~0), "not-gmem", "other-vm"
    file_size: int = 0
    range_bound: bool = False  # another slot binds part of [guest_memfd_offset, + memory_size)
    kernel: KernelData = field(default_factory=KernelData)
    address_spaces: int = 1  # KVM_CAP_MULTI_ADDRESS_SPACE on this VM (0 answers mean 1)
    slots: int = USER_MEM_SLOTS  # KVM_CAP_NR_MEMSLOTS on this VM
    host: HostLimits = field(default_factory=HostLimits)
    readonly_mem: bool = True  # kvm_arch_has_readonly_mem(): no protected state (not SEV-ES, SNP, TDX)
    existing: Mapping[str, int] | None = None  # the slot of that id already there, as it was set
    overlaps: bool = False  # another slot of the address space covers part of the guest range

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64

    def valid_flags(self, flags: int) -> int:
        """check_memory_region_flags(): LOG_DIRTY_PAGES, READONLY where the VM has read-only
        memory, or GUEST_MEMFD alone."""
        gmem = self.flag_bits["KVM_MEM_GUEST_MEMFD"] if self.has_guest_memfd else 0
        if flags & gmem:
            return gmem
        readonly = self.flag_bits["KVM_MEM_READONLY"] if self.readonly_mem else 0
        return self.flag_bits["KVM_MEM_LOG_DIRTY_PAGES"] | readonly | gmem


def set_user_memory_region2(m: MemslotInput) -> Expect:
    """KVM_SET_USER_MEMORY_REGION2: "unknown flags → EINVAL"; memory_size, guest_phys_addr
    and userspace_addr page aligned; no wrap of guest_phys_addr + memory_size; memory_size
    0 deletes a slot (none there → EINVAL); an overlapping slot → EEXIST;
    `KVM_MEM_GUEST_MEMFD` binds a guest_memfd range: "not an open fd → EBADF; not a
    guest_memfd, or one of another VM → EINVAL; guest_memfd_offset not page aligned, or
    offset + memory_size past the file's end → EINVAL; a file range already bound → EEXIST
    on 7.3, EINVAL on 6.18"; by the hygiene rules pad1 and pad2 must be zero; the slot id
    below KVM_CAP_NR_MEMSLOTS in an address space the VM has; a slot that exists is only
    moved or has its dirty logging changed (same userspace_addr and size, READONLY kept;
    a guest_memfd slot only deleted), the same values again → 0. Order as in
    kvm_set_memory_region() and kvm_gmem_prepare_memory_region()."""
    rule = "KVM_SET_USER_MEMORY_REGION2 rules"
    flags = m.get("flags")
    size, gpa, uaddr, off = m.get("memory_size"), m.get("guest_phys_addr"), m.get("userspace_addr"), m.get("guest_memfd_offset")
    gmem = bool(flags & m.flag_bits["KVM_MEM_GUEST_MEMFD"])
    label = _reserved_set(m.struct, m.values)
    if label is not None:
        return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (padding must be zero)")
    slot = m.get("slot")
    if slot & 0xFFFF >= m.slots or slot >> 16 >= max(m.address_spaces, 1):
        return Expect(errno.EINVAL, rule, "slot id ≥ KVM_CAP_NR_MEMSLOTS, or slot >> 16 ≥ KVM_CAP_MULTI_ADDRESS_SPACE → EINVAL")
    if flags & ~m.valid_flags(flags):
        return Expect(errno.EINVAL, rule, "flags outside the valid memslot flags (GUEST_MEMFD only alone) → EINVAL")
    if not aligned(size, m.page):
        return Expect(errno.EINVAL, rule, "memory_size not page aligned → EINVAL")
    if not aligned(gpa, m.page):
        return Expect(errno.EINVAL, rule, "guest_phys_addr not page aligned → EINVAL")
    if not aligned(uaddr, m.page) or wraps(uaddr, size) or uaddr + size > m.host.user_limit:
        return Expect(errno.EINVAL, rule, "userspace_addr not page aligned or range not in user space → EINVAL")
    if gmem and (not aligned(off, m.page) or wraps(off, size)):
        return Expect(errno.EINVAL, rule, "guest_memfd_offset not page aligned, or offset + size wraps → EINVAL")
    if wraps(gpa, size):
        return Expect(errno.EINVAL, rule, "guest_phys_addr + memory_size wraps → EINVAL")
    if size // m.page > MEM_MAX_NR_PAGES:
        return Expect(errno.EINVAL, rule, "more than KVM_MEM_MAX_NR_PAGES pages → EINVAL")
    if size == 0:
        if m.existing is None:
            return Expect(errno.EINVAL, rule, "memory_size 0 deletes a slot; with no slot there → EINVAL")
        return Expect(0, rule, "memory_size 0 deletes the slot → 0")
    if m.existing is not None:
        old = m.existing
        if gmem:
            return Expect(errno.EINVAL, rule, "a slot that exists with KVM_MEM_GUEST_MEMFD: guest_memfd slots are immutable → EINVAL")
        readonly = m.flag_bits["KVM_MEM_READONLY"] | m.flag_bits["KVM_MEM_GUEST_MEMFD"]
        if uaddr != old.get("userspace_addr", 0) or size != old.get("memory_size", 0) or (flags ^ old.get("flags", 0)) & readonly:
            return Expect(errno.EINVAL, rule, "changing an existing slot's userspace_addr, size, READONLY or GUEST_MEMFD → EINVAL")
        if gpa == old.get("guest_phys_addr", 0) and flags == old.get("flags", 0):
            return Expect(0, rule, "an existing slot set again as it is → 0 (nothing to change)")
    if m.overlaps:
        return Expect(errno.EEXIST, rule, "guest range overlapping another slot → EEXIST")
    if gmem:
        if m.guest_memfd in ("closed", "invalid"):
            return Expect(errno.EBADF, rule, "guest_memfd not an open fd → EBADF")
        if m.guest_memfd in ("not-gmem", "other-vm"):
            return Expect(errno.EINVAL, rule, "an fd that is not a guest_memfd of this VM → EINVAL")
        if off + size > m.file_size:
            return Expect(errno.EINVAL, rule, "guest_memfd_offset + memory_size past the file's end → EINVAL")
    if gpa + size > (1 << m.host.gpa_bits):
        return Expect(errno.EINVAL, rule, "guest_phys_addr + memory_size beyond the guest's physical address width → EINVAL")
    if gmem and m.range_bound:
        return Expect(m.kernel.range_bound_errno, rule, "file range already bound to another slot → per-kernel errno")
    return Expect(0, rule, "a valid slot → 0")


# the one clause by which v1 answers otherwise than v2 on the fields they share
V1_FLAGS = "flags other than LOG_DIRTY_PAGES and READONLY (v1) → EINVAL"


def set_user_memory_region(m: MemslotInput) -> Expect:
    """KVM_SET_USER_MEMORY_REGION (v1): "flags other than KVM_MEM_LOG_DIRTY_PAGES and
    KVM_MEM_READONLY → EINVAL" before anything else (kvm_main.c:5255-5258, so
    KVM_MEM_GUEST_MEMFD is refused), then as KVM_SET_USER_MEMORY_REGION2 on a v2 struct
    whose other fields are zero (the fields the two share answer alike)."""
    rule = "KVM_SET_USER_MEMORY_REGION rules"
    if m.get("flags") & ~(m.flag_bits["KVM_MEM_LOG_DIRTY_PAGES"] | m.flag_bits["KVM_MEM_READONLY"]):
        return Expect(errno.EINVAL, rule, V1_FLAGS)
    v2 = set_user_memory_region2(m)
    return Expect(v2.errno, rule, v2.clause)


def _vfs_refuses_mode(mode: int) -> bool:
    """vfs_fallocate(): unknown bits, more than one exclusive mode, PUNCH_HOLE without
    KEEP_SIZE, or COLLAPSE/INSERT/WRITE_ZEROES with it."""
    if mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE):
        return True
    exclusive = mode & FALLOC_FL_MODE_MASK
    keep = bool(mode & FALLOC_FL_KEEP_SIZE)
    if exclusive in (0, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE):
        return False
    if exclusive == FALLOC_FL_PUNCH_HOLE:
        return not keep
    if exclusive in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES):
        return keep
    return True


def guest_memfd_fallocate(mode: int, offset: int, length: int, file_size: int, page: int) -> Expect:
    """fallocate on a guest_memfd: "a mode without FALLOC_FL_KEEP_SIZE, or with bits other
    than KEEP_SIZE | PUNCH_HOLE → EOPNOTSUPP; offset or length not page aligned → EINVAL;
    allocating past the file's end → EINVAL; punching a hole at or past the end → 0",
    after the VFS's own checks (vfs_fallocate: negative offset or length ≤ 0 → EINVAL,
    offset + length past LLONG_MAX → EFBIG)."""
    rule = "guest_memfd fallocate rules"
    off, length = as_s64(offset), as_s64(length)
    if off < 0 or length <= 0:
        return Expect(errno.EINVAL, rule, "negative offset or length ≤ 0 → EINVAL (vfs_fallocate)")
    if _vfs_refuses_mode(mode):
        return Expect(errno.EOPNOTSUPP, rule, "a mode the VFS refuses → EOPNOTSUPP (vfs_fallocate)")
    if off + length > S64_MAX:
        return Expect(errno.EFBIG, rule, "offset + length past LLONG_MAX → EFBIG (vfs_fallocate)")
    if not mode & FALLOC_FL_KEEP_SIZE or mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        return Expect(errno.EOPNOTSUPP, rule, "mode without KEEP_SIZE or with bits other than KEEP_SIZE | PUNCH_HOLE → EOPNOTSUPP")
    if not aligned(off, page) or not aligned(length, page):
        return Expect(errno.EINVAL, rule, "offset or length not page aligned → EINVAL")
    if mode & FALLOC_FL_PUNCH_HOLE:
        return Expect(0, rule, "punching a hole, even at or past the end → 0")
    if off + length > file_size:
        return Expect(errno.EINVAL, rule, "allocating past the file's end → EINVAL")
    return Expect(0, rule, "allocating inside the file → 0")


def guest_memfd_mmap(gmem_flags: int, map_flags: int, prot: int, mmap_flag: int, length: int = 1) -> Expect:
    """mmap of a guest_memfd: "only with GUEST_MEMFD_FLAG_MMAP (else ENODEV) and
    MAP_SHARED (a private mapping → EINVAL)"; before kvm_gmem_mmap, do_mmap's own checks:
    length 0 → EINVAL, a map type that is neither → EINVAL, MAP_SHARED_VALIDATE with a
    flag the file lacks (MAP_SYNC) → EOPNOTSUPP, and the noexec guest_memfd mount makes
    PROT_EXEC → EPERM. Any offset maps (kvm_gmem_mmap checks none; a fault past the end
    is SIGBUS), PROT_NONE too."""
    rule = "guest_memfd mmap rules"
    if length == 0:
        return Expect(errno.EINVAL, rule, "length 0 → EINVAL (do_mmap)")
    if (map_flags & MAP_TYPE) not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        return Expect(errno.EINVAL, rule, "neither MAP_SHARED nor MAP_PRIVATE → EINVAL (do_mmap)")
    if (map_flags & MAP_TYPE) == MAP_SHARED_VALIDATE and map_flags & MAP_SYNC:
        return Expect(errno.EOPNOTSUPP, rule, "MAP_SHARED_VALIDATE with MAP_SYNC, which the file does not support → EOPNOTSUPP")
    if prot & PROT_EXEC:
        return Expect(errno.EPERM, rule, "PROT_EXEC on the noexec guest_memfd mount → EPERM")
    if not gmem_flags & mmap_flag:
        return Expect(errno.ENODEV, rule, "no GUEST_MEMFD_FLAG_MMAP → ENODEV")
    if not map_flags & MAP_SHARED:
        return Expect(errno.EINVAL, rule, "a private mapping → EINVAL")
    return Expect(0, rule, "MAP_SHARED of an MMAP guest_memfd → a mapping")


def guest_memfd_madvise(advice: int, pmd_size: int) -> Expect:
    """madvise on a guest_memfd mapping, which mm/ answers (kvm_gmem_vm_ops has no hook
    for it): "MADV_HUGEPAGE → 0 (hugepage_madvise only sets VM_HUGEPAGE); MADV_COLLAPSE →
    EINVAL: guest_memfd folios are never collapsed (madvise_collapse: collapse_possible
    fails, since file_thp_enabled refuses the anon inode without PMD folios,
    khugepaged.c:3210, huge_memory.c:95-111); MADV_DONTNEED → 0, and the next read
    refaults the page". Without CONFIG_TRANSPARENT_HUGEPAGE (no PMD size on the host)
    madvise_behavior_valid knows neither THP advice → EINVAL."""
    rule = "guest_memfd madvise rules"
    if advice in (MADV_HUGEPAGE, MADV_COLLAPSE) and not pmd_size:
        return Expect(errno.EINVAL, rule, "THP advice without CONFIG_TRANSPARENT_HUGEPAGE → EINVAL (madvise_behavior_valid)")
    if advice == MADV_COLLAPSE:
        return Expect(errno.EINVAL, rule, "MADV_COLLAPSE → EINVAL: guest_memfd folios are never collapsed")
    if advice == MADV_HUGEPAGE:
        return Expect(0, rule, "MADV_HUGEPAGE → 0 (VM_HUGEPAGE set, nothing collapsed)")
    return Expect(0, rule, "MADV_DONTNEED → 0; the pages refault on the next access")


def guest_memfd_mbind(mode: int, nodemask: int, memory_nodes: int) -> Expect:
    """mbind on a guest_memfd mapping (kvm_gmem_set_policy keeps it in the inode's shared
    policy; kernel_mbind, do_mbind and mpol_new in mm/mempolicy.c decide first): "no
    CONFIG_NUMA → ENOSYS (sys_ni); mode ≥ MPOL_MAX → EINVAL (sanitize_mpol_flags);
    MPOL_DEFAULT with nodes → EINVAL (mpol_new); another mode whose nodes have no memory
    on this host → EINVAL (mpol_set_nodemask leaves the mask empty); else 0, and
    get_mempolicy(MPOL_F_ADDR) reads back the mode and nodes (MPOL_DEFAULT: mask 0)"."""
    rule = "guest_memfd mbind rules"
    if not memory_nodes:
        return Expect(errno.ENOSYS, rule, "no CONFIG_NUMA: mbind → ENOSYS")
    if mode >= MPOL_MAX:
        return Expect(errno.EINVAL, rule, "mode ≥ MPOL_MAX → EINVAL")
    if mode == MPOL_DEFAULT:
        if nodemask:
            return Expect(errno.EINVAL, rule, "MPOL_DEFAULT with nodes → EINVAL")
        return Expect(0, rule, "MPOL_DEFAULT → 0; get_mempolicy reads MPOL_DEFAULT and mask 0")
    if not nodemask & memory_nodes:
        return Expect(errno.EINVAL, rule, "no node with memory in the mask → EINVAL")
    return Expect(0, rule, "a mode and nodes with memory → 0; get_mempolicy reads them back")


@dataclass(frozen=True)
class Fault:
    """What a host access to a guest_memfd mapping ends in: a signal (0: none), and the
    file offset of the first byte that faults (None: none)."""

    signal: int
    at: int | None
    clause: str


def guest_memfd_touch(start: int, length: int, file_size: int, shared: bool) -> Fault:
    """Host accesses to file offsets [start, start + length) of a guest_memfd mapping, in
    order (kvm_gmem_fault_user_mapping, guest_memfd.c:358-368): "a page at or past i_size
    → SIGBUS; a private page → SIGBUS (without GUEST_MEMFD_FLAG_INIT_SHARED every page is
    private: kvm_gmem_is_private_mem, guest_memfd.c:64-67); a shared page inside the file
    → the access completes, and the bytes before a fault stay written"."""
    if length and start >= file_size:
        return Fault(SIGBUS, start, "an access at or past i_size → SIGBUS")
    if length and not shared:
        return Fault(SIGBUS, start, "an access to a private page (no GUEST_MEMFD_FLAG_INIT_SHARED) → SIGBUS")
    if start + length > file_size:
        return Fault(SIGBUS, file_size, "an access that runs past i_size → SIGBUS at the end, the bytes before it written")
    return Fault(0, None, "accesses to shared pages inside the file → no signal")


POSITIONED = ("pread", "pwrite", "preadv")


def guest_memfd_io(call: str, offset: int = 0) -> Expect:
    """The guest_memfd file's other calls (kvm_gmem_fops has mmap, open, release and
    fallocate only): "read and write → EINVAL (no read or write operations); pread and
    pwrite → ESPIPE (not seekable)"; readv and preadv as read and pread; a negative
    position → EINVAL first (ksys_pread64, do_preadv); lseek → ESPIPE (no llseek);
    ftruncate and fchmod reach kvm_gmem_setattr, which refuses every change → EINVAL;
    FIONREAD → ENOTTY: do_vfs_ioctl answers it only for regular files that are not anon
    inodes, and hands it to the file, which has no ioctl."""
    rule = "guest_memfd file rules"
    if call in POSITIONED and as_s64(offset) < 0:
        return Expect(errno.EINVAL, rule, f"{call} at a negative position → EINVAL")
    if call in (*POSITIONED, "lseek"):
        return Expect(errno.ESPIPE, rule, f"{call} → ESPIPE (not seekable)")
    if call == "FIONREAD":
        return Expect(errno.ENOTTY, rule, "FIONREAD → ENOTTY (an anon inode: the file has no ioctl)")
    if call in ("ftruncate", "fchmod"):
        return Expect(errno.EINVAL, rule, f"{call} → EINVAL (kvm_gmem_setattr refuses every change)")
    return Expect(errno.EINVAL, rule, f"{call} → EINVAL (no read or write operations)")


def close_on_exec(kind: FdKind) -> bool:
    """Which fds KVM makes close-on-exec: a VM's and a vCPU's (get_unused_fd_flags and
    anon_inode_getfd with O_CLOEXEC), not a guest_memfd (kvm_gmem_create:
    get_unused_fd_flags(0)); api.rst says nothing of either."""
    return kind != FdKind.GUEST_MEMFD


def guest_memfd_fstat(size: int, page: int) -> dict[str, int]:
    """fstat of a guest_memfd: "st_size is the size asked for, st_blksize the page size";
    a regular file of mode 0600 (alloc_anon_inode's S_IRUSR | S_IWUSR, S_IFREG added by
    __kvm_gmem_create); each guest_memfd is an inode of its own (__kvm_gmem_create allocates
    one per call), so two of one VM differ in st_ino and keep their own st_size."""
    return {"st_size": size, "st_blksize": page, "st_mode": S_IFREG | 0o600}


def absent_ioctl(name: str, fd_label: str, fd: FdKind = FdKind.VM) -> Expect:
    """"The kernel dispatches on the whole number": an ioctl that does not exist on an
    fd, or a known nr with another size or direction, answers ENOTTY; on x86 the
    /dev/kvm and vCPU switches fall to a default of EINVAL instead (x86.c:2530-2532
    kvm_arch_dev_ioctl, x86.c:3889-3890 kvm_arch_vcpu_ioctl; docs/notes.md)."""
    if fd in (FdKind.SYSTEM, FdKind.VCPU):
        return Expect(errno.EINVAL, "ioctl dispatch", f"{name} does not exist on {fd_label} → EINVAL (x86's default for this kind of fd)")
    return Expect(errno.ENOTTY, "ioctl dispatch", f"{name} does not exist on {fd_label} → ENOTTY")


def bad_pointer(name: str, what: str) -> Expect:
    """"NULL or unmapped pointer → EFAULT"; also a struct whose last byte is unreadable."""
    return Expect(errno.EFAULT, "copy_from_user", f"{name} with {what} → EFAULT")
