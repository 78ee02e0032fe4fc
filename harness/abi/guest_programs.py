"""Guest programs and the vCPU they run on, as data: machine code with its assembly
beside it, what each instruction does (the steps the model carries out and the rules
predict exits from), and the 64-bit long-mode setup (page tables, GDT, sregs, regs).

The bytes were assembled with GNU as (`.code64`) and checked with objdump. The setup is
the selftests' `vcpu_init_sregs()` (lib/x86/processor.c): CPL0 long mode with 2 MiB
identity pages over the first GiB. Guest-physical layout:

    TEST_GPA  0x0        the case's test slot (slot 1, TEST_PAGES pages): what a program reads or writes
    LOG_GPA   0x4000     a second logging slot beside it (slot 2, TEST_PAGES pages), when a case asks
    FILL_GPA  0x400000   a logging slot (slot 2) a loop writes page after page of, to fill a dirty ring
    BASE_GPA  0x100000   slot 0, 1 MiB: page tables, GDT, TSS, IDT, code, stack
    MMIO_GPA  0x10000000 in no memslot, mapped by the guest's page tables
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from harness.abi.linux import PAGE_SIZE

TEST_SLOT, BASE_SLOT = 1, 0
TEST_GPA, TEST_PAGES = 0x0, 4
LOG_SLOT, LOG_GPA = 2, TEST_GPA + TEST_PAGES * PAGE_SIZE
FILL_GPA = 0x400000
BASE_GPA, BASE_SIZE = 0x100000, 0x100000
PML4_GPA, PDPT_GPA, PD_GPA = (BASE_GPA + n * PAGE_SIZE for n in (1, 2, 3))  # one page each
GDT_GPA, TSS_GPA, IDT_GPA = (BASE_GPA + n * PAGE_SIZE for n in (4, 5, 6))
CODE_GPA, STACK_TOP = BASE_GPA + 0x10000, BASE_GPA + 0x20000
MMIO_GPA = 0x10000000
OUT_PORT, DATA_PORT = 0x10, 0x11  # the byte a program announces; the dword it read
STORED = 0x11223344  # what the store programs write
HOST_PATTERN = 0xA5C3F00D  # what the host writes where a program loads
MMIO_REPLY = 0xFEEDFACE  # what the host answers an MMIO read with

PTE_P, PTE_RW, PTE_PS = 0x1, 0x2, 0x80
CR0_PE, CR0_NE, CR0_PG = 0x1, 0x20, 0x80000000
CR4_PAE, CR4_OSFXSR = 0x20, 0x200
EFER_LME, EFER_LMA, EFER_NX = 0x100, 0x400, 0x800
RFLAGS_FIXED = 0x2
SEL_CODE, SEL_DATA, SEL_TSS = 0x08, 0x10, 0x18


@dataclass(frozen=True)
class Step:
    """What one instruction does that the uAPI can see: `load` or `store` `size` bytes
    at `gpa`, `out` to `port` (a constant, or the value last loaded when `value` is
    None), or `hlt`; in a loop's body, `indexed` takes the address from rdi (a load or
    store) or the port from dx (`out`), advanced by rsi each pass."""

    op: str
    gpa: int = 0
    port: int = 0
    size: int = 0
    value: int | None = None
    indexed: bool = False


@dataclass(frozen=True)
class Program:
    """Machine code and its steps; a loop program's `steps` are its body, which runs rcx
    times (`program_steps`), then hlt."""

    name: str
    code: bytes
    asm: str
    steps: tuple[Step, ...]
    loop: bool = False


def _load(gpa: int) -> tuple[Step, ...]:
    return Step("load", gpa=gpa, size=4), Step("out", port=DATA_PORT, size=4), Step("hlt")


def _store(*gpas: int) -> tuple[Step, ...]:
    return *(Step("store", gpa=gpa, size=4, value=STORED) for gpa in gpas), Step("hlt")


PROGRAMS: dict[str, Program] = {p.name: p for p in (
    Program("out", bytes.fromhex("b042 e610 f4"), "mov $0x42,%al; out %al,$0x10; hlt",
            (Step("out", port=OUT_PORT, size=1, value=0x42), Step("hlt"))),
    Program("load-test", bytes.fromhex("8b042500000000 e711 f4"), "mov 0x0,%eax; out %eax,$0x11; hlt", _load(TEST_GPA)),
    Program("store-test", bytes.fromhex("c7042500000000 44332211 f4"), "movl $0x11223344,0x0; hlt", _store(TEST_GPA)),
    Program("store-page2", bytes.fromhex("c7042500200000 44332211 f4"), "movl $0x11223344,0x2000; hlt",
            _store(TEST_GPA + 2 * PAGE_SIZE)),
    Program("store-pages-1-3", bytes.fromhex("c7042500100000 44332211 c7042500300000 44332211 f4"),
            "movl $0x11223344,0x1000; movl $0x11223344,0x3000; hlt", _store(TEST_GPA + PAGE_SIZE, TEST_GPA + 3 * PAGE_SIZE)),
    Program("load-mmio", bytes.fromhex("8b042500000010 e711 f4"), "mov 0x10000000,%eax; out %eax,$0x11; hlt",
            _load(MMIO_GPA)),
    Program("store-mmio", bytes.fromhex("c7042500000010 44332211 f4"), "movl $0x11223344,0x10000000; hlt",
            _store(MMIO_GPA)),
)}


LOOP_BODY = {
    "store": (Step("store", size=4, value=STORED, indexed=True),),
    "load": (Step("load", size=4, indexed=True), Step("out", port=DATA_PORT, size=4)),
    "out": (Step("out", size=4, value=STORED, indexed=True),),
    "mixed": (Step("store", size=4, value=STORED, indexed=True), Step("out", size=4, value=STORED, indexed=True)),
}
# `loop` decrements rcx and jumps back while it is not zero: the case sets rcx (>= 1), rdi, rsi and rdx
LOOPS = (
    Program("store-loop", bytes.fromhex("c70744332211 4801f7 e2f5 f4"),
            "1: movl $0x11223344,(%rdi); add %rsi,%rdi; loop 1b; hlt", LOOP_BODY["store"], loop=True),
    Program("load-loop", bytes.fromhex("8b07 e711 4801f7 e2f7 f4"),
            "1: mov (%rdi),%eax; out %eax,$0x11; add %rsi,%rdi; loop 1b; hlt", LOOP_BODY["load"], loop=True),
    Program("out-loop", bytes.fromhex("b844332211 ef 6601f2 e2fa f4"),
            "mov $0x11223344,%eax; 1: out %eax,(%dx); add %si,%dx; loop 1b; hlt", LOOP_BODY["out"], loop=True),
    Program("mixed-loop", bytes.fromhex("b844332211 8907 ef 4801f7 6601f2 e2f5 f4"),
            "mov $0x11223344,%eax; 1: mov %eax,(%rdi); out %eax,(%dx); add %rsi,%rdi; add %si,%dx; loop 1b; hlt",
            LOOP_BODY["mixed"], loop=True),
)
PROGRAM_NAMED = {**PROGRAMS, **{p.name: p for p in LOOPS}}  # every program, the loops apart from PROGRAMS


def program_steps(program: Program, gprs: Mapping[str, int]) -> tuple[Step, ...]:
    """The steps a program takes from its entry with these registers: a loop program's
    body rcx times, pass i at rdi + i * rsi (port dx + i * si, 16 bits), then hlt."""
    if not program.loop:
        return program.steps
    count, addr, stride, port = (gprs.get(r, 0) for r in ("rcx", "rdi", "rsi", "rdx"))
    assert count >= 1, "loop with rcx 0 runs 2^64 times"
    out: list[Step] = []
    for i in range(count):
        for s in program.steps:
            if s.indexed and s.op == "out":
                out.append(replace(s, port=(port + i * stride) & 0xFFFF))
            elif s.indexed:
                out.append(replace(s, gpa=addr + i * stride))
            else:
                out.append(s)
    return (*out, Step("hlt"))


def program_at(code: bytes) -> Program | None:
    """The program whose bytes start `code` (the model recognises programs this way)."""
    return next((p for p in (*PROGRAMS.values(), *LOOPS) if code.startswith(p.code)), None)


# -- the long-mode vCPU ----------------------------------------------------------------------


def _descriptor(seg: dict[str, int]) -> int:
    """A GDT descriptor's low quadword for a kvm_segment's fields (present, DPL 0)."""
    base, g = seg.get("base", 0), seg.get("g", 0)
    lim = seg["limit"] >> 12 if g else seg["limit"]
    return ((lim & 0xFFFF) | (base & 0xFFFFFF) << 16 | seg["type"] << 40 | seg.get("s", 0) << 44 | 1 << 47
            | (lim >> 16 & 0xF) << 48 | seg.get("l", 0) << 53 | g << 55 | (base >> 24 & 0xFF) << 56)


SEGMENTS: dict[str, dict[str, int]] = {
    "code": {"selector": SEL_CODE, "base": 0, "limit": 0xFFFFFFFF, "type": 0xB, "present": 1, "s": 1, "l": 1, "g": 1},
    "data": {"selector": SEL_DATA, "base": 0, "limit": 0xFFFFFFFF, "type": 0x3, "present": 1, "s": 1, "g": 1},
    "tss": {"selector": SEL_TSS, "base": TSS_GPA, "limit": 0x67, "type": 0xB, "present": 1},
}


def memory_image() -> dict[int, bytes]:
    """What the harness writes into slot 0 before a program runs, by GPA (code apart)."""
    pd = b"".join(((i << 21) | PTE_P | PTE_RW | PTE_PS).to_bytes(8, "little") for i in range(512))
    gdt = b"".join(_descriptor(seg).to_bytes(8, "little") for seg in SEGMENTS.values())
    return {
        PML4_GPA: (PDPT_GPA | PTE_P | PTE_RW).to_bytes(8, "little"),
        PDPT_GPA: (PD_GPA | PTE_P | PTE_RW).to_bytes(8, "little"),
        PD_GPA: pd,
        GDT_GPA + SEL_CODE: gdt,  # code, data, TSS (whose high quadword stays zero)
    }


SEG_FIELDS = ("base", "limit", "selector", "type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable")


def sregs() -> dict[str, int]:
    """kvm_sregs for CPL0 long mode, by the profile's field names (cr2, cr8 and
    apic_base as KVM reset them: the harness reads them first)."""
    out: dict[str, int] = {}
    for reg, seg in (("cs", "code"), *((r, "data") for r in ("ds", "es", "fs", "gs", "ss")), ("tr", "tss")):
        out.update({f"{reg}.{k}": SEGMENTS[seg].get(k, 0) for k in SEG_FIELDS})
    out.update({f"ldt.{k}": int(k == "unusable") for k in SEG_FIELDS})
    out.update({"gdt.base": GDT_GPA, "gdt.limit": 0xFFF, "idt.base": IDT_GPA, "idt.limit": 0xFFF,
                "cr0": CR0_PE | CR0_NE | CR0_PG, "cr3": PML4_GPA, "cr4": CR4_PAE | CR4_OSFXSR,
                "efer": EFER_LME | EFER_LMA | EFER_NX})
    return out


def regs(gprs: Mapping[str, int] | None = None) -> dict[str, int]:
    """kvm_regs: every GPR zero but `gprs` (a loop program's), the entry point and stack of slot 0."""
    return {**(gprs or {}), "rip": CODE_GPA, "rsp": STACK_TOP, "rflags": RFLAGS_FIXED}
