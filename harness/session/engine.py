"""The one function that runs a struct-ioctl case, and the verdict.

For a case it asks the surface registry for the surface, states the requirements, opens
the case's fds (`harness.host.fds.open_kind`), sets up what the surface needs, places
the struct in the backend's user memory as the case says, makes the call and collects
an `Outcome`: what was sent, what the rule expected, what the kernel answered, and what
it wrote. `verdict` fails the case unless the outcome matched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import pytest

from harness.abi.errnos import describe
from harness.abi.exits import Exit
from harness.abi.fdkind import FdKind
from harness.abi.guest_programs import PROGRAMS
from harness.cases.case import GMEM_PAGES, Case, hexv
from harness.host import guest
from harness.host.fds import KvmFd, Vm, ioctl_label, open_kind
from harness.host.guest import set_test_slot
from harness.host.usermem import Region
from harness.rules import Expect, absent_ioctl, bad_pointer
from harness.session.target import Target
from harness.surfaces import registry
from harness.surfaces.base import SLOT_GPA, CaseEnv, Ctx, Surface

__all__ = ["GMEM_PAGES", "Case", "Outcome", "hexv", "record", "run_ioctl_case", "run_null_case", "take_outcomes", "verdict"]


@dataclass(frozen=True)
class Outcome:
    """What a case sent, what the rules expected and what the kernel answered."""

    case: Case
    label: str
    fd_label: str
    values: Mapping[str, int]
    expect: Expect
    result: int
    diff_outside: tuple[int, ...] = ()
    wrote_inside: tuple[int, ...] = ()
    trace: str | None = None  # state a rejected call left behind, or what is wrong with what a call made

    def input_text(self) -> str:
        shown = {k: v for k, v in self.values.items() if v or k in dict(self.case.values)}
        text = " ".join(f"{k}={hexv(v)}" for k, v in shown.items())
        return f"{text} ({self.case.placement} placement)" if self.case.placement != "normal" else text

    def problem(self) -> str | None:
        """What is wrong with this outcome, or None when it matched: the one place that judges it."""
        if not self.expect.matches(self.result):
            return "answer differs from the rule"
        if self.diff_outside:
            return f"the kernel wrote {len(self.diff_outside)} bytes outside the struct (offsets {list(self.diff_outside)[:8]})"
        if self.trace:
            return f"the rejected call left a trace: {self.trace}" if self.result < 0 else self.trace
        return None

    def explain(self) -> str:
        return (
            f"{self.label} on {self.fd_label}: {self.case.id}\n"
            f"  rule:     {self.expect.rule}: {self.expect.clause}\n"
            f"  input:    {self.input_text()}\n"
            f"  expected: {self.expect}\n"
            f"  actual:   {describe(self.result)}"
        )


class _Port:
    """The calls a surface makes to check an effect, on the case's VM."""

    def __init__(self, t: Target, vm: Vm, vm_type: int, others: ExitStack) -> None:
        self.t, self.vm, self.vm_type, self.others = t, vm, vm_type, others
        self.left: dict[str, int] | None = None  # the case's struct after the call

    def other_vm(self) -> _Port:
        """A second VM, closed with the case's environment (after the case's call)."""
        return _Port(self.t, self.others.enter_context(self.t.vm(self.vm_type)), self.vm_type, self.others)

    def vm_ioctl(self, name: str, arg: int) -> int:
        return self.vm.call(name, arg)

    def struct_left(self) -> dict[str, int] | None:
        return self.left

    def st_size(self, fd: int) -> int | str:
        try:
            return self.t.backend.fstat(fd).st_size
        except OSError as e:
            return e.strerror or str(e)

    def close(self, fd: int) -> None:
        self.t.backend.close(fd)

    def vm_call(self, name: str, values: Mapping[str, int]) -> int:
        return self.vm.struct_call(name, values)[0]

    def guest_exits(self, program: str, host_data: int) -> list[Exit]:
        with ExitStack() as stack:
            set_test_slot(stack, self.vm, "shared", host_data)
            return guest.run(guest.boot(stack, self.t.kvm, self.vm, PROGRAMS[program]))


@contextmanager
def environment(t: Target, case: Case, surface: Surface) -> Iterator[tuple[Vm, KvmFd, CaseEnv]]:
    """A fresh VM (and the case's other fds) per case, so no case sees another's state."""
    with ExitStack() as stack:
        if case.fd == FdKind.GUEST_MEMFD:
            t.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM)
        size = GMEM_PAGES * t.page
        vm, fd = open_kind(stack, t.kvm, case.fd, case.vm_type, size, int(case.knob("gmem_flags", 0) or 0))
        env = CaseEnv(gmem_size=size if case.fd == FdKind.GUEST_MEMFD else None)
        if surface.user_memory:
            env.uaddr = stack.enter_context(t.backend.memory.at_guard(bytes(2 * t.page))).addr
            env.bind_fd, env.bind_size = bind_fd(t, stack, vm, str(case.knob("binding", "not-gmem")), case)
        if case.fd == FdKind.VM and case.knob("vcpu") is not None:
            stack.enter_context(vm.create_vcpu(0, t.kvm.vcpu_mmap_size()))
        if surface.memslot_pages:
            env.slot_gpa, env.slot_size = SLOT_GPA, surface.memslot_pages * t.page
            memory = stack.enter_context(t.backend.memory.at_guard(bytes(env.slot_size)))
            r, _ = vm.struct_call("KVM_SET_USER_MEMORY_REGION2", {
                "slot": 0, "flags": surface.slot_flags(case, t.facts.constants), "guest_phys_addr": env.slot_gpa,
                "memory_size": env.slot_size, "userspace_addr": memory.addr})
            assert r == 0, f"KVM_SET_USER_MEMORY_REGION2 of {env.slot_size} bytes at {env.slot_gpa:#x} on {vm.label} failed: {describe(r)}"
        if surface.event_fd:
            env.event_fd = event_fd(t, stack, str(case.knob("event_fd", "eventfd")))
        if surface.buffer_bytes:
            env.buffer = stack.enter_context(t.backend.memory.at_guard(bytes(surface.buffer_bytes))).addr
        yield vm, fd, env


def event_fd(t: Target, stack: ExitStack, kind: str) -> int:
    """The fd an eventfd case passes, made where the calls run: a new eventfd, a number
    closed now, or /dev/null."""
    b = t.backend
    fd = b.eventfd() if kind == "eventfd" else b.open("/dev/null")
    if kind == "closed":
        b.close(fd)
    else:
        stack.callback(b.close, fd)
    return fd


def bind_fd(t: Target, stack: ExitStack, vm: Vm, binding: str, case: Case) -> tuple[int, int]:
    """The fd a case passes as `guest_memfd`, per kind of binding, and the file's size: one
    the case owns, so no answer depends on what an fd number happens to be."""
    size = GMEM_PAGES * t.page
    if binding == "invalid":
        return 0xFFFFFFFF, size  # fget(-1)
    if binding == "closed":
        fd = t.backend.open("/dev/null")
        t.backend.close(fd)  # a number that is certainly not open now
        return fd, size
    if binding == "not-gmem":
        fd = t.backend.open("/dev/null")
        stack.callback(t.backend.close, fd)
        return fd, size
    owner = vm
    if binding == "other-vm":
        owner = stack.enter_context(t.vm(case.vm_type))
    gmem = stack.enter_context(owner.create_guest_memfd(size, 0))
    return gmem.fd, size


def _place(t: Target, case: Case, data: bytes) -> Region | int | None:
    """The struct in user memory as the case says: a region, a bare address, or NULL."""
    memory = t.backend.memory
    match case.placement:
        case "normal" | "exact":
            return memory.at_guard(data)
        case "overhang":
            return memory.at_guard(data, overhang=1)
        case "canaries":
            return memory.among_canaries(data)
        case "readonly":
            return memory.among_canaries(data, readonly=True)
        case "trailing":
            # the struct followed by bytes that a correct kernel never reads
            return memory.at_guard(data + bytes([0xFF]) * 96)
        case "unmapped":
            return memory.unmapped()
        case "null":
            return None
    raise ValueError(f"{case.id}: unknown placement {case.placement!r}")


def run_ioctl_case(t: Target, case: Case) -> Outcome:
    """Send one struct-taking ioctl case and collect its outcome (no verdict yet)."""
    t.require_vm(case.vm_type)
    io = t.require_ioctl(case.surface, case.fd, case.vm_type)
    surface = registry.surface(case.surface)
    for need in surface.requirements(case):
        t.require(need, case.vm_type)
    assert io.struct is not None
    struct = t.facts.structs[io.struct]
    with environment(t, case, surface) as (vm, fd, env), ExitStack() as others:
        ctx = Ctx(t.plan, case, io, struct, env)
        why = surface.why_not(ctx)
        if why is not None:
            pytest.skip(why)
        port = _Port(t, vm, case.vm_type, others)
        setup = surface.before(ctx, port)
        assert setup is None, f"{case.id}: {setup}"
        values = surface.baseline(ctx)
        values.update(dict(case.values))
        if not t.model and case.number is None and surface.heavy(values, t.page) and surface.expect(ctx, values).ok:
            pytest.skip(f"{case.surface} would be accepted by allocating for a huge range: asked of the model only")
        place = _place(t, case, struct.pack(values))
        number = io.number if case.number is None else case.number
        label = io.name if case.number is None else ioctl_label(t.facts, number)
        with ExitStack() as stack:
            region = stack.enter_context(place) if place is not None and not isinstance(place, int) else None
            addr = region.addr if region is not None else (place if isinstance(place, int) else 0)
            result = fd.raw(number, addr)
            if case.number is not None:
                expect = absent_ioctl(label, case.where, case.fd)
            elif case.placement in ("null", "unmapped"):
                expect = bad_pointer(io.name, f"a {case.placement} pointer")
            elif case.placement == "overhang":
                expect = bad_pointer(io.name, "the struct's last byte in a PROT_NONE page")
            else:
                expect = surface.expect(ctx, values)
                # the struct as the call left it, for a surface whose rule says what is written back
                port.left = struct.unpack(region.read()[: struct.size]) if region is not None else None
            diff = region.diff() if region is not None else None
            trace = surface.after(ctx, port, values, result) if result >= 0 else None
        if result < 0:
            trace = surface.leftover(ctx, port, values)
        return Outcome(case, label, case.where, values, expect, result,
                       diff.outside if diff else (), diff.struct_bytes if diff else (), trace)


def verdict(t: Target, outcome: Outcome, extra: Callable[[Outcome], str | None] | None = None) -> None:
    """Fail the case, with the rule, input, expected and actual, unless it matched."""
    problem = outcome.problem()
    if problem is None and extra is not None:
        problem = extra(outcome)
    record(outcome)
    if problem:
        pytest.fail(f"{problem}\n{outcome.explain()}", pytrace=False)


OUTCOMES_KEY = pytest.StashKey[list[Outcome]]()
_running: ContextVar[pytest.Item | None] = ContextVar("kvmconf_running_item", default=None)


@contextmanager
def recording(item: pytest.Item) -> Iterator[None]:
    """While `item` runs, `record` keeps its outcomes in the item's stash, so no case
    can see another's (the report plugin wraps every test in this)."""
    item.stash[OUTCOMES_KEY] = []
    token = _running.set(item)
    try:
        yield
    finally:
        _running.reset(token)


def record(outcome: Outcome) -> None:
    """Keep an outcome for the report hooks (rule, input, expected, actual); nothing
    is kept outside a `recording` (no report is being written)."""
    item = _running.get()
    if item is not None:
        item.stash[OUTCOMES_KEY].append(outcome)


def take_outcomes() -> list[Outcome]:
    """The running item's outcomes so far, handed over once."""
    item = _running.get()
    if item is None:
        return []
    out = item.stash[OUTCOMES_KEY]
    item.stash[OUTCOMES_KEY] = []
    return out


def run_null_case(t: Target, case: Case) -> Outcome:
    """The ioctl with a NULL argument: EFAULT shows it exists on the fd (it tried to
    copy), ENOTTY that it does not. Whether it should exist: the fd kinds the ABI facts
    give it, and the cap that announces it there, asked on /dev/kvm."""
    t.require_vm(case.vm_type)
    # an ioctl of another revision is asked by its catalogue number: a kernel of this one lacks it
    known = case.surface in t.facts.ioctls
    io = t.facts.ioctls[case.surface] if known else t.plan.catalogue.ioctls[case.surface]
    exists = known and case.fd in io.fds
    cap = io.caps.get(case.fd) if known else None
    if exists and cap is not None:
        exists = t.cap(cap, None) > 0
    if case.fd == FdKind.GUEST_MEMFD:
        t.require_ioctl("KVM_CREATE_GUEST_MEMFD", FdKind.VM, case.vm_type)
    with ExitStack() as stack:
        _, fd = open_kind(stack, t.kvm, case.fd, case.vm_type, GMEM_PAGES * t.page)
        result = fd.raw(io.number, 0)
    expect = bad_pointer(io.name, "a NULL pointer") if exists else absent_ioctl(io.name, case.where, case.fd)
    if cap is not None and case.fd in io.fds:
        expect = Expect(expect.errno, f"{cap} on /dev/kvm", f"{cap} is {t.cap(cap, None)}: {expect.clause}")
    return Outcome(case, io.name, case.where, {}, expect, result)
