"""The guest's pure pieces: programs recognised by their bytes, the long-mode setup as the
selftests have it, kvm_run decoded by name, and the exit rules walking a program."""

from __future__ import annotations

import errno

import pytest

from harness.abi.exits import decode, run_fields
from harness.abi.guest_programs import (
    GDT_GPA,
    MMIO_GPA,
    MMIO_REPLY,
    OUT_PORT,
    PROGRAM_NAMED,
    PROGRAMS,
    SEL_CODE,
    TEST_GPA,
    TEST_PAGES,
    memory_image,
    program_at,
    program_steps,
    sregs,
)
from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import load_profile
from harness.rules.enable_cap import dirty_ring_min_bytes
from harness.rules.guest import (
    Coalesced,
    Page,
    coalesced_max,
    dirty_log,
    dirty_logs,
    dirty_ring,
    dirty_ring_fill,
    dirty_ring_soft_limit,
    guest_run,
    mismatch,
    slot_page,
    written_pages,
)

FACTS = load_profile("released")
ROOM = coalesced_max(PAGE_SIZE, FACTS.structs["kvm_coalesced_mmio_ring"].size, FACTS.structs["kvm_coalesced_mmio"].size)
PRIVATE = FACTS.const("KVM_MEMORY_EXIT_FLAG_PRIVATE")


def kvm_run(values: dict[str, int]) -> bytes:
    """A kvm_run page with `values` at the profile's offsets."""
    where = run_fields(FACTS)
    buf = bytearray(FACTS.structs["kvm_run"].size)
    for label, value in values.items():
        offset, size = where[label]
        buf[offset : offset + size] = value.to_bytes(size, "little")
    return bytes(buf)


def test_programs_are_recognised_by_their_bytes() -> None:
    for program in PROGRAMS.values():
        assert program_at(program.code + bytes(8)) is program, program.name
    assert program_at(bytes.fromhex("90 90 f4")) is None


def test_setup_is_the_selftests() -> None:
    """GDT descriptors as vcpu_init_sregs() makes them; every sregs field is kvm_sregs's."""
    gdt = memory_image()[GDT_GPA + SEL_CODE]
    assert [gdt[i : i + 8][::-1].hex() for i in range(0, 16, 8)] == ["00af9b000000ffff", "008f93000000ffff"]
    labels = {w.label for w in FACTS.structs["kvm_sregs"].words()}
    assert set(sregs()) <= labels


def test_decode_names_the_exit() -> None:
    mmio = {"exit_reason": FACTS.const("KVM_EXIT_MMIO"), "mmio.phys_addr": MMIO_GPA, "mmio.len": 4, "mmio.is_write": 1,
            "mmio.data[0]": 0x44, "mmio.data[1]": 0x33}
    seen = decode(FACTS, kvm_run(mmio), 0)
    assert str(seen) == "KVM_EXIT_MMIO phys_addr=0x10000000 len=4 is_write=1 data=0x3344"
    fault = {"exit_reason": FACTS.const("KVM_EXIT_MEMORY_FAULT"), "memory_fault.flags": PRIVATE | 1 << 40,
             "memory_fault.gpa": PAGE_SIZE, "memory_fault.size": PAGE_SIZE}
    assert "(KVM_MEMORY_EXIT_FLAG_PRIVATE|0x10000000000)" in str(decode(FACTS, kvm_run(fault), -errno.EFAULT))
    assert str(decode(FACTS, kvm_run({"exit_reason": 200}), 0)).startswith("exit reason 200 (unnamed in profile released)")


@pytest.mark.parametrize("memory", ["none", "private", "shared"])
def test_load_exits(memory: str) -> None:
    """No slot: MMIO, then the reply goes out; private without guest_memfd: one memory fault; shared: the data."""
    steps = PROGRAMS["load-test"].steps
    run = guest_run(steps, {TEST_GPA: slot_page(memory, 7)}, PAGE_SIZE, PRIVATE, MMIO_REPLY)
    reasons = [e.reason for e in run.exits]
    data = {"none": MMIO_REPLY, "shared": 7}
    if memory == "private":
        assert reasons == ["KVM_EXIT_MEMORY_FAULT"] and run.exits[0].errno == errno.EFAULT and run.memory == ()
    else:
        assert reasons[-2:] == ["KVM_EXIT_IO", "KVM_EXIT_HLT"] and dict(run.exits[-2].fields)["io.data"] == data[memory]
        assert (memory == "none") == (reasons[0] == "KVM_EXIT_MMIO")


def test_mismatch_says_which_exit() -> None:
    run = guest_run(PROGRAMS["store-test"].steps, {TEST_GPA: Page(True)}, PAGE_SIZE, PRIVATE, MMIO_REPLY)
    hlt = decode(FACTS, kvm_run({"exit_reason": FACTS.const("KVM_EXIT_HLT")}), 0)
    assert mismatch(run, [hlt]) is None
    assert mismatch(run, []) == "exit 1 of 1: expected KVM_EXIT_HLT, got no further exit"
    assert mismatch(run, [hlt, hlt]) == "exit 2: expected none, got KVM_EXIT_HLT"


def test_dirty_log_marks_exactly_the_pages_written() -> None:
    """Without manual protection GET clears; with it bits stay until CLEAR clears exactly its own."""
    written = written_pages(PROGRAMS["store-pages-1-3"].steps, TEST_GPA, TEST_PAGES, PAGE_SIZE)
    assert written == (1, 3)
    assert dirty_log(("run", "get", "get", "run", "get"), written, 4, False, False).bitmaps == (0b1010, 0, 0b1010)
    manual = dirty_log(("run", "get", "get", "clear 0x6", "get"), written, 4, True, False)
    assert manual.bitmaps == (0b1010, 0b1010, 0b1000)
    assert dirty_log(("get", "clear 0xf", "get", "run", "get"), written, 4, True, True).bitmaps == (0b1111, 0, 0b1010)
    assert dirty_ring(written, 1, 1) == ((1, 1, 1), (1, 1, 3))


def test_dirty_logs_keep_each_slot_apart() -> None:
    """GET and CLEAR of one logging slot leave the other's bits."""
    written = {1: (2,), 2: (1,)}
    assert dirty_logs(("run", "get 1", "get 2", "get 2"), written, 4, False).bitmaps == (0b100, 0b10, 0)
    assert dirty_logs(("run", "clear 1 0xf", "get 1", "get 2"), written, 4, True).bitmaps == (0, 0b10)


def test_dirty_ring_fills_at_its_soft_limit() -> None:
    """The smallest ring is a page (256 entries) without PML, 16 KiB with its 512; the soft
    limit keeps 64 entries (and PML's) back; the rest may start again from the last page."""
    assert dirty_ring_min_bytes(16, 0, PAGE_SIZE) == PAGE_SIZE
    assert dirty_ring_min_bytes(16, 512, PAGE_SIZE) == 16384
    assert dirty_ring_soft_limit(PAGE_SIZE, 16, 0) == 192
    assert dirty_ring_soft_limit(16384, 16, 512) == 448
    fill = dirty_ring_fill(range(5), 2, 1, 3)
    assert (fill.full, fill.reset) == (((1, 2, 0), (1, 2, 1), (1, 2, 2)), 3)
    assert fill.rests == (((1, 2, 3), (1, 2, 4)), ((1, 2, 2), (1, 2, 3), (1, 2, 4)))


def test_coalesced_writes_give_no_exit() -> None:
    """A store inside a zone lands in the ring; one running past its end, or a load, exits MMIO."""
    store, load = PROGRAMS["store-mmio"].steps, PROGRAMS["load-mmio"].steps
    inside = guest_run(store, {}, PAGE_SIZE, PRIVATE, MMIO_REPLY, ((MMIO_GPA, 8, 0),), ROOM)
    assert [e.reason for e in inside.exits] == ["KVM_EXIT_HLT"]
    assert inside.coalesced == (Coalesced(MMIO_GPA, 4, 0, 0x11223344),) and inside.rule == "guest_coalesced_mmio"
    for steps, zone in ((store, (MMIO_GPA, 2, 0)), (store, (MMIO_GPA, 8, 1)), (load, (MMIO_GPA, 8, 0))):
        run = guest_run(steps, {}, PAGE_SIZE, PRIVATE, MMIO_REPLY, (zone,), ROOM)
        assert run.exits[0].reason == "KVM_EXIT_MMIO" and run.coalesced == ()
    out = guest_run(PROGRAMS["out"].steps, {}, PAGE_SIZE, PRIVATE, MMIO_REPLY, ((0x10, 1, 1),), ROOM)
    assert out.coalesced == (Coalesced(0x10, 1, 1, 0x42),) and [e.reason for e in out.exits] == ["KVM_EXIT_HLT"]


def test_loop_programs_expand_from_registers() -> None:
    """A loop's body runs rcx times at rdi (dx) advanced by rsi, then hlt."""
    steps = program_steps(PROGRAM_NAMED["store-loop"], {"rcx": 3, "rdi": 0x1000, "rsi": PAGE_SIZE})
    assert [(s.op, s.gpa) for s in steps] == [("store", 0x1000), ("store", 0x2000), ("store", 0x3000), ("hlt", 0)]
    mixed = program_steps(PROGRAM_NAMED["mixed-loop"], {"rcx": 2, "rdi": MMIO_GPA, "rdx": OUT_PORT})
    assert [(s.op, s.gpa, s.port) for s in mixed[:2]] == [("store", MMIO_GPA, 0), ("out", 0, OUT_PORT)] and len(mixed) == 5
    for p in PROGRAM_NAMED.values():
        assert program_at(p.code + b"\xcc") is p


def test_coalesced_ring_keeps_one_entry_free() -> None:
    """KVM_COALESCED_MMIO_MAX - 1 writes are coalesced, the next exits as without the zone."""
    assert ROOM == 170
    steps = program_steps(PROGRAM_NAMED["store-loop"], {"rcx": ROOM, "rdi": MMIO_GPA})
    run = guest_run(steps, {}, PAGE_SIZE, PRIVATE, MMIO_REPLY, ((MMIO_GPA, 8, 0),), ROOM)
    assert len(run.coalesced) == ROOM - 1 and [e.reason for e in run.exits] == ["KVM_EXIT_MMIO", "KVM_EXIT_HLT"]
    assert dict(run.exits[0].fields)["mmio.phys_addr"] == MMIO_GPA and "one entry free" in run.clause
