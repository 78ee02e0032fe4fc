"""Case tables: every case the suites run, generated from the ABI facts and the caps.

Pure: a table is a function of the facts (which surfaces exist, their layouts) and
the probed caps (VM types, accepted bits). Surfaces the active revision lacks are
still generated from the catalogue of all revisions, so two runs on different
revisions have the same case ids; their requirement then skips them with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

from harness.abi.facts import AbiFacts, Ioctl, Struct
from harness.abi.ioc import Dir
from harness.abi.profile import catalogue
from harness.host.usermem import PAGE_SIZE
from harness.rules import USER_MEM_SLOTS
from harness.session.engine import Case
from harness.session.target import Target

ONES = (1 << 64) - 1


def reserved_values(bits: int) -> tuple[int, int, int]:
    """1, the top bit and all ones of a word (1, 1<<63, ~0 for a u64)."""
    return (1, 1 << (bits - 1), (1 << bits) - 1)
STRUCT_IOCTLS = ("KVM_SET_MEMORY_ATTRIBUTES", "KVM_SET_MEMORY_ATTRIBUTES2", "KVM_CREATE_GUEST_MEMFD", "KVM_SET_USER_MEMORY_REGION2")
ATTRIBUTE_IOCTLS = ("KVM_SET_MEMORY_ATTRIBUTES", "KVM_SET_MEMORY_ATTRIBUTES2")


def surface(t: Target, name: str) -> tuple[Ioctl, Struct]:
    """The ioctl and struct for case generation. The ioctl is the catalogue's, with every
    fd kind any revision gives it, so the same cases exist (and skip) in every revision;
    the struct is the active facts' layout where they have one."""
    cat = catalogue(t.facts.encoding)
    io = cat.ioctls[name]
    assert io.struct is not None
    facts: AbiFacts = t.facts if io.struct in t.facts.structs else cat
    return io, facts.structs[io.struct]


def fd_kinds(t: Target, name: str) -> tuple[str, ...]:
    return surface(t, name)[0].fds


def vm_types(t: Target) -> tuple[int, ...]:
    return t.caps.vm_types


def page_residues(page: int = PAGE_SIZE) -> tuple[int, ...]:
    """Unaligned residues that matter: 1, page−1 and one between."""
    return (1, page // 2 + 8, page - 1)


def wrap_points(page: int = PAGE_SIZE) -> tuple[int, ...]:
    """Page-aligned values where signed (2^63) and unsigned (2^64) arithmetic wraps."""
    return ((1 << 63) - page, 1 << 63, (1 << 64) - page)


def each_target(t: Target, name: str) -> Iterator[tuple[str, int]]:
    for fd in fd_kinds(t, name):
        for vt in vm_types(t):
            yield fd, vt


# -- reserved-field rejection --------------------------------------------------------


def reserved_words(t: Target) -> list[Case]:
    """Every reserved word and pad of every struct, with 1, 1<<63 and all ones."""
    cases = []
    for name in STRUCT_IOCTLS:
        _, struct = surface(t, name)
        for fd, vt in each_target(t, name):
            for w in struct.reserved_words():
                for v in reserved_values(8 * w.size):
                    cases.append(Case("reserved", name, fd, vt, ((w.label, v),)))
    return _unique(cases)


def flag_bits(t: Target) -> list[Case]:
    """Every bit of every flags and attributes word, one at a time; the rules say
    which are advertised (accepted) and which must be rejected."""
    cases = []
    for name in STRUCT_IOCTLS:
        _, struct = surface(t, name)
        words = [f for f in ("flags", "attributes") if struct.has(f)]
        for fd, vt in each_target(t, name):
            for word in words:
                for bit in range(struct.field(word).bits):
                    cases.append(Case("reserved", name, fd, vt, ((word, 1 << bit),)))
    # a memslot that binds a guest_memfd takes KVM_MEM_GUEST_MEMFD alone: every other bit with it
    gmem = t.facts.constants.get("KVM_MEM_GUEST_MEMFD", 0)
    bits = surface(t, "KVM_SET_USER_MEMORY_REGION2")[1].field("flags").bits
    for vt in vm_types(t):
        cases += [Case("reserved", "KVM_SET_USER_MEMORY_REGION2", "vm", vt, (("flags", gmem | 1 << b),), knobs=(("binding", "ok"),))
                  for b in range(bits) if gmem and 1 << b != gmem]
    return cases


def no_trace(t: Target) -> list[Case]:
    """Rejected calls whose state the uAPI lets us read back: fds and memslots."""
    cases = []
    for vt in vm_types(t):
        for v in (ONES, 1 << 63):
            cases.append(Case("reserved", "KVM_CREATE_GUEST_MEMFD", "vm", vt, (("flags", v),), tag="no-new-fd"))
        cases.append(Case("reserved", "KVM_CREATE_GUEST_MEMFD", "vm", vt, (("size", t.page + 1),), tag="no-new-fd"))
        for v in (1 << 31, ONES & 0xFFFFFFFF):
            cases.append(Case("reserved", "KVM_SET_USER_MEMORY_REGION2", "vm", vt, (("flags", v),), tag="slot-stays-free"))
        cases.append(Case("reserved", "KVM_SET_USER_MEMORY_REGION2", "vm", vt, (("guest_phys_addr", 1),), tag="slot-stays-free"))
    return cases


# -- alignment and bounds ------------------------------------------------------------


def attribute_ranges(t: Target) -> list[Case]:
    """address and size: residues, size 0, wraps near 2^63 and 2^64, alone and summed."""
    page = t.page
    cases = []
    for name in ATTRIBUTE_IOCTLS:
        for fd, vt in each_target(t, name):
            vals: list[tuple[tuple[str, int], ...]] = []
            for r in page_residues(page):
                vals += [(("address", r),), (("size", r),), (("address", page + r), ("size", page))]
            vals.append((("size", 0),))
            for w in wrap_points(page):
                vals += [(("address", w),), (("size", w),), (("address", w), ("size", page)),
                         (("address", page), ("size", w)), (("address", w), ("size", w))]
            vals.append((("address", (1 << 64) - page), ("size", 2 * page)))
            if fd == "guest_memfd":
                vals += [(("address", 4 * page),), (("address", 3 * page), ("size", 2 * page)), (("size", 5 * page),)]
            cases += [Case("alignment", name, fd, vt, v) for v in vals]
    return cases


def guest_memfd_sizes(t: Target) -> list[Case]:
    """KVM_CREATE_GUEST_MEMFD sizes: 0, residues, a page, negative as s64, huge."""
    page = t.page
    sizes = [0, *page_residues(page), page, page + 1, 2 * page, ONES & ~(page - 1), 1 << 63, ONES,
             (1 << 63) - page, 1 << 40]
    return [Case("alignment", "KVM_CREATE_GUEST_MEMFD", "vm", vt, (("size", s),)) for vt in vm_types(t) for s in sizes]


def memslot_ranges(t: Target) -> list[Case]:
    """Memslot addresses, sizes and offsets: residues, wraps, past the file's end."""
    page = t.page
    name = "KVM_SET_USER_MEMORY_REGION2"
    cases = []
    for vt in vm_types(t):
        vals: list[tuple[tuple[str, int], ...]] = []
        for field in ("guest_phys_addr", "memory_size", "userspace_addr"):
            vals += [((field, r),) for r in page_residues(page)]
        vals.append((("memory_size", 0),))
        for w in wrap_points(page):
            vals += [(("guest_phys_addr", w),), (("memory_size", w),), (("userspace_addr", w),),
                     (("guest_phys_addr", w), ("memory_size", w))]
        vals += [(("guest_phys_addr", (1 << 64) - page), ("memory_size", 2 * page))]
        # slot ids: the last user slot, the first past it, and address spaces 1, 2 and the top one
        vals += [(("slot", s),) for s in (USER_MEM_SLOTS - 1, USER_MEM_SLOTS, 0xFFFF, 1 << 16, 2 << 16, 0xFFFFFFFF)]
        cases += [Case("alignment", name, "vm", vt, v) for v in vals]
        bound: list[tuple[tuple[str, int], ...]] = [()]
        bound += [(("guest_memfd_offset", r),) for r in page_residues(page)]
        bound += [(("guest_memfd_offset", 4 * page),), (("guest_memfd_offset", 3 * page), ("memory_size", 2 * page)),
                  (("memory_size", 5 * page),)]
        bound += [(("guest_memfd_offset", w),) for w in wrap_points(page)]
        bound += [(("guest_memfd_offset", w), ("memory_size", w)) for w in wrap_points(page)]
        cases += [Case("alignment", name, "vm", vt, v, knobs=(("binding", "ok"),)) for v in bound]
    return cases


# -- ioctl sizing ------------------------------------------------------------------


def sizing(t: Target) -> list[Case]:
    """Placement against a guard page, canaries, bad pointers, and the same nr with
    every other size or direction that matters."""
    cases = []
    for name in STRUCT_IOCTLS:
        io, struct = surface(t, name)
        for fd, vt in each_target(t, name):
            for placement in ("exact", "overhang", "canaries", "null", "unmapped"):
                cases.append(Case("sizing", name, fd, vt, placement=placement))
            if io.direction == Dir.WRITE:
                cases.append(Case("sizing", name, fd, vt, placement="readonly"))
                cases.append(Case("sizing", name, fd, vt, placement="trailing"))
            enc = t.facts.encoding
            for direction, size in _wrong_numbers(io, struct):
                number = enc.ioc(direction, io.type, io.nr, size)
                if any(other.number == number for other in t.facts.ioctls.values()):
                    continue  # another revision's real ioctl: checked as itself
                cases.append(Case("sizing", name, fd, vt, number=number, number_tag=f"{direction.macro}-size-{size}"))
    return cases


def _wrong_numbers(io: Ioctl, struct: Struct) -> list[tuple[Dir, int]]:
    sizes = sorted({struct.size - 8, struct.size - 1, struct.size + 1, struct.size + 8, 0})
    out = [(io.direction, s) for s in sizes if s >= 0]
    out += [(d, struct.size) for d in (Dir.NONE, Dir.WRITE, Dir.READ, Dir.WRITE | Dir.READ) if d != io.direction]
    return out


def _unique(cases: list[Case]) -> list[Case]:
    seen: dict[str, Case] = {}
    for c in cases:
        seen.setdefault(c.id, c)
    return list(seen.values())


# -- the guest_memfd file ---------------------------------------------------------------

KEEP_SIZE, PUNCH_HOLE = 0x1, 0x2


def _gmem_flag_sets(t: Target) -> list[int]:
    mmap_flag = t.facts.constants.get("GUEST_MEMFD_FLAG_MMAP", 0)
    shared = t.facts.constants.get("GUEST_MEMFD_FLAG_INIT_SHARED", 0)
    return [0, mmap_flag, mmap_flag | shared] if mmap_flag else [0]


def fallocate_ranges(t: Target) -> list[Case]:
    """fallocate offsets and lengths: residues, zero, past the end, near 2^63 and 2^64."""
    page = t.page
    rows: list[tuple[tuple[str, int], ...]] = []
    for mode in (KEEP_SIZE, KEEP_SIZE | PUNCH_HOLE):
        rows += [(("mode", mode), ("offset", r)) for r in page_residues(page)]
        rows += [(("mode", mode), ("len", r)) for r in page_residues(page)]
        rows += [(("mode", mode), ("len", 0)), (("mode", mode), ("offset", 4 * page)),
                 (("mode", mode), ("offset", 3 * page), ("len", 2 * page)),
                 (("mode", mode), ("offset", 8 * page)), (("mode", mode), ("len", 4 * page))]
        rows += [(("mode", mode), ("offset", w)) for w in wrap_points(page)]
        rows += [(("mode", mode), ("len", w)) for w in wrap_points(page)]
        rows += [(("mode", mode), ("offset", w), ("len", w)) for w in wrap_points(page)]
    return [Case("alignment", "guest_memfd fallocate", "guest_memfd", vt, r) for vt in vm_types(t) for r in rows]


def fallocate_modes(t: Target) -> list[Case]:
    """Every fallocate mode bit alone and with KEEP_SIZE (bits 0-31)."""
    rows = [(("mode", 1 << b),) for b in range(32)] + [(("mode", KEEP_SIZE | 1 << b),) for b in range(1, 32)]
    return [Case("reserved", "guest_memfd fallocate", "guest_memfd", vt, r) for vt in vm_types(t) for r in rows]


def guest_memfd_files(t: Target) -> list[Case]:
    """One guest_memfd per VM type, to fstat."""
    return [Case("guest_memfd", "guest_memfd fstat", "guest_memfd", vt) for vt in vm_types(t)]


def file_calls(t: Target) -> list[Case]:
    """read, write, pread and pwrite (also at a negative position), and the mmap matrix."""
    cases = []
    for vt in vm_types(t):
        for call in ("read", "write", "pread", "pwrite"):
            cases.append(Case("guest_memfd", f"guest_memfd {call}", "guest_memfd", vt))
        for call in ("pread", "pwrite"):
            cases.append(Case("guest_memfd", f"guest_memfd {call}", "guest_memfd", vt, (("offset", ONES),)))
        for flags in _gmem_flag_sets(t):
            for mapping in (0x01, 0x02):
                for prot in (0x3, 0x7):
                    cases.append(Case("guest_memfd", "guest_memfd mmap", "guest_memfd", vt, (("map", mapping), ("prot", prot)),
                                      knobs=(("gmem_flags", flags),)))
    return cases


def bindings(t: Target) -> list[Case]:
    """Binding a guest_memfd range with KVM_MEM_GUEST_MEMFD: each kind of bad fd, and a
    range another slot already binds."""
    name = "KVM_SET_USER_MEMORY_REGION2"
    cases = []
    for vt in vm_types(t):
        for binding in ("ok", "closed", "not-gmem", "other-vm"):
            cases.append(Case("guest_memfd", name, "vm", vt, knobs=(("binding", binding),)))
        cases.append(Case("guest_memfd", name, "vm", vt, knobs=(("binding", "ok"), ("bound", 1))))
    return cases


# -- cap semantics -------------------------------------------------------------------


def scopes(t: Target) -> list[tuple[str, int]]:
    """/dev/kvm, then a VM of each type in KVM_CAP_VM_TYPES."""
    return [("system", 0), *(("vm", vt) for vt in vm_types(t))]


def cap_answers(t: Target) -> list[Case]:
    """Every cap the ABI facts name, at every scope."""
    return [Case("caps", "KVM_CHECK_EXTENSION", fd, vt, knobs=(("cap", cap),))
            for fd, vt in scopes(t) for cap in sorted(t.caps.system)]


def bitmask_caps(t: Target) -> list[Case]:
    """Caps whose value is a set of bits (accepted attributes or flags), per VM type."""
    names = sorted({c for io in t.facts.ioctls.values() for c in (*io.attributes_caps.values(), io.flags_cap) if c})
    return [Case("caps", "KVM_CHECK_EXTENSION", "vm", vt, knobs=(("cap", n),)) for vt in vm_types(t) for n in names]


def cap_mirrors(t: Target) -> list[Case]:
    """Caps a revision says answer what another answers, at every scope."""
    return [Case("caps", "KVM_CHECK_EXTENSION", fd, vt, knobs=(("cap", a), ("mirrors", b)))
            for a, b in sorted(t.facts.cap_mirrors.items()) for fd, vt in scopes(t)]


def vm_type_sweep(t: Target) -> list[Case]:
    """KVM_CREATE_VM with every type 0-63."""
    return [Case("caps", "KVM_CREATE_VM", "system", 0, (("type", n),)) for n in range(64)]


def advertised_bits(t: Target) -> list[Case]:
    """Every bit a cap advertises, accepted alone: guest_memfd flags and attributes."""
    cases = []
    for vt in vm_types(t):
        flags = t.caps.at("KVM_CAP_GUEST_MEMFD_FLAGS", vt) or 0
        cases += [Case("caps", "KVM_CREATE_GUEST_MEMFD", "vm", vt, (("flags", 1 << b),)) for b in range(64) if flags >> b & 1]
        if flags:
            cases.append(Case("caps", "KVM_CREATE_GUEST_MEMFD", "vm", vt, (("flags", flags),)))
        for name in ATTRIBUTE_IOCTLS:
            io, _ = surface(t, name)
            for fd in io.fds:
                cases.append(Case("caps", name, fd, vt, (("attributes", 0),)))
                cap = io.attributes_caps.get(fd)
                attrs = (t.caps.at(cap, vt) or 0) if cap else 0
                cases += [Case("caps", name, fd, vt, (("attributes", 1 << b),)) for b in range(64) if attrs >> b & 1]
    return cases


def existence(t: Target) -> list[Case]:
    """Each struct ioctl on each fd kind that announces it by a cap: a NULL argument
    must give EFAULT where the cap says the ioctl exists, ENOTTY where it does not."""
    cases = []
    for name in STRUCT_IOCTLS:
        io, _ = surface(t, name)
        for fd in io.fds:
            if fd in io.caps:
                cases += [Case("caps", name, fd, vt, tag="exists-iff-cap") for vt in vm_types(t)]
    return cases


# -- property-based ---------------------------------------------------------------------


def property_targets(t: Target) -> list[Case]:
    """One property-based case per struct ioctl, fd kind and VM type: hypothesis draws
    the struct (suites/test_properties.py)."""
    return [Case("property", name, fd, vt, tag="drawn") for name in STRUCT_IOCTLS for fd, vt in each_target(t, name)]


# -- parity -----------------------------------------------------------------------------


def parity_rows(t: Target) -> list[Case]:
    """One validation matrix for every ioctl that both a VM fd and a guest_memfd fd take."""
    cases = []
    page = t.page
    for name in ATTRIBUTE_IOCTLS:
        io, struct = surface(t, name)
        if not {"vm", "guest_memfd"} <= set(io.fds):
            continue
        rows: list[tuple[tuple[str, int], ...]] = [()]
        rows += [(("flags", 1 << b),) for b in (0, 31, 63)]
        rows += [(("attributes", 1 << b),) for b in (0, 3, 63)]
        rows += [((w.label, 1),) for w in struct.reserved_words()]
        for r in page_residues(page):
            rows += [(("address", r),), (("size", r),)]
        rows += [(("size", 0),), (("address", 4 * page),), (("size", 5 * page),)]
        for w in wrap_points(page):
            rows += [(("address", w),), (("size", w),), (("address", w), ("size", w))]
        cases += [Case("parity", name, "vm", vt, r) for vt in vm_types(t) for r in rows]
    return cases


def absent_on_fd(t: Target) -> list[Case]:
    """Every struct ioctl on a VM or guest_memfd fd that the revision does not give it
    (v5 refuses KVM_SET_MEMORY_ATTRIBUTES2 on the VM fd): ENOTTY."""
    cases = []
    for name in STRUCT_IOCTLS:
        active = t.facts.ioctls.get(name)
        for fd in ("vm", "guest_memfd"):
            if active is None or fd not in active.fds:
                cases += [Case("parity", name, fd, vt, tag="absent") for vt in vm_types(t)]
    return cases
