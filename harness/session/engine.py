"""How each surface is exercised: the fds a case needs, a valid baseline input, the
rule that gives the expected answer, and the one function that runs a case.

A case changes the baseline in one place (a field, the placement of the struct in
memory, or the ioctl number) so that exactly one rule decides its answer. Struct
layouts come from the ABI facts, so a new revision of a struct is a data change.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import pytest

from harness.abi.facts import Ioctl, Struct
from harness.host.backend import describe
from harness.host.fds import GuestMemfd, KvmFd, Vm, ioctl_label
from harness.host.usermem import Placement, Unmapped, among_canaries, at_guard
from harness.rules import (
    Expect,
    MemoryAttributesInput,
    MemslotInput,
    absent_ioctl,
    bad_pointer,
    create_guest_memfd,
    set_memory_attributes,
    set_user_memory_region2,
)
from harness.session.target import Target, fd_label

GMEM_PAGES = 4  # size of the guest_memfd a case binds or sends attributes through


def fd_tag(fd: str, vm_type: int) -> str:
    """Short fd name for case ids: "kvm", "vm0", "gmem@vm0"."""
    return {"system": "kvm", "vm": f"vm{vm_type}", "guest_memfd": f"gmem@vm{vm_type}"}[fd]


def hexv(v: int) -> str:
    return f"0x{v:x}" if v > 9 else str(v)


@dataclass(frozen=True)
class Case:
    """One conformance case; its id says the surface, fd, and what differs from valid."""

    area: str
    surface: str
    fd: str = "vm"
    vm_type: int = 0
    values: tuple[tuple[str, int], ...] = ()
    placement: str = "normal"  # normal exact overhang canaries readonly trailing null unmapped
    number: int | None = None  # another number with the same nr (wrong size or direction)
    number_tag: str = ""
    knobs: tuple[tuple[str, int | str], ...] = ()  # setup choices, e.g. ("binding", "closed")
    tag: str = ""

    @property
    def id(self) -> str:
        parts = [self.surface, fd_tag(self.fd, self.vm_type)]
        parts += [f"{k}={hexv(v)}" for k, v in self.values]
        parts += [f"{k}={v if isinstance(v, str) else hexv(v)}" for k, v in self.knobs]
        if self.number_tag:
            parts.append(self.number_tag)
        if self.placement != "normal":
            parts.append(self.placement)
        if self.tag:
            parts.append(self.tag)
        return "/".join(parts)

    def knob(self, name: str, default: int | str | None = None) -> int | str | None:
        return dict(self.knobs).get(name, default)

    def __str__(self) -> str:
        return self.id


@dataclass
class Env:
    """The fds of one case, closed together."""

    vm: Vm
    fd: KvmFd
    gmem: GuestMemfd | None = None
    extra: dict[str, int] = field(default_factory=dict)


class Surface:
    """A struct-taking ioctl: its valid baseline and the rule for its answer."""

    names: tuple[str, ...] = ()

    def require(self, t: Target, case: Case) -> None:
        """Surface-specific requirements beyond the ioctl's own cap."""

    def baseline(self, t: Target, case: Case, env: Env) -> dict[str, int]:
        raise NotImplementedError

    def expect(self, t: Target, case: Case, io: Ioctl, values: Mapping[str, int], env: Env) -> Expect:
        raise NotImplementedError

    def after(self, t: Target, case: Case, env: Env, result: int) -> None:
        """Clean up what a successful call made, and check it is real."""

    def leftover(self, t: Target, case: Case, env: Env, values: Mapping[str, int]) -> str | None:
        """After a rejected call: the state it left behind, where the uAPI lets us read it back."""
        return None


class MemoryAttributes(Surface):
    names = ("KVM_SET_MEMORY_ATTRIBUTES", "KVM_SET_MEMORY_ATTRIBUTES2")

    def baseline(self, t: Target, case: Case, env: Env) -> dict[str, int]:
        return {"address": 0, "size": t.page, "attributes": 0, "flags": 0}

    def expect(self, t: Target, case: Case, io: Ioctl, values: Mapping[str, int], env: Env) -> Expect:
        assert io.struct is not None
        return set_memory_attributes(
            MemoryAttributesInput(
                values=values,
                struct=t.facts.structs[io.struct],
                supported_attributes=t.supported_attributes(io, case.fd, case.vm_type),
                page=t.page,
                allowed_flags=t.cap(io.flags_cap, case.vm_type) if io.flags_cap else 0,
                file_size=env.gmem.size if case.fd == "guest_memfd" and env.gmem else None,
            )
        )


class CreateGuestMemfd(Surface):
    names = ("KVM_CREATE_GUEST_MEMFD",)

    def baseline(self, t: Target, case: Case, env: Env) -> dict[str, int]:
        return {"size": t.page, "flags": 0}

    def expect(self, t: Target, case: Case, io: Ioctl, values: Mapping[str, int], env: Env) -> Expect:
        assert io.struct is not None and io.flags_cap is not None
        return create_guest_memfd(values, t.facts.structs[io.struct], t.cap(io.flags_cap, case.vm_type), t.page)

    def after(self, t: Target, case: Case, env: Env, result: int) -> None:
        gmem = env.vm.adopt_guest_memfd(result, 0, 0)
        try:
            st = gmem.fstat()
        except OSError as e:
            pytest.fail(f"KVM_CREATE_GUEST_MEMFD returned {result}, which is not an open fd: {e.strerror}", pytrace=False)
        finally:
            gmem.close()
        if st.st_size != dict(case.values).get("size", t.page):
            pytest.fail(f"KVM_CREATE_GUEST_MEMFD returned a guest_memfd of st_size {st.st_size}, "
                        f"not the size asked for", pytrace=False)


class Memslot2(Surface):
    names = ("KVM_SET_USER_MEMORY_REGION2",)

    def require(self, t: Target, case: Case) -> None:
        if case.knob("binding") is not None:
            t.require_ioctl("KVM_CREATE_GUEST_MEMFD", "vm")

    def baseline(self, t: Target, case: Case, env: Env) -> dict[str, int]:
        values = {"slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": t.page,
                  "userspace_addr": env.extra["uaddr"], "guest_memfd_offset": 0, "guest_memfd": 0}
        binding = case.knob("binding")
        if binding is not None:
            values["flags"] = t.facts.const("KVM_MEM_GUEST_MEMFD")
            values["guest_memfd"] = env.extra["bind_fd"]
        return values

    def expect(self, t: Target, case: Case, io: Ioctl, values: Mapping[str, int], env: Env) -> Expect:
        assert io.struct is not None
        names = ("KVM_MEM_LOG_DIRTY_PAGES", "KVM_MEM_READONLY", "KVM_MEM_GUEST_MEMFD")
        return set_user_memory_region2(
            MemslotInput(
                values=values,
                struct=t.facts.structs[io.struct],
                page=t.page,
                flag_bits={n: t.facts.const(n) for n in names},
                has_guest_memfd=bool(t.caps.at("KVM_CAP_GUEST_MEMFD", case.vm_type)),
                guest_memfd=str(case.knob("binding", "ok")),
                file_size=env.extra.get("bind_size", 0),
                range_bound=case.knob("bound") is not None,
                kernel=t.kernel_data,
                address_spaces=t.caps.at("KVM_CAP_MULTI_ADDRESS_SPACE", case.vm_type) or 1,
            )
        )

    def leftover(self, t: Target, case: Case, env: Env, values: Mapping[str, int]) -> str | None:
        """A rejected call creates no slot: deleting its slot (memory_size 0) must find none
        (EINVAL); success means the slot was there."""
        slot = values.get("slot", 0)
        probe = t.facts.structs["kvm_userspace_memory_region2"].pack({"slot": slot})
        buf = ctypes.create_string_buffer(probe, len(probe))
        r = env.vm.raw(t.facts.ioctls["KVM_SET_USER_MEMORY_REGION2"].number, ctypes.addressof(buf))
        return None if r < 0 else f"slot {hexv(slot)} exists after the rejected call (deleting it returned {r})"


SURFACES: dict[str, Surface] = {n: s for s in (MemoryAttributes(), CreateGuestMemfd(), Memslot2()) for n in s.names}


@contextmanager
def environment(t: Target, case: Case) -> Iterator[Env]:
    """A fresh VM (and guest_memfd) per case, so no case sees another's state."""
    with ExitStack() as stack:
        vm = stack.enter_context(t.vm(case.vm_type))
        env = Env(vm=vm, fd=vm)
        if case.fd == "guest_memfd":
            t.require_ioctl("KVM_CREATE_GUEST_MEMFD", "vm")
            flags = int(case.knob("gmem_flags", 0) or 0)
            env.gmem = stack.enter_context(vm.create_guest_memfd(GMEM_PAGES * t.page, flags))
            env.fd = env.gmem
        if case.surface == "KVM_SET_USER_MEMORY_REGION2":
            memory = stack.enter_context(at_guard(bytes(2 * t.page)))
            env.extra["uaddr"] = memory.base
            binding = case.knob("binding")
            if binding is not None:
                env.extra.update(bind_fds(t, stack, vm, str(binding), case))
        yield env


def bind_fds(t: Target, stack: ExitStack, vm: Vm, binding: str, case: Case) -> dict[str, int]:
    """The fd a binding case passes as `guest_memfd`, per kind of binding."""
    size = GMEM_PAGES * t.page
    if binding == "closed":
        fd = os.open("/dev/null", os.O_RDONLY)
        os.close(fd)  # a number that is certainly not open now
        return {"bind_fd": fd, "bind_size": size}
    if binding == "not-gmem":
        fd = os.open("/dev/null", os.O_RDONLY)
        stack.callback(os.close, fd)
        return {"bind_fd": fd, "bind_size": size}
    owner = vm
    if binding == "other-vm":
        owner = stack.enter_context(t.vm(case.vm_type))
    gmem = stack.enter_context(owner.create_guest_memfd(size, 0))
    if case.knob("bound") is not None:
        # another slot already binds the whole file
        first = t.facts.structs["kvm_userspace_memory_region2"].pack(
            {"slot": 1, "flags": t.facts.const("KVM_MEM_GUEST_MEMFD"), "guest_phys_addr": 1 << 32,
             "memory_size": size, "userspace_addr": 0, "guest_memfd_offset": 0, "guest_memfd": gmem.fd})
        buf = ctypes.create_string_buffer(first, len(first))
        vm.checked("KVM_SET_USER_MEMORY_REGION2", ctypes.addressof(buf))
    return {"bind_fd": gmem.fd, "bind_size": size}


def _place(case: Case, data: bytes) -> Placement | Unmapped | None:
    if case.placement in ("normal", "exact"):
        return at_guard(data)
    if case.placement == "overhang":
        return at_guard(data, overhang=1)
    if case.placement == "canaries":
        return among_canaries(data)
    if case.placement == "readonly":
        return among_canaries(data, readonly=True)
    if case.placement == "trailing":
        # the struct followed by bytes that a correct kernel never reads
        return at_guard(data + bytes([0xFF]) * 96)
    if case.placement == "unmapped":
        return Unmapped()
    return None  # "null"


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
    trace: str | None = None  # state a rejected call left behind

    def input_text(self) -> str:
        shown = {k: v for k, v in self.values.items() if v or k in dict(self.case.values)}
        text = " ".join(f"{k}={hexv(v)}" for k, v in shown.items())
        return f"{text} ({self.case.placement} placement)" if self.case.placement != "normal" else text

    def explain(self) -> str:
        return (
            f"{self.label} on {self.fd_label}: {self.case.id}\n"
            f"  rule:     {self.expect.rule}: {self.expect.clause}\n"
            f"  input:    {self.input_text()}\n"
            f"  expected: {self.expect}\n"
            f"  actual:   {describe(self.result)}"
        )


def run_ioctl_case(t: Target, case: Case) -> Outcome:
    """Send one struct-taking ioctl case and collect its outcome (no verdict yet)."""
    t.require_vm(case.vm_type)
    io = t.require_ioctl(case.surface, case.fd, case.vm_type)
    surface = SURFACES[case.surface]
    surface.require(t, case)
    assert io.struct is not None
    struct: Struct = t.facts.structs[io.struct]
    with environment(t, case) as env:
        values = surface.baseline(t, case, env)
        values.update(dict(case.values))
        data = struct.pack(values)
        place = _place(case, data)
        number = io.number if case.number is None else case.number
        label = io.name if case.number is None else ioctl_label(t.facts, number)
        with ExitStack() as stack:
            if isinstance(place, Placement):
                stack.enter_context(place)
            addr = 0 if place is None else place.addr
            result = env.fd.raw(number, addr)
            if case.number is not None:
                expect = absent_ioctl(label, fd_label(case.fd, case.vm_type))
            elif case.placement in ("null", "unmapped"):
                expect = bad_pointer(io.name, f"a {case.placement} pointer")
            elif case.placement == "overhang":
                expect = bad_pointer(io.name, "the struct's last byte in a PROT_NONE page")
            else:
                expect = surface.expect(t, case, io, values, env)
            diff = place.diff() if isinstance(place, Placement) else None
            if result >= 0:
                surface.after(t, case, env, result)
        trace = surface.leftover(t, case, env, values) if result < 0 else None
        return Outcome(
            case, label, fd_label(case.fd, case.vm_type), values, expect, result,
            diff.outside if diff else (), diff.struct_bytes if diff else (), trace,
        )


def verdict(t: Target, outcome: Outcome, extra: Callable[[Outcome], str | None] | None = None) -> None:
    """Fail the case, with the rule, input, expected and actual, unless it matched."""
    problem = None
    if not outcome.expect.matches(outcome.result):
        problem = "answer differs from the rule"
    elif outcome.diff_outside:
        problem = f"the kernel wrote {len(outcome.diff_outside)} bytes outside the struct (offsets {list(outcome.diff_outside)[:8]})"
    elif outcome.trace:
        problem = f"the rejected call left a trace: {outcome.trace}"
    elif extra is not None:
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
    if case.surface not in t.facts.ioctls:
        t.require_ioctl(case.surface, case.fd, case.vm_type)  # skips, naming the cap and fd
    io = t.facts.ioctls[case.surface]
    where = fd_label(case.fd, case.vm_type)
    exists = case.fd in io.fds
    cap = io.caps.get(case.fd)
    if exists and cap is not None:
        exists = t.cap(cap, None) > 0
    if case.fd == "guest_memfd":
        t.require_ioctl("KVM_CREATE_GUEST_MEMFD", "vm", case.vm_type)
    with ExitStack() as stack:
        vm = stack.enter_context(t.vm(case.vm_type))
        fd: KvmFd = vm
        if case.fd == "guest_memfd":
            fd = stack.enter_context(vm.create_guest_memfd(GMEM_PAGES * t.page, 0))
        result = fd.raw(io.number, 0)
    expect = bad_pointer(io.name, "a NULL pointer") if exists else absent_ioctl(io.name, where)
    if cap is not None and case.fd in io.fds:
        expect = Expect(expect.errno, f"{cap} on /dev/kvm", f"{cap} is {t.cap(cap, None)}: {expect.clause}")
    return Outcome(case, io.name, where, {}, expect, result)
