"""Case tables: every case the suites run, generated from the ABI facts and the caps.

Pure: a table is a function of the facts (which surfaces exist, their layouts) and
the probed caps (VM types, accepted bits). Surfaces the active revision lacks are
still generated from the catalogue of all revisions, so two runs on different
revisions have the same case ids; their requirement then skips them with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from harness.abi.facts import Ioctl, Struct
from harness.abi.fdkind import FdKind
from harness.abi.ioc import Dir
from harness.abi.linux import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    MADV_COLLAPSE,
    MADV_DONTNEED,
    MADV_HUGEPAGE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_SYNC,
    MPOL_BIND,
    MPOL_DEFAULT,
    MPOL_INTERLEAVE,
    PROT_NONE,
    U32,
    U64,
)
from harness.cases.case import GMEM_PAGES, Case
from harness.cases.plan import Plan
from harness.cases.values import page_residues, reserved_values, wrap_points
from harness.rules import MEM_MAX_NR_PAGES, USER_MEM_SLOTS
from harness.surfaces import registry

SYSTEM, VM, GMEM = FdKind.SYSTEM, FdKind.VM, FdKind.GUEST_MEMFD


ATTRIBUTE_IOCTLS = tuple(s.name for s in registry.SURFACES if s.family == "memory attributes")


def struct_surfaces(table: str) -> list[str]:
    """The struct ioctls that take part in `table`, in registry order."""
    return [s.name for s in registry.with_table(table)]


def surface(t: Plan, name: str) -> tuple[Ioctl, Struct]:
    """The ioctl and struct for case generation. The ioctl is the catalogue's, with every
    fd kind any revision gives it, so the same cases exist (and skip) in every revision;
    the struct is the run's layout where it has one."""
    io = t.generated(name)
    assert io.struct is not None
    return io, t.struct_for(name).structs[io.struct]


def fd_kinds(t: Plan, name: str) -> tuple[FdKind, ...]:
    return surface(t, name)[0].fds


def vm_types(t: Plan) -> tuple[int, ...]:
    return t.vm_types


def each_target(t: Plan, name: str) -> Iterator[tuple[FdKind, int]]:
    for fd in fd_kinds(t, name):
        for vt in vm_types(t):
            yield fd, vt


# -- reserved-field rejection --------------------------------------------------------


def reserved_words(t: Plan) -> list[Case]:
    """Every reserved word and pad of every struct, with 1, 1<<63 and all ones."""
    cases = []
    for name in struct_surfaces("reserved_words"):
        _, struct = surface(t, name)
        for fd, vt in each_target(t, name):
            for w in struct.reserved_words():
                for v in reserved_values(8 * w.size):
                    cases.append(Case("reserved", name, fd, vt, ((w.label, v),)))
    return _unique(cases)


def flag_bits(t: Plan) -> list[Case]:
    """Every bit of every flags and attributes word, one at a time; the rules say
    which are advertised (accepted) and which must be rejected."""
    cases = []
    for name in struct_surfaces("flag_bits"):
        _, struct = surface(t, name)
        words = [f for f in registry.surface(name).bit_words if struct.has(f)]
        for fd, vt in each_target(t, name):
            for word in words:
                for bit in range(struct.field(word).bits):
                    cases.append(Case("reserved", name, fd, vt, ((word, 1 << bit),)))
    # a memslot that binds a guest_memfd takes KVM_MEM_GUEST_MEMFD alone: every other bit with it
    gmem = t.facts.constants.get("KVM_MEM_GUEST_MEMFD", 0)
    bits = surface(t, "KVM_SET_USER_MEMORY_REGION2")[1].field("flags").bits
    for vt in vm_types(t):
        cases += [Case("reserved", "KVM_SET_USER_MEMORY_REGION2", VM, vt, (("flags", gmem | 1 << b),), knobs=(("binding", "ok"),))
                  for b in range(bits) if gmem and 1 << b != gmem]
    return cases


def no_trace(t: Plan) -> list[Case]:
    """Rejected calls whose state the uAPI lets us read back: fds and memslots."""
    cases = []
    for vt in vm_types(t):
        for v in (U64, 1 << 63):
            cases.append(Case("reserved", "KVM_CREATE_GUEST_MEMFD", VM, vt, (("flags", v),), tag="no-new-fd"))
        cases.append(Case("reserved", "KVM_CREATE_GUEST_MEMFD", VM, vt, (("size", t.page + 1),), tag="no-new-fd"))
        for v in (1 << 31, U32):
            cases.append(Case("reserved", "KVM_SET_USER_MEMORY_REGION2", VM, vt, (("flags", v),), tag="slot-stays-free"))
        cases.append(Case("reserved", "KVM_SET_USER_MEMORY_REGION2", VM, vt, (("guest_phys_addr", 1),), tag="slot-stays-free"))
    return cases


# -- alignment and bounds ------------------------------------------------------------


def attribute_ranges(t: Plan) -> list[Case]:
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
            # the largest range from a page that does not wrap (attributes 0 everywhere: nothing to store)
            vals.append((("address", page), ("size", (1 << 64) - 2 * page)))
            if fd == GMEM:
                vals += [(("address", 4 * page),), (("address", 3 * page), ("size", 2 * page)), (("size", 5 * page),)]
            cases += [Case("alignment", name, fd, vt, v) for v in vals]
    return cases


def guest_memfd_sizes(t: Plan) -> list[Case]:
    """KVM_CREATE_GUEST_MEMFD sizes: 0, residues, a page, negative as s64, huge."""
    page = t.page
    sizes = [0, *page_residues(page), page, page + 1, 2 * page, U64 & ~(page - 1), 1 << 63, U64,
             (1 << 63) - page, 1 << 40]
    return [Case("alignment", "KVM_CREATE_GUEST_MEMFD", VM, vt, (("size", s),)) for vt in vm_types(t) for s in sizes]


def memslot_ranges(t: Plan) -> list[Case]:
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
        cases += [Case("alignment", name, VM, vt, v) for v in vals]
        bound: list[tuple[tuple[str, int], ...]] = [()]
        bound += [(("guest_memfd_offset", r),) for r in page_residues(page)]
        bound += [(("guest_memfd_offset", 4 * page),), (("guest_memfd_offset", 3 * page), ("memory_size", 2 * page)),
                  (("memory_size", 5 * page),)]
        bound += [(("guest_memfd_offset", w),) for w in wrap_points(page)]
        bound += [(("guest_memfd_offset", w), ("memory_size", w)) for w in wrap_points(page)]
        cases += [Case("alignment", name, VM, vt, v, knobs=(("binding", "ok"),)) for v in bound]
        cases += memslot_bounds(t, vt)
    return cases


def memslot_bounds(t: Plan, vt: int) -> list[Case]:
    """The edges of a slot that the residues never reach: exactly at the user-space and
    guest-physical limits (the host's, set by the surface from the `at` knob), exactly
    KVM_MEM_MAX_NR_PAGES pages, a slot over another's guest page, and a slot that
    already exists: set again as it is, moved, resized, its flags changed, deleted."""
    name, page = "KVM_SET_USER_MEMORY_REGION2", t.page
    log, ro = t.facts.constants.get("KVM_MEM_LOG_DIRTY_PAGES", 1), t.facts.constants.get("KVM_MEM_READONLY", 2)
    rows: list[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int | str], ...]]] = [
        ((), (("at", "user-end"),)), ((), (("at", "user-past"),)), ((), (("at", "gpa-end"),)), ((), (("at", "gpa-past"),)),
        ((("userspace_addr", page), ("memory_size", MEM_MAX_NR_PAGES * page)), ()),
        ((("userspace_addr", page), ("memory_size", (MEM_MAX_NR_PAGES + 1) * page)), ()),
        ((), (("neighbour", 1),)), ((("guest_phys_addr", page),), (("neighbour", 1),)),
        ((("guest_phys_addr", page), ("slot", 1 << 16)), (("neighbour", 1),)),
        ((), (("existing", "plain"),)), ((("guest_phys_addr", page),), (("existing", "plain"),)),
        ((("memory_size", 2 * page),), (("existing", "plain"),)), ((("flags", log),), (("existing", "plain"),)),
        ((("flags", ro),), (("existing", "plain"),)), ((("userspace_addr", 0),), (("existing", "plain"),)),
        ((("memory_size", 0),), (("existing", "plain"),)),
    ]
    return [Case("alignment", name, VM, vt, v, knobs=k) for v, k in rows]


# -- ioctl sizing ------------------------------------------------------------------


def sizing(t: Plan) -> list[Case]:
    """Placement against a guard page, canaries, bad pointers, and the same nr with
    every other size or direction that matters."""
    cases = []
    for name in struct_surfaces("sizing"):
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

KEEP_SIZE, PUNCH_HOLE = FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE


def _gmem_flag_sets(t: Plan) -> list[int]:
    mmap_flag = t.facts.constants.get("GUEST_MEMFD_FLAG_MMAP", 0)
    shared = t.facts.constants.get("GUEST_MEMFD_FLAG_INIT_SHARED", 0)
    return [0, mmap_flag, mmap_flag | shared] if mmap_flag else [0]


def fallocate_ranges(t: Plan) -> list[Case]:
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
        # ending exactly at the file's end; offset + len exactly LLONG_MAX (not past it: no EFBIG)
        rows += [(("mode", mode), ("offset", 3 * page)), (("mode", mode), ("offset", (1 << 63) - page), ("len", page - 1))]
    cases = [Case("alignment", "guest_memfd fallocate", GMEM, vt, r) for vt in vm_types(t) for r in rows]
    # after the VM's fd is closed: the file keeps its VM
    cases += [Case("alignment", "guest_memfd fallocate", GMEM, vt, (("mode", mode),), knobs=(("vm", "closed"),))
              for vt in vm_types(t) for mode in (KEEP_SIZE, KEEP_SIZE | PUNCH_HOLE)]
    # a range punched first is allocated again (the call's answer does not depend on the punch)
    cases += [Case("alignment", "guest_memfd fallocate", GMEM, vt, (("mode", KEEP_SIZE), ("offset", t.page)),
                   knobs=(("punched", 1),)) for vt in vm_types(t)]
    return cases


def fallocate_modes(t: Plan) -> list[Case]:
    """Every fallocate mode bit alone and with KEEP_SIZE (bits 0-31)."""
    rows: list[tuple[tuple[str, int], ...]] = [(("mode", 1 << b),) for b in range(32)]
    rows += [(("mode", KEEP_SIZE | 1 << b),) for b in range(1, 32)]
    # the mode is judged before the range: each bit with KEEP_SIZE where offset + len passes LLONG_MAX
    rows += [(("mode", KEEP_SIZE | 1 << b), ("offset", (1 << 63) - t.page)) for b in range(1, 32)]
    return [Case("reserved", "guest_memfd fallocate", GMEM, vt, r) for vt in vm_types(t) for r in rows]


def guest_memfd_files(t: Plan) -> list[Case]:
    """One guest_memfd per VM type, to fstat; and two of one VM, of different sizes."""
    return [Case("guest_memfd", "guest_memfd fstat", GMEM, vt, knobs=k) for vt in vm_types(t) for k in ((), (("files", 2),))]


def file_calls(t: Plan) -> list[Case]:
    """read, write, their positioned and vectored kinds (also at a negative position),
    lseek, ftruncate, fchmod, FIONREAD, and the mmap matrix with its edges: length 0, map
    type 0, MAP_SHARED_VALIDATE (with and without MAP_SYNC), an offset past the end,
    PROT_NONE."""
    cases = []
    for vt in vm_types(t):
        for call in ("read", "write", "pread", "pwrite", "readv", "preadv", "lseek", "ftruncate", "fchmod", "FIONREAD"):
            cases.append(Case("guest_memfd", f"guest_memfd {call}", GMEM, vt))
        for call in ("pread", "pwrite", "preadv"):
            cases.append(Case("guest_memfd", f"guest_memfd {call}", GMEM, vt, (("offset", U64),)))
        for flags in _gmem_flag_sets(t):
            for mapping in (0x01, 0x02):
                for prot in (0x3, 0x7):
                    cases.append(Case("guest_memfd", "guest_memfd mmap", GMEM, vt, (("map", mapping), ("prot", prot)),
                                      knobs=(("gmem_flags", flags),)))
            edges: list[tuple[tuple[str, int], ...]] = [
                (("length", 0),), (("map", 0),), (("map", MAP_SHARED_VALIDATE),), (("map", MAP_SHARED_VALIDATE | MAP_SYNC),),
                (("map", MAP_SHARED | MAP_SYNC),), (("offset", 8 * t.page),), (("prot", PROT_NONE),)]
            cases += [Case("guest_memfd", "guest_memfd mmap", GMEM, vt, e, knobs=(("gmem_flags", flags),)) for e in edges]
        cases += mapping_calls(t, vt)
    return cases


def mapping_calls(t: Plan, vt: int) -> list[Case]:
    """Calls on a guest_memfd's mapping, as guest_memfd_test.c makes them: madvise
    (test_collapse), mbind (test_mbind: node 0, and a node without memory), and host
    accesses in a forked child (test_fault_overflow, test_fault_private)."""
    mmap_flag = t.facts.constants.get("GUEST_MEMFD_FLAG_MMAP", 0)
    if not mmap_flag:
        return []
    shared = mmap_flag | t.facts.constants.get("GUEST_MEMFD_FLAG_INIT_SHARED", 0)
    size = GMEM_PAGES * t.page
    cases = [Case("guest_memfd", "guest_memfd madvise", GMEM, vt, (("advice", a),), knobs=(("gmem_flags", shared),))
             for a in (MADV_HUGEPAGE, MADV_COLLAPSE, MADV_DONTNEED)]
    cases += [Case("guest_memfd", "guest_memfd mbind", GMEM, vt, (("mode", mode),), knobs=(("gmem_flags", shared), ("nodes", nodes)))
              for mode, nodes in ((MPOL_INTERLEAVE, "node0"), (MPOL_BIND, "node0"), (MPOL_DEFAULT, "none"),
                                  (999, "node0"), (MPOL_BIND, "without-memory"), (MPOL_DEFAULT, "node0"))]
    touches = [  # (gmem flags, mapping length, first byte, bytes, access)
        (shared, 4 * size, 0, 4 * size, "write"), (shared, 4 * size, size, 1, "read"), (shared, size, 0, size, "write"),
        (mmap_flag, size, 0, size, "write"), (mmap_flag, size, 0, 1, "read")]
    cases += [Case("guest_memfd", "guest_memfd touch", GMEM, vt, (("length", length), ("start", start), ("count", count)),
                   knobs=(("gmem_flags", flags), ("access", access))) for flags, length, start, count, access in touches]
    return cases


def fd_flags(t: Plan) -> list[Case]:
    """Whether each fd KVM hands out is close-on-exec: the VM's, a vCPU's, a guest_memfd's."""
    return [Case("guest_memfd", "fd flags", kind, vt) for vt in vm_types(t) for kind in (VM, FdKind.VCPU, GMEM)]


def bindings(t: Plan) -> list[Case]:
    """Binding a guest_memfd range with KVM_MEM_GUEST_MEMFD: each kind of bad fd, and a
    range another slot already binds."""
    name = "KVM_SET_USER_MEMORY_REGION2"
    cases = []
    for vt in vm_types(t):
        for binding in ("ok", "closed", "not-gmem", "other-vm", "invalid"):
            cases.append(Case("guest_memfd", name, VM, vt, knobs=(("binding", binding),)))
        cases.append(Case("guest_memfd", name, VM, vt, knobs=(("binding", "ok"), ("bound", 1))))
        cases += [Case("guest_memfd", name, VM, vt, v, knobs=(("binding", "ok"), *k)) for v, k in _binding_rows(t)]
    return cases


def _binding_rows(t: Plan) -> list[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int | str], ...]]]:
    """A binding that ends at the file's end from a non-zero offset, the whole file, with
    userspace_addr 0; a range overlapping only the front or back half of a bound one, and
    one beside it; a guest_memfd slot that exists: set again, changed, deleted with
    guest_memfd -1."""
    page = t.page
    return [
        ((("guest_memfd_offset", 3 * page),), ()), ((("memory_size", 4 * page),), ()), ((("userspace_addr", 0),), ()),
        ((("guest_memfd_offset", page), ("memory_size", 2 * page)), (("bound", "front"),)),
        ((("guest_memfd_offset", page), ("memory_size", 2 * page)), (("bound", "back"),)),
        ((("guest_memfd_offset", 2 * page), ("memory_size", 2 * page)), (("bound", "front"),)),
        ((), (("existing", "gmem"),)), ((("flags", 0),), (("existing", "gmem"),)),
        ((("memory_size", 0), ("guest_memfd", U32)), (("existing", "gmem"),)),
    ]


# -- cap semantics -------------------------------------------------------------------


def scopes(t: Plan) -> list[tuple[FdKind, int]]:
    """/dev/kvm, then a VM of each type in KVM_CAP_VM_TYPES."""
    return [(SYSTEM, 0), *((VM, vt) for vt in vm_types(t))]


def cap_answers(t: Plan) -> list[Case]:
    """Every cap the ABI facts name, at every scope."""
    return [Case("caps", "KVM_CHECK_EXTENSION", fd, vt, knobs=(("cap", cap),))
            for fd, vt in scopes(t) for cap in sorted(t.caps.system)]


def bitmask_caps(t: Plan) -> list[Case]:
    """Caps whose value is a set of bits (accepted attributes or flags), per VM type."""
    names = sorted({c for io in t.facts.ioctls.values() for c in (*io.attributes_caps.values(), io.flags_cap) if c})
    return [Case("caps", "KVM_CHECK_EXTENSION", VM, vt, knobs=(("cap", n),)) for vt in vm_types(t) for n in names]


def cap_mirrors(t: Plan) -> list[Case]:
    """Caps a revision says answer what another answers, at every scope."""
    return [Case("caps", "KVM_CHECK_EXTENSION", fd, vt, knobs=(("cap", a), ("mirrors", b)))
            for a, b in sorted(t.facts.cap_mirrors.items()) for fd, vt in scopes(t)]


def vm_type_sweep(t: Plan) -> list[Case]:
    """KVM_CREATE_VM with every type 0-64, and types whose low 32 bits are a valid one."""
    types = [*range(65), 1 << 32, 1 << 63, U64]
    return [Case("caps", "KVM_CREATE_VM", SYSTEM, 0, (("type", n),)) for n in types]


def wide_cap_numbers(t: Plan) -> list[Case]:
    """KVM_CHECK_EXTENSION with 2^32 + the number of each cap the facts name, at every
    scope: the long is compared whole, so each answers 0."""
    return [Case("caps", "KVM_CHECK_EXTENSION", fd, vt, knobs=(("cap", cap),), tag="wide")
            for fd, vt in scopes(t) for cap in sorted(t.caps.system)]


def advertised_bits(t: Plan) -> list[Case]:
    """Every bit a cap advertises, accepted alone: guest_memfd flags and attributes."""
    cases = []
    for vt in vm_types(t):
        flags = t.caps.at("KVM_CAP_GUEST_MEMFD_FLAGS", vt) or 0
        cases += [Case("caps", "KVM_CREATE_GUEST_MEMFD", VM, vt, (("flags", 1 << b),)) for b in range(64) if flags >> b & 1]
        if flags:
            cases.append(Case("caps", "KVM_CREATE_GUEST_MEMFD", VM, vt, (("flags", flags),)))
        for name in ATTRIBUTE_IOCTLS:
            io, _ = surface(t, name)
            for fd in io.fds:
                cases.append(Case("caps", name, fd, vt, (("attributes", 0),)))
                cap = io.attributes_caps.get(fd)
                attrs = (t.caps.at(cap, vt) or 0) if cap else 0
                cases += [Case("caps", name, fd, vt, (("attributes", 1 << b),)) for b in range(64) if attrs >> b & 1]
    return cases


def existence(t: Plan) -> list[Case]:
    """Each struct ioctl on each fd kind that announces it by a cap: a NULL argument
    must give EFAULT where the cap says the ioctl exists, ENOTTY where it does not."""
    cases = []
    for name in struct_surfaces("existence"):
        io, _ = surface(t, name)
        for fd in io.fds:
            if fd in io.caps:
                cases += [Case("caps", name, fd, vt, tag="exists-iff-cap") for vt in vm_types(t)]
    return cases


# -- property-based ---------------------------------------------------------------------


def property_targets(t: Plan) -> list[Case]:
    """One property-based case per struct ioctl, fd kind and VM type: hypothesis draws
    the struct (suites/test_properties.py)."""
    return [Case("property", name, fd, vt, tag="drawn") for name in struct_surfaces("property") for fd, vt in each_target(t, name)]


# -- parity -----------------------------------------------------------------------------


def parity_rows(t: Plan) -> list[Case]:
    """One validation matrix for every ioctl that both a VM fd and a guest_memfd fd take."""
    cases = []
    page = t.page
    for name in ATTRIBUTE_IOCTLS:
        io, struct = surface(t, name)
        if not {VM, GMEM} <= set(io.fds):
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
        cases += [Case("parity", name, VM, vt, r) for vt in vm_types(t) for r in rows]
    return cases


def absent_on_fd(t: Plan) -> list[Case]:
    """Every struct ioctl on a VM or guest_memfd fd that the revision does not give it
    (v5 refuses KVM_SET_MEMORY_ATTRIBUTES2 on the VM fd): ENOTTY."""
    cases = []
    for name in struct_surfaces("absent_on_fd"):
        active = t.facts.ioctls.get(name)
        for fd in (VM, GMEM):
            if active is None or fd not in active.fds:
                cases += [Case("parity", name, fd, vt, tag="absent") for vt in vm_types(t)]
    return cases


CaseTable = Callable[[Plan], list[Case]]


def table(name: str) -> CaseTable:
    """The table a suite names: one of this module's, or one a surface family declares
    in its module's `TABLES` (so a new ioctl's own tables live with its surface)."""
    fn = globals().get(name) if not name.startswith("_") else None
    if callable(fn) and getattr(fn, "__module__", "") == __name__ and name in _TABLE_NAMES:
        return fn  # type: ignore[no-any-return]
    found = registry.family_tables().get(name)
    if found is None:
        raise KeyError(f"no case table {name!r} in harness.cases.tables or a surface family's TABLES")
    return found


def table_names() -> list[str]:
    return sorted({*_TABLE_NAMES, *registry.family_tables()})


def _is_table(f: object) -> bool:
    return callable(f) and getattr(f, "__module__", "") == __name__ and getattr(f, "__annotations__", {}).get("return") == "list[Case]"


_TABLE_NAMES = frozenset(n for n, f in list(globals().items()) if _is_table(f))
