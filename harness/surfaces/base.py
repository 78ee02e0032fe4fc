"""What a surface is: one ioctl or file call, declared once.

A surface declares its call, the fd kinds it exists on (from the ABI facts), which
area tables apply to it, the words that are bit sets, what its environment needs, its
valid baseline input and its rule. A case changes the baseline in one place so that
exactly one clause decides the answer. Surfaces are pure: what they need from the
running case comes through `CaseEnv` (values the session set up) and `Port` (the few
calls a surface makes to check an effect), both implemented by the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from harness.abi.exits import Exit
from harness.abi.facts import Ioctl, Struct
from harness.abi.fdkind import FdKind
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.rules import Expect

# Area tables that any surface can take part in; each is generated in harness.cases.tables.
SLOT_GPA = 1 << 20  # where a surface's memslot starts: guest memory below it is not in a slot
GENERIC_TABLES = ("reserved_words", "flag_bits", "sizing", "existence", "property", "absent_on_fd")


@dataclass(frozen=True)
class Need:
    """A requirement every case of a surface has: an ioctl on an fd kind, or a cap's bits."""

    ioctl: str | None = None
    fd: FdKind = FdKind.VM
    cap: str | None = None


@dataclass
class CaseEnv:
    """What the session set up for one case, as plain values."""

    gmem_size: int | None = None  # the case's guest_memfd, when it has one
    uaddr: int = 0  # user memory for a memslot
    bind_fd: int = -1  # the fd a case passes as `guest_memfd`: one the case owns, always
    bind_size: int = 0
    existing: dict[str, int] | None = None  # a slot of the case's id set before the call
    overlaps: bool = False  # another slot covers part of the case's guest range
    bound: tuple[int, int] | None = None  # the file range [start, end) another slot binds
    slot_gpa: int = 0  # the memslot a surface with `memslot_pages` has: its guest physical range
    slot_size: int = 0
    event_fd: int = -1  # the fd a surface with `event_fd` passes: an eventfd, or the kind its case names
    buffer: int = 0  # a buffer of the surface's `buffer_bytes` that ends at a guard page (a dirty bitmap)


class Port(Protocol):
    """The calls a surface makes after the case's own call, to check what it did."""

    def st_size(self, fd: int) -> int | str:
        """fstat's st_size of an fd the call returned, or why it is not an open fd."""

    def close(self, fd: int) -> None: ...

    def vm_call(self, name: str, values: Mapping[str, int]) -> int:
        """Another struct ioctl on the case's VM fd: result or -errno."""

    def guest_exits(self, program: str, host_data: int) -> list[Exit]:
        """The exits of a guest program on a new vCPU of the case's VM, with the test slot
        as plain memory holding `host_data`."""
    def vm_ioctl(self, name: str, arg: int) -> int:
        """An ioctl with an integer argument on the case's VM fd: result or -errno."""

    def struct_left(self) -> Mapping[str, int] | None:
        """The case's struct as the kernel left it after the call (None: it had no struct in memory)."""

    def other_vm(self) -> Port:
        """A second VM of the case's type, open until the case ends (state one VM cannot show)."""


@dataclass(frozen=True)
class Ctx:
    """One case as a surface sees it: the plan, the case, its ioctl and struct, its env."""

    plan: Plan
    case: Case
    io: Ioctl
    struct: Struct
    env: CaseEnv


@dataclass(frozen=True)
class Surface:
    """A struct-taking ioctl. Subclasses give the baseline and the rule."""

    name: str
    family: str
    rule: str  # the rule function's name in harness.rules (mutants name it)
    rule_doc: str  # what the rule covers, for the mutant catalogue
    tables: tuple[str, ...] = GENERIC_TABLES
    bit_words: tuple[str, ...] = ("flags",)  # words that are sets of bits: every bit is tried
    needs: tuple[Need, ...] = ()
    user_memory: bool = False  # a memslot: two pages of user memory behind a guard page
    memslot_pages: int = 0  # a memslot of this many pages of user memory at SLOT_GPA, made before the call
    event_fd: bool = False  # an eventfd (or, per the case's `event_fd` knob, a closed fd or /dev/null)
    buffer_bytes: int = 0  # a buffer of this many bytes for a pointer word, ending at a guard page
    fd_words: frozenset[str] = frozenset()  # words that hold an fd number: the environment's, never drawn
    drawn_knobs: tuple[tuple[tuple[str, str], ...], ...] = ((),)  # setups a property case draws from (weights by repetition)

    def heavy(self, values: Mapping[str, int], page: int) -> bool:
        """A call a real kernel could accept by allocating for a huge range (not sent to one)."""
        return False

    def requirements(self, case: Case) -> tuple[Need, ...]:
        """Requirements beyond the ioctl's own cap, for this case."""
        return self.needs

    def why_not(self, ctx: Ctx) -> str | None:
        """Why this case cannot be judged here (a cap its rule reads has no value), or None."""
        return None

    def slot_flags(self, case: Case, constants: Mapping[str, int]) -> int:
        """The flags of the memslot a surface with `memslot_pages` has, for this case."""
        return 0

    def before(self, ctx: Ctx, port: Port) -> str | None:
        """State the case's VM must have before the call, made through `port`; what went wrong, or None."""
        return None

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        raise NotImplementedError(self.name)

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        raise NotImplementedError(self.name)

    def after(self, ctx: Ctx, port: Port, values: Mapping[str, int], result: int) -> str | None:
        """After success: what is wrong with what the call made (None: nothing), and its cleanup."""
        return None

    def leftover(self, ctx: Ctx, port: Port, values: Mapping[str, int]) -> str | None:
        """After a rejected call: the state it left behind, where the uAPI lets us read it back."""
        return None


@dataclass(frozen=True)
class FileCall:
    """A call on the guest_memfd file itself (not an ioctl): its name and rule."""

    name: str  # "guest_memfd fallocate"
    call: str  # "fallocate"
    rule: str
    rule_doc: str
